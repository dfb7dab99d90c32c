"""Scorer arithmetic on tiny hand-made gold/prediction pairs (no pipeline needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.evaluate import (
    Claim,
    ClaimLine,
    GoldNote,
    claim_of_gold,
    evaluate_dir,
    gold_predictor,
    load_gold_dir,
    norm_modifiers,
    score,
    set_scores,
)


def claim(*lines: tuple[str, int, list[str]], icd: tuple[str, ...] = (),
          flags: tuple[str, ...] = (), derm: str = "not_mentioned",
          mdm: tuple[int, ...] = ()) -> Claim:
    return Claim(lines=[ClaimLine(c, u, norm_modifiers(m)) for c, u, m in lines],
                 icd10=list(icd), flags=list(flags), dermoscopy_status=derm, mdm=list(mdm))


def test_modifier_normalisation() -> None:
    assert norm_modifiers(["XS", "LT", "51", "e2"]) == {"59", "E2"}
    assert norm_modifiers(["XE", "XP", "XU", "59"]) == {"59"}
    assert norm_modifiers(["RT"]) == frozenset()


def test_59_equals_xs_and_lt_dropped() -> None:
    gold = [claim(("11102", 1, ["59"]), ("17000", 1, []))]
    pred = [claim(("11102", 1, ["XS", "LT"]), ("17000", 1, ["RT", "51"]))]
    rep = score(gold, pred)
    assert rep.scores["modifiers"].f1 == 1.0
    assert rep.exact_claim_modifiers_rate == 1.0


def test_units_scored_separately_from_codes() -> None:
    gold = [claim(("17000", 1, []), ("17003", 11, []))]
    pred = [claim(("17000", 1, []), ("17003", 10, []))]
    rep = score(gold, pred)
    assert rep.scores["cpt_code"].f1 == 1.0
    assert rep.scores["cpt_code_units"].precision == 0.5
    assert rep.scores["cpt_code_units"].recall == 0.5
    assert rep.exact_claim_rate == 0.0
    miss = {(m.kind, m.what, m.item) for m in rep.per_note[0].misses}
    assert ("FN", "units", "17003x11") in miss and ("FP", "units", "17003x10") in miss


def test_micro_average_pools_notes() -> None:
    gold = [claim(("11102", 1, []), ("11103", 2, [])), claim(("17110", 1, []))]
    pred = [claim(("11102", 1, [])), claim(("17110", 1, []), ("17000", 1, []))]
    s = score(gold, pred).scores["cpt_code"]
    # TP 2, FP 1, FN 1 over both notes
    assert (s.precision, s.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (s.support, s.predicted) == (3, 3)


def test_exact_claim_needs_same_codes_and_units() -> None:
    gold = [claim(("11102", 1, []), ("11103", 2, [])), claim(("11104", 1, ["59"]))]
    pred = [claim(("11103", 2, []), ("11102", 1, [])), claim(("11104", 1, []))]
    rep = score(gold, pred)
    assert rep.exact_claim_rate == 1.0
    assert rep.exact_claim_modifiers_rate == 0.5


def test_icd_full_and_category() -> None:
    gold = [claim(icd=("C44.319", "L57.0"))]
    pred = [claim(icd=("C44.311", "L57.0"))]
    rep = score(gold, pred)
    assert rep.scores["icd10_full"].f1 == 0.5
    assert rep.scores["icd10_category"].f1 == 1.0


def test_single_flag_is_not_scored_as_binary_accuracy() -> None:
    """One label column must not let sklearn count true negatives as hits."""
    gold = [claim(flags=("SIZE_MISSING",))] + [claim() for _ in range(9)]
    pred = [claim() for _ in range(10)]
    s = set_scores([set(c.flags) for c in gold], [set(c.flags) for c in pred], ["SIZE_MISSING"])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    rep = score(gold, pred)
    assert rep.flags["SIZE_MISSING"].recall == 0.0
    assert rep.flags["SIZE_MISSING"].support == 1


def test_em_accuracy_only_over_em_notes() -> None:
    gold = [claim(("99213", 1, ["25"]), ("17000", 1, [])), claim(("17000", 1, [])),
            claim(("99212", 1, []))]
    pred = [claim(("99214", 1, ["25"]), ("17000", 1, [])), claim(("17000", 1, [])),
            claim(("99212", 1, []))]
    rep = score(gold, pred)
    assert rep.em_notes == 2
    assert rep.em_accuracy == 0.5


def test_dermoscopy_accuracy_and_mdm() -> None:
    gold = [claim(derm="findings_documented", mdm=(1,)), claim(derm="without_findings")]
    pred = [claim(derm="findings_documented", mdm=(1, 3)), claim(derm="not_mentioned")]
    rep = score(gold, pred)
    assert rep.dermoscopy_accuracy == 0.5
    assert rep.scores["mdm_categories"].recall == 1.0
    assert rep.scores["mdm_categories"].precision == 0.5


def test_nothing_expected_nothing_predicted() -> None:
    rep = score([claim()], [claim()])
    assert rep.scores["cpt_code"].support == 0
    assert rep.exact_claim_rate == 1.0


def test_gold_against_itself_scores_one(tmp_path: Path) -> None:
    g = {"cpt": [{"code": "11102", "units": 1, "modifiers": ["XS"], "icd10": ["D49.2"]},
                 {"code": "11103", "units": 2, "modifiers": [], "icd10": ["D49.2"]}],
         "icd10": ["D49.2"], "flags": ["BIOPSY_TECHNIQUE_MISSING"],
         "dermoscopy": {"status": "not_mentioned", "mdm_data_categories": []},
         "patient": None, "rationale": "test"}
    (tmp_path / "a.txt").write_text("Biopsy x3 of back lesions.", encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps(g), encoding="utf-8")
    cases = load_gold_dir(tmp_path)
    rep = evaluate_dir(tmp_path, gold_predictor(cases))
    assert all(s.f1 == 1.0 for s in rep.scores.values() if s.support)
    assert rep.exact_claim_modifiers_rate == 1.0
    assert claim_of_gold(GoldNote.model_validate(g)).code_mods == {"11102:59"}


def test_missing_gold_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("note", encoding="utf-8")
    with pytest.raises(FileNotFoundError):
        load_gold_dir(tmp_path)
