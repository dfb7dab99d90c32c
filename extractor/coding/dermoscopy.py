"""Dermoscopy status and the E/M data categories it supports (CODING_CONVENTIONS §9).

Dermoscopy never earns a CPT code; what it earns is E/M data credit, and only when
the findings are written down. So the status is driven by *findings*, not by the
word "dermoscopy": a mention alone is ``without_findings`` (and feeds the
DERMOSCOPY_WITHOUT_FINDINGS flag), a negated mention is ``not_mentioned``.

Image handling (stored images compared, staff images interpreted, images discussed
with another clinician) comes from the DERMOSCOPY_IMAGE rules in
``patterns/entities/dermoscopy.jsonl``; it counts only when findings are documented,
because an image nobody describes supports no data element.
"""

from __future__ import annotations

from extractor.schemas import Dermoscopy, NoteFacts

#: The E/M data categories of CONTRACT.md, as the extraction labels them.
_CATEGORIES = {"1": 1, "2": 2, "3": 3}


def assess(facts: NoteFacts) -> Dermoscopy:
    """Status from mentions and findings; categories only when findings are documented."""
    d = facts.dermoscopy
    if not d.mentions:
        # Findings without any dermoscopy mention cannot occur (the extraction ties a
        # finding to a mention or a Dermoscopy section); negated mentions are "not done".
        return Dermoscopy(status="not_mentioned")
    if not d.findings:
        return Dermoscopy(status="without_findings")
    cats = sorted({_CATEGORIES[k] for k, evs in d.image_cues.items() if evs and k in _CATEGORIES})
    return Dermoscopy(status="findings_documented", mdm_data_categories=cats)
