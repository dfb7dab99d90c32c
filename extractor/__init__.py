"""dermcode: dermatology note → CPT / ICD-10-CM suggestions with evidence and documentation flags.

Importing the package is cheap on purpose: spaCy, medspaCy and the code tables load
only when :func:`load` (or the CLI) asks for them, so `dermcode --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from extractor._lazy_imports import defer_quickumls as _defer_quickumls  # noqa: E402

_defer_quickumls()

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language


def load() -> Language:
    """Build (once per process) and return the extraction pipeline."""
    from extractor.pipeline import get_pipeline

    return get_pipeline()


__all__ = ["__version__", "load"]
