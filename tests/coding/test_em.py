"""E/M by MDM (§10) and the project's 25 convention on procedure days."""

from __future__ import annotations

from extractor.coding import cpt
from extractor.coding.em import assess
from extractor.schemas import DiagnosisFact, Evidence, NoteFacts, ProcedureFact


def ev(text: str, phrase: str) -> Evidence:
    s = text.index(phrase)
    return Evidence(start=s, end=s + len(phrase), text=phrase)


def build(text: str, dx: list[tuple[str, str, dict]], procs=(), cues=(), **kw) -> NoteFacts:
    diags = [DiagnosisFact(concept=c, text=p, evidence=[ev(text, p)],
                           **({"source": "assessment"} | k)) for p, c, k in dx]
    cue_map: dict[str, list[Evidence]] = {}
    for name, phrase in cues:
        cue_map.setdefault(name, []).append(ev(text, phrase))
    return NoteFacts(text_length=len(text), diagnoses=diags, procedures=list(procs),
                     cues=cue_map, **kw)


def em_line(facts: NoteFacts):
    out = cpt.code_cpt(facts, None)
    ems = [ln for ln in out.lines if ln.code.startswith("992")]
    assert not ems or out.lines[0].code.startswith("992")  # E/M first
    return (ems[0] if ems else None), out


def test_stable_ad_topical_refill_is_low():
    t = "Atopic dermatitis, stable. Refill triamcinolone ointment."
    f = build(t, [("Atopic dermatitis", "atopic_dermatitis", {})],
              cues=[("em_rx_topical", "triamcinolone ointment")], patient="established")
    line, _ = em_line(f)
    assert line.code == "99213" and line.modifiers == []


def test_hs_worsening_oral_antibiotic_new_patient_is_moderate():
    t = "New patient. Hidradenitis worsening; start doxycycline."
    f = build(t, [("Hidradenitis", "hidradenitis", {})],
              cues=[("em_worsening", "worsening"), ("em_rx_oral", "doxycycline")],
              patient="new")
    assert em_line(f)[0].code == "99204"


def test_severe_flare_methotrexate_with_labs_is_high():
    t = "Psoriasis severe flare, BSA 30; start methotrexate, CBC and CMP baseline labs."
    f = build(t, [("Psoriasis", "psoriasis", {})],
              cues=[("em_severe", "severe flare"), ("em_worsening", "flare"),
                    ("em_rx_monitoring", "methotrexate")], patient="established")
    assert em_line(f)[0].code == "99215"


def test_benign_nevus_reassured_is_straightforward():
    t = "Benign nevus L arm, reassured."
    f = build(t, [("Benign nevus", "nevus", {"site": "upper_arm"})],
              cues=[("em_reassure", "reassured")], patient="new")
    assert em_line(f)[0].code == "99202"


def test_procedure_day_with_only_the_procedure_problem_no_em():
    t = "AK x3 face LN2."
    f = build(t, [("AK", "ak", {"site": "face"})],
              procs=[ProcedureFact(kind="destruction", method="cryo", count=3, site="face",
                                   diagnoses=[0], evidence=[ev(t, "LN2")])],
              patient="established")
    line, out = em_line(f)
    assert line is None
    assert [ln.code for ln in out.lines] == ["17000", "17003"]


def test_procedure_day_separate_problem_with_rx_gets_25():
    t = "AK x3 face LN2. Seborrheic dermatitis, start ketoconazole cream."
    f = build(t, [("AK", "ak", {"site": "face"}),
                  ("Seborrheic dermatitis", "seborrheic_dermatitis", {"site": "scalp"})],
              procs=[ProcedureFact(kind="destruction", method="cryo", count=3, site="face",
                                   diagnoses=[0], evidence=[ev(t, "LN2")])],
              cues=[("em_rx_topical", "ketoconazole cream")], patient="established")
    line, _ = em_line(f)
    assert line.code == "99213" and line.modifiers == ["25"]


def test_procedure_day_benign_nevus_reassured_only_no_em_and_considered():
    t = "Shave bx L temple r/o BCC. Benign nevus back, reassured."
    f = build(t, [("r/o BCC", "bcc", {"uncertain": True, "site": "temple"}),
                  ("Benign nevus", "nevus", {"site": "back"})],
              procs=[ProcedureFact(kind="biopsy", method="tangential", site="temple",
                                   diagnoses=[0], evidence=[ev(t, "Shave bx")])],
              patient="established")
    line, out = em_line(f)
    assert line is None
    assert any(c.code == "99212" and "straightforward" in c.reason for c in out.considered)


def test_unknown_patient_type_defaults_to_established():
    t = "Rosacea flaring; metronidazole gel."
    f = build(t, [("Rosacea", "rosacea", {})],
              cues=[("em_worsening", "flaring"), ("em_rx_topical", "metronidazole gel")])
    line, _ = em_line(f)
    assert line.code == "99214"
    assert "established assumed" in line.rationale


def test_mdm_two_of_three():
    t = "Acne vulgaris; tretinoin."
    f = build(t, [("Acne vulgaris", "acne_vulgaris", {})], cues=[("em_rx_topical", "tretinoin")])
    mdm, _ = assess(f, set())
    assert (mdm.problems, mdm.data, mdm.risk, mdm.level) == (2, 1, 3, 2)


def test_no_deleted_99201_for_minimal_new_patient():
    t = "New patient. Solar lentigo, reassured."
    f = build(t, [("Solar lentigo", "solar_lentigo", {})], patient="new")
    assert em_line(f)[0].code == "99202"
