"""Sizes, margins, lengths, counts: normalised to cm and given a role."""

from __future__ import annotations

import pytest


def meas(nlp, text):
    doc = nlp(text)  # keep the Doc alive while its span group is read
    return [sp._.dc_value for sp in doc.spans["dc_measure"]]


@pytest.mark.parametrize(
    ("text", "kind", "cm", "role"),
    [
        ("1.2 x 0.8 cm pink papule", "size", 1.2, "lesion"),
        ("6mm papule", "size", 0.6, "lesion"),
        ("5 x 4 mm nodule", "size", 0.5, "lesion"),
        ("excised with 2 mm margins", "margin", 0.2, "margin"),
        ("2-3 mm margins", "margin", 0.2, "margin"),
        ("margins of 4 mm", "margin", 0.4, "margin"),
        ("layered closure, repair length 3.2 cm", "size", 3.2, "length"),
        ("closed with 4 mm margins", "margin", 0.4, "margin"),
        ("final defect 1.4 cm", "size", 1.4, "defect"),
    ],
)
def test_lengths(nlp, text, kind, cm, role):
    vals = [v for v in meas(nlp, text) if v["kind"] == kind]
    assert vals, text
    assert vals[0]["cm"] == pytest.approx(cm)
    assert vals[0]["role"] == role


def test_punch_tool_size_is_not_a_lesion_size(nlp):
    vals = meas(nlp, "4 mm punch biopsy of the rash")
    assert all(v["kind"] == "tool" for v in vals if v["kind"] in ("size", "tool"))


def test_suture_size_is_ignored(nlp):
    assert not [v for v in meas(nlp, "closed with 4-0 nylon") if v["kind"] in ("size", "tool")]


@pytest.mark.parametrize(("text", "n"), [("AK x12 scalp", 12), ("AKs (6) on the face", 6)])
def test_counts(nlp, text, n):
    counts = [v["n"] for v in meas(nlp, text) if v["kind"] == "count"]
    assert counts == [n]


def test_area_and_dose(nlp):
    vals = meas(nlp, "PDL to 35 sq cm. Kenalog 10 mg/mL, 0.5 mL injected.")
    kinds = {v["kind"] for v in vals}
    assert {"area", "concentration", "volume"} <= kinds
