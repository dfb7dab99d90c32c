"""Documentation flags (placeholder while being built)."""

from __future__ import annotations

from typing import Any

from extractor.schemas import CptOutcome, Dermoscopy, Flag, NoteFacts


def evaluate(text: str, facts: NoteFacts, icd: Any, cpt_out: CptOutcome, derm: Dermoscopy) -> list[Flag]:
    return []
