"""The 39 real MTSamples transcriptions beside the repo: no crash, sections and
sentences still found though their headers run inline ("PROCEDURE:, ...")."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[3] / "shared" / "realnotes" / "mtsamples"
NOTES = sorted(REAL.glob("*.txt")) if REAL.is_dir() else []


@pytest.mark.skipif(not NOTES, reason="../shared/realnotes is not beside this checkout")
def test_every_real_note_runs(nlp):
    for path in NOTES:
        text = path.read_text(encoding="utf-8")
        doc = nlp(text)
        facts = doc._.dc_facts
        assert facts is not None, path.name
        # inline headers still split the one-line note into many sentences and sections
        assert len(list(doc.sents)) >= 5, path.name
        for _cat, start, end in facts.sections:
            assert 0 <= start < end <= len(text)
        for p in facts.procedures:
            for ev in p.evidence:
                assert text[ev.start : ev.end] == ev.text


@pytest.mark.skipif(not NOTES, reason="../shared/realnotes is not beside this checkout")
def test_procedure_notes_find_their_procedure(nlp):
    by_name = {p.name[:3]: p for p in NOTES}
    expect = {"002": "biopsy", "012": "incision_drainage", "017": "excision", "024": "destruction"}
    for num, kind in expect.items():
        facts = nlp(by_name[num].read_text(encoding="utf-8"))._.dc_facts
        kinds = {p.kind for p in facts.procedures if p.status == "performed"}
        assert kind in kinds, (num, kinds)
