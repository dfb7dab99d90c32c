"""Builds the extraction pipeline: a blank English spaCy model, medspaCy's clinical
tokenizer and our six components.

No statistical model is loaded (nothing to download, nothing from a hub) and the
slow PyRuSH splitter is replaced by ``dermcode_sentences``; that is most of why the
pipeline runs an order of magnitude faster than ``medspacy.load()``.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import spacy
from spacy.language import Language

PIPE_ORDER = (
    "dermcode_sentences",
    "dermcode_entities",
    "dermcode_measurements",
    "dermcode_sections",
    "dermcode_context",
    "dermcode_lesions",
)


def _quiet_third_party_logs() -> None:
    """PyRuSH logs through loguru at DEBUG by default; none of that may reach a user."""
    try:
        from loguru import logger as loguru_logger

        loguru_logger.remove()
    except ImportError:  # pragma: no cover - loguru comes with medspaCy
        pass
    logging.getLogger("medspacy").setLevel(logging.WARNING)


# Shorthand whose last letter the tokenizer would glue to a sentence-final period
# ("I&D." → "I", "&", "D."), hiding it from the phrase rules.
_AMPERSAND_TERMS = ("I&D", "ED&C", "C&E", "I&E", "S&P")


def _clinical_token_fixes(nlp: Language) -> None:
    """Split a final period off words of two or more letters ("mL.", "pt.", "IV.") unless
    spaCy knows them as abbreviations, and off ampersand shorthand ("I&D.")."""
    from spacy.util import compile_suffix_regex

    suffixes = list(nlp.Defaults.suffixes or []) + [r"(?<=[A-Za-z]{2})\.$"]
    nlp.tokenizer.suffix_search = compile_suffix_regex(suffixes).search
    for term in _AMPERSAND_TERMS:
        left, right = term.split("&")
        for end in (".", ",", ";", ":"):
            nlp.tokenizer.add_special_case(
                term + end, [{"ORTH": left}, {"ORTH": "&"}, {"ORTH": right}, {"ORTH": end}]
            )


def build_pipeline() -> Language:
    """A fresh pipeline. Prefer :func:`get_pipeline`, which builds it once per process."""
    _quiet_third_party_logs()
    # Importing the component modules registers their factories.
    from medspacy.custom_tokenizer import create_medspacy_tokenizer

    from extractor.components import (  # noqa: F401
        context,
        entities,
        lesions,
        measurements,
        sections,
        sentences,
    )

    nlp = spacy.blank("en")
    nlp.tokenizer = create_medspacy_tokenizer(nlp)
    _clinical_token_fixes(nlp)
    for name in PIPE_ORDER:
        nlp.add_pipe(name)
    return nlp


@lru_cache(maxsize=1)
def get_pipeline() -> Language:
    """The process-wide pipeline."""
    return build_pipeline()
