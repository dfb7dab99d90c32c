"""The gold files themselves: a wrong gold makes every score that uses it wrong.

Checks the README format (strict pydantic model), note/gold pairing, that every ICD-10-CM
code is a billable leaf of the shipped code set, that CPT diagnosis pointers point into
the note's own list, that flag ids are known, and that no deleted CPT code is used.
Failures name the file, so a wrong gold is reported rather than silently fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import simple_icd_10_cm as icd

from extractor.coding.codeset import deleted_codes
from extractor.evaluate import KNOWN_FLAGS, GoldNote

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
SPLITS = ("dev", "test")
GOLD_FILES = sorted(p for s in SPLITS for p in (CORPUS / s).glob("*.json"))
# CODING_CONVENTIONS §1.2 names these explicitly; the project's table may hold more.
DELETED = {"11100", "11101", "99201", "17100", "17101", "17102", "17103", "17104", "17105"}


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


@pytest.fixture(scope="module", params=GOLD_FILES, ids=_id)
def gold(request: pytest.FixtureRequest) -> tuple[Path, GoldNote]:
    path: Path = request.param
    return path, GoldNote.model_validate_json(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("split", SPLITS)
def test_split_has_notes_and_pairs(split: str) -> None:
    folder = CORPUS / split
    txt = {p.stem for p in folder.glob("*.txt")}
    js = {p.stem for p in folder.glob("*.json")}
    assert txt, f"{folder} holds no notes"
    assert not txt - js, f"notes without gold in {split}: {sorted(txt - js)}"
    assert not js - txt, f"gold without note in {split}: {sorted(js - txt)}"
    others = [p.name for p in folder.iterdir() if p.suffix not in (".txt", ".json")]
    assert not others, f"unexpected files in {split}: {others}"


def test_gold_files_found() -> None:
    assert len(GOLD_FILES) >= 200


@pytest.mark.parametrize("path", GOLD_FILES, ids=_id)
def test_format(path: Path) -> None:
    GoldNote.model_validate(json.loads(path.read_text(encoding="utf-8")))
    assert path.read_text(encoding="utf-8").strip(), path
    assert path.with_suffix(".txt").read_text(encoding="utf-8").strip(), "empty note"


def test_icd10_billable_leaves(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    codes = set(g.icd10) | {c for ln in g.cpt for c in ln.icd10}
    bad = [c for c in sorted(codes) if not (icd.is_valid_item(c) and icd.is_leaf(c))]
    assert not bad, f"{_id(path)}: not billable leaves: {bad}"


def test_pointers_in_note_list(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    bad = [(ln.code, c) for ln in g.cpt for c in ln.icd10 if c not in g.icd10]
    assert not bad, f"{_id(path)}: CPT pointers missing from the note's icd10 list: {bad}"


def test_one_line_per_code(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    codes = [ln.code for ln in g.cpt]
    assert len(codes) == len(set(codes)), f"{_id(path)}: a CPT code has two lines"


def test_flags_known(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    unknown = sorted(set(g.flags) - KNOWN_FLAGS)
    assert not unknown, f"{_id(path)}: unknown flag ids {unknown}"


def test_no_deleted_cpt(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    dead = DELETED | set(deleted_codes())
    bad = [ln.code for ln in g.cpt if ln.code in dead]
    assert not bad, f"{_id(path)}: deleted CPT codes {bad}"


def test_no_lt_rt_51_annotated(gold: tuple[Path, GoldNote]) -> None:
    """README: LT/RT and 51 are not annotated (the scorer ignores them)."""
    path, g = gold
    bad = [(ln.code, m) for ln in g.cpt for m in ln.modifiers if m in ("LT", "RT", "51")]
    assert not bad, f"{_id(path)}: {bad}"


def test_rejects_malformed_gold() -> None:
    from pydantic import ValidationError

    good = {"cpt": [], "icd10": [], "flags": [], "patient": None, "rationale": "",
            "dermoscopy": {"status": "not_mentioned", "mdm_data_categories": []}}
    GoldNote.model_validate(good)
    for bad in (
        {**good, "extra": 1},
        {**good, "icd10": ["L570"]},
        {**good, "cpt": [{"code": "11102", "units": 0, "modifiers": [], "icd10": []}]},
        {**good, "dermoscopy": {"status": "seen", "mdm_data_categories": []}},
        {**good, "dermoscopy": {"status": "not_mentioned", "mdm_data_categories": [4]}},
        {**good, "flags": ["SIZE_MISSING", "SIZE_MISSING"]},
    ):
        with pytest.raises(ValidationError):
            GoldNote.model_validate(bad)


def test_modifier_placement(gold: tuple[Path, GoldNote]) -> None:
    """§11.1/§11.2: 25 only on E/M; 59-class never on add-on codes."""
    from extractor.coding.cpt_tables import tables

    path, g = gold
    t = tables()
    for ln in g.cpt:
        is_em = ln.code.startswith("992")
        assert is_em or "25" not in ln.modifiers, f"{_id(path)}: 25 on {ln.code}"
        row = t.codes.get(ln.code)
        assert row is not None, f"{_id(path)}: {ln.code} is not in the project's CPT table"
        if row.addon_of:
            assert not {"59", "XS", "XE", "XP", "XU"} & set(ln.modifiers), (
                f"{_id(path)}: 59-class modifier on add-on {ln.code}"
            )


def test_em_matches_patient(gold: tuple[Path, GoldNote]) -> None:
    """A new-patient E/M (9920x) needs patient 'new', an established one (9921x) 'established'."""
    path, g = gold
    for ln in g.cpt:
        if ln.code.startswith("9920"):
            assert g.patient == "new", f"{_id(path)}: {ln.code} but patient={g.patient}"
        elif ln.code.startswith("9921"):
            assert g.patient == "established", f"{_id(path)}: {ln.code} but patient={g.patient}"


def test_dermoscopy_consistent(gold: tuple[Path, GoldNote]) -> None:
    path, g = gold
    d = g.dermoscopy
    if d.status == "not_mentioned":
        assert not d.mdm_data_categories, _id(path)
        assert not {f for f in g.flags if f.startswith("DERMOSCOPY_")}, _id(path)
    if "DERMOSCOPY_WITHOUT_FINDINGS" in g.flags:
        assert d.status == "without_findings", _id(path)
    if "DERMOSCOPY_FINDINGS_NOT_LINKED" in g.flags:
        assert d.status == "findings_documented", _id(path)
