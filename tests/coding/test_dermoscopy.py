"""Dermoscopy status and E/M data categories (CODING_CONVENTIONS §9)."""

from __future__ import annotations

import pytest

from extractor.coding.dermoscopy import assess
from extractor.schemas import DermoscopyFact, Evidence, NoteFacts


def _ev(text: str = "x") -> Evidence:
    return Evidence(start=0, end=len(text), text=text)


def _facts(**kw) -> NoteFacts:
    return NoteFacts(text_length=100, dermoscopy=DermoscopyFact(**kw))


def test_nothing_is_not_mentioned() -> None:
    assert assess(_facts()).status == "not_mentioned"


def test_negated_only_is_not_mentioned() -> None:
    d = assess(_facts(negated_mentions=[_ev("dermoscopy")]))
    assert d.status == "not_mentioned" and d.mdm_data_categories == []


def test_mention_without_findings() -> None:
    d = assess(_facts(mentions=[_ev("dermoscopy")], image_cues={"1": [_ev()]}))
    assert d.status == "without_findings"
    assert d.mdm_data_categories == []  # images nobody describes support nothing


@pytest.mark.parametrize("cats", [["1"], ["2"], ["3"], ["1", "2"], ["1", "2", "3"]])
def test_categories_with_findings(cats: list[str]) -> None:
    d = assess(
        _facts(mentions=[_ev()], findings=[_ev("globules")], image_cues={c: [_ev()] for c in cats})
    )
    assert d.status == "findings_documented"
    assert d.mdm_data_categories == sorted(int(c) for c in cats)


def test_empty_cue_lists_count_for_nothing() -> None:
    d = assess(_facts(mentions=[_ev()], findings=[_ev()], image_cues={"2": []}))
    assert d.mdm_data_categories == []


# ------------------------------------------------------------------ through the pipeline

CASES = [
    ("Exam: 5 mm nevus R flank. Dermoscopy not performed.", "not_mentioned", []),
    ("Dermoscopy performed on R scapular mole. Will recheck in 3 months.", "without_findings", []),
    ("Dermatoscopic exam done — benign.", "without_findings", []),
    (
        "Dermoscopy: regular reticular network, no dots or globules; reassured.",
        "findings_documented",
        [],
    ),
    (
        "Dermoscopy R flank: patchy reticular network, no streaks. Compared with stored "
        "12/2025 dermoscopic images: no change.",
        "findings_documented",
        [1],
    ),
    (
        "Dermoscopy: atypical network with irregular streaks, compared with 11/2025 image - "
        "new streaks.",
        "findings_documented",
        [1],
    ),
    (
        "Dermoscopy: images of #1 captured by MA during rooming and interpreted by me: "
        "broadened network, blue-white veil.",
        "findings_documented",
        [2],
    ),
    (
        "Dermoscopy: atypical pigment network, central blue-white veil.\n"
        "Dermoscopic images were uploaded and reviewed with our dermatopathologist, Dr. Okafor.",
        "findings_documented",
        [3],
    ),
]


@pytest.mark.parametrize(("text", "status", "cats"), CASES)
def test_pipeline(facts_of, text: str, status: str, cats: list[int]) -> None:
    d = assess(facts_of(text))
    assert (d.status, d.mdm_data_categories) == (status, cats)
