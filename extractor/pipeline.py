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


def build_pipeline() -> Language:
    """A fresh pipeline. Prefer :func:`get_pipeline`, which builds it once per process."""
    _quiet_third_party_logs()
    # Importing the component modules registers their factories.
    from extractor.components import (  # noqa: F401
        context,
        entities,
        lesions,
        measurements,
        sections,
        sentences,
    )
    from medspacy.custom_tokenizer import create_medspacy_tokenizer

    nlp = spacy.blank("en")
    nlp.tokenizer = create_medspacy_tokenizer(nlp)
    for name in PIPE_ORDER:
        nlp.add_pipe(name)
    return nlp


@lru_cache(maxsize=1)
def get_pipeline() -> Language:
    """The process-wide pipeline."""
    return build_pipeline()
