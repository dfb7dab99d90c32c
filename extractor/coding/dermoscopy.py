"""Dermoscopy status (placeholder while being built)."""

from __future__ import annotations

from extractor.schemas import Dermoscopy, NoteFacts


def assess(facts: NoteFacts) -> Dermoscopy:
    return Dermoscopy()
