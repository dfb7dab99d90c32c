"""Properties of the whole pipeline (``code_text``) on arbitrary and note-like text.

Example-based tests check that the right codes come out of the notes we thought
of; these check what must hold for *any* note a practice sends: nothing raises,
every offset slices the note to its text, every ICD-10-CM code is billable and
every unit count is a positive integer. Bounded (``max_examples``) so the suite
stays fast; hypothesis keeps the failing examples it finds in ``.hypothesis/``.
"""

from __future__ import annotations

import pytest
import simple_icd_10_cm as icd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractor.engine import code_text
from extractor.schemas import Evidence, NoteResult

# Fragments of real note language, so that generated notes reach the coding rules
# and not only the "no procedure found" path.
FRAGMENTS = [
    "Shave biopsy of the left forearm.",
    "Punch biopsy 4 mm of the right cheek.",
    "Cryotherapy to 16 actinic keratoses on the scalp and face.",
    "Excision of basal cell carcinoma of the back, lesion 1.2 cm, margins 4 mm, excised 2.0 cm.",
    "Intermediate layered closure 3.5 cm.",
    "Dermoscopy performed.",
    "Dermoscopy: atypical pigment network, blue-white veil; biopsy recommended.",
    "Mohs surgery of the nasal ala, 3 stages, 2 blocks each.",
    "No evidence of melanoma.",
    "History of squamous cell carcinoma.",
    "Seborrheic keratosis, irritated, of the right upper eyelid.",
    "Warts x3 on the left hand treated with LN2.",
    "Pathology pending.",
    "Established patient, follow up in 3 months.",
    "Kenalog 10 mg/mL, 0.5 mL injected into 2 keloids.",
    "PROCEDURE:",
    "ASSESSMENT AND PLAN:",
    "1.",
    "#2",
    "cm",
    "x",
]

note_like = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30)), min_size=0, max_size=12
).flatmap(
    lambda parts: st.lists(
        st.sampled_from([" ", "\n", "\r\n", "  ", "\t", ", ", "\n\n"]),
        min_size=len(parts),
        max_size=len(parts),
    ).map(lambda seps: "".join(p + s for p, s in zip(parts, seps, strict=True)))
)
any_text = st.text(max_size=400)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _spans(result: NoteResult) -> list[tuple[str, int, int, str]]:
    out: list[tuple[str, int, int, str]] = []

    def add(where: str, evs: list[Evidence]) -> None:
        out.extend((where, e.start, e.end, e.text) for e in evs)

    for line in result.cpt:
        add(f"cpt {line.code}", line.evidence)
    for dx in result.icd10:
        add(f"icd10 {dx.code}", dx.evidence)
    for flag in result.flags:
        add(f"flag {flag.id}", flag.evidence)
    for ent in result.entities:
        out.append((f"entity {ent.label}", ent.start, ent.end, ent.text))
    return out


def _check(text: str) -> None:
    result = code_text(text, "prop")
    assert result.note_id == "prop"
    for where, start, end, span_text in _spans(result):
        assert 0 <= start <= end <= len(text), (where, start, end)
        assert text[start:end] == span_text, where
    for dx in result.icd10:
        assert icd.is_valid_item(dx.code) and icd.is_leaf(dx.code), f"not billable: {dx.code}"
    top = {dx.code for dx in result.icd10}
    for line in result.cpt:
        assert isinstance(line.units, int) and line.units >= 1, (line.code, line.units)
        for code in line.icd10:
            assert icd.is_valid_item(code) and icd.is_leaf(code), f"pointer not billable: {code}"
            assert code in top, f"{line.code} points at {code}, absent from icd10"
        assert 0.0 <= line.confidence <= 1.0
    # the result must survive the JSON boundary unchanged
    assert NoteResult.model_validate_json(result.model_dump_json()) == result


@SETTINGS
@given(any_text)
def test_any_unicode_text(text: str) -> None:
    _check(text)


@SETTINGS
@given(note_like)
def test_note_like_text(text: str) -> None:
    _check(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\n\n",
        "\x00",
        "\ufeffShave biopsy of the left forearm.",
        "Shave biopsy\u2028of the left forearm.\u0085",
        "🙂 Punch biopsy 4 mm of the right cheek 🙂",
        "e\u0301xcision of BCC of the back 1.2 cm",  # combining accent shifts nothing
        "Cryotherapy to " + "9" * 40 + " actinic keratoses.",
        "Shave biopsy of the left forearm. " * 300,
    ],
)
def test_edge_cases(text: str) -> None:
    _check(text)
