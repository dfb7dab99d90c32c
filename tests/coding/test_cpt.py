"""CPT engine: hand-built facts per family (the hard cases of §2-§12) and a few notes end to end."""

from __future__ import annotations

import json

import pytest

from extractor.coding import codeset, cpt
from extractor.coding.cpt_tables import CptCodeRow, load_tables, tables
from extractor.coding.descriptors import DescriptorFileError, load_descriptors
from extractor.errors import CodeSetError, PatternFileError
from extractor.patterns import patterns_dir
from extractor.schemas import DiagnosisFact, Evidence, NoteFacts, ProcedureFact

DELETED = {"11100", "11101", "99201", "17100", "17101", "17102", "17103", "17104", "17105"}
DERMOSCOPY_CODES = {"96904", "0400T", "0401T"}


class Note:
    """Facts whose evidence spans point into a short hand-written text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.dx: list[DiagnosisFact] = []
        self.procs: list[ProcedureFact] = []
        self.cues: dict[str, list[Evidence]] = {}

    def ev(self, phrase: str) -> Evidence:
        start = self.text.index(phrase)
        return Evidence(start=start, end=start + len(phrase), text=phrase)

    def dx_(self, phrase: str, concept: str, **kw) -> int:
        kw.setdefault("source", "assessment")
        self.dx.append(
            DiagnosisFact(concept=concept, text=phrase, evidence=[self.ev(phrase)], **kw)
        )
        return len(self.dx) - 1

    def proc(self, phrase: str, kind: str, dx: list[int] | None = None, **kw) -> int:
        self.procs.append(
            ProcedureFact(kind=kind, diagnoses=dx or [], evidence=[self.ev(phrase)], **kw)
        )
        return len(self.procs) - 1

    def cue(self, name: str, phrase: str) -> None:
        self.cues.setdefault(name, []).append(self.ev(phrase))

    def facts(self, **kw) -> NoteFacts:
        return NoteFacts(text_length=len(self.text), diagnoses=self.dx, procedures=self.procs,
                         cues=self.cues, **kw)

    def code(self, **kw):
        return cpt.code_cpt(self.facts(**kw), None)


def claim(out) -> dict[str, tuple[int, list[str]]]:
    return {ln.code: (ln.units, sorted(ln.modifiers)) for ln in out.lines}


def considered(out) -> set[str]:
    return {c.code for c in out.considered}


# ------------------------------------------------------------------ tables


def test_tables_load_and_every_row_is_current():
    t = tables()
    assert len(t.codes) > 150
    assert not DELETED & set(t.codes)
    assert all(codeset.well_formed(c) for c in t.codes)
    for r in t.codes.values():
        assert r.addon_of is None or r.addon_of in t.codes
        assert r.label and r.family and r.units


def test_deleted_code_in_table_is_rejected(tmp_path):
    root = tmp_path / "patterns"
    (root / "coding").mkdir(parents=True)
    src = patterns_dir() / "coding"
    for name in ("cpt_deleted.jsonl", "cpt_routes.jsonl", "bundling.jsonl", "modifiers.jsonl",
                 "sites.jsonl"):
        (root / "coding" / name).write_text((src / name).read_text())
    row = {"code": "11100", "family": "biopsy_tangential", "label": "old biopsy"}
    (root / "coding" / "cpt_codes.jsonl").write_text(json.dumps(row) + "\n")
    codeset.deleted_codes.cache_clear()
    with pytest.raises(PatternFileError, match="deleted"):
        load_tables(root)
    codeset.deleted_codes.cache_clear()


def test_extra_field_in_code_row_is_rejected():
    with pytest.raises(ValueError):
        CptCodeRow.model_validate({"code": "11102", "family": "x", "label": "y", "descr": "z"})


def test_emit_guard():
    with pytest.raises(CodeSetError):
        codeset.assert_emittable("11100", tables().emittable)
    with pytest.raises(CodeSetError):
        codeset.assert_emittable("67810", tables().emittable)  # considered-only row


def test_descriptors(tmp_path):
    good = tmp_path / "d.csv"
    good.write_text("code,descriptor\n11102,Licensed text A\n17000,Licensed text B\n")
    assert load_descriptors(good) == {"11102": "Licensed text A", "17000": "Licensed text B"}
    bad = tmp_path / "b.csv"
    bad.write_text("cpt;text\n11102;x\n")
    with pytest.raises(DescriptorFileError, match="header"):
        load_descriptors(bad)
    bad.write_text("code,descriptor\nABC,x\n")
    with pytest.raises(DescriptorFileError, match=":2"):
        load_descriptors(bad)
    with pytest.raises(DescriptorFileError):
        load_descriptors(tmp_path / "missing.csv")


# ------------------------------------------------------------------ biopsies


def test_mixed_biopsy_techniques_hierarchy():
    n = Note("incisional bx L cheek; punch bx R shin; shave bx R back; shave bx L arm")
    a = n.dx_("cheek", "lesion", uncertain=True)
    n.proc("incisional bx", "biopsy", [a], method="incisional", site="cheek", laterality="left")
    n.proc("punch bx", "biopsy", [a], method="punch", site="shin", laterality="right")
    n.proc("shave bx R back", "biopsy", [a], method="tangential", site="back", laterality="right")
    n.proc("shave bx L arm", "biopsy", [a], method="tangential", site="upper_arm",
           laterality="left")
    out = n.code()
    assert claim(out) == {"11106": (1, []), "11105": (1, []), "11103": (2, [])}
    assert out.lines[0].code == "11106"  # highest RVU first


def test_biopsy_without_technique_defaults_to_tangential():
    n = Note("Biopsy of crusted nodule R ear, r/o SCC")
    d = n.dx_("SCC", "scc", uncertain=True)
    n.proc("Biopsy", "biopsy", [d], site="ear", laterality="right")
    out = n.code()
    assert claim(out) == {"11102": (1, [])}
    assert (0, "technique") in out.defaults
    assert out.lines[0].confidence < 0.9
    assert "69100" in considered(out)


def test_biopsy_and_destruction_of_different_lesions_59_on_primary_biopsy():
    n = Note("shave bx R back r/o BCC; LN2 to AK x3 forearms; tangential bx L calf")
    b = n.dx_("r/o BCC", "bcc", uncertain=True)
    ak = n.dx_("AK", "ak")
    n.proc("shave bx R back", "biopsy", [b], method="tangential", site="back", laterality="right")
    n.proc("tangential bx L calf", "biopsy", [b], method="tangential", site="calf",
           laterality="left")
    n.proc("LN2", "destruction", [ak], method="cryo", count=3, site="forearm")
    out = n.code()
    assert claim(out) == {"11102": (1, ["59"]), "11103": (1, []), "17000": (1, []),
                          "17003": (2, [])}


def test_biopsy_of_the_lesion_then_destroyed_is_bundled():
    n = Note("shave bx L shoulder then ED&C of the BCC, 0.6 cm")
    d = n.dx_("BCC", "bcc", source="pathology")
    n.proc("shave bx", "biopsy", [d], method="tangential", site="shoulder", laterality="left")
    n.proc("ED&C", "destruction", [d], method="electrosurgery", site="shoulder",
           laterality="left", size_cm=0.6)
    out = n.code()
    assert claim(out) == {"17261": (1, [])}
    assert "11102" in considered(out)


def test_shave_with_uncertain_dx_is_biopsy_definite_irritated_sk_is_removal():
    n = Note("shave of papule r/o BCC L temple; irritated SK R neck 0.7 cm shaved")
    b = n.dx_("r/o BCC", "bcc", uncertain=True)
    sk = n.dx_("irritated SK", "irritated_sk")
    n.proc("shave of papule", "shave", [b], method="tangential", site="temple", laterality="left")
    n.proc("shaved", "shave", [sk], method="tangential", site="neck", size_cm=0.7)
    out = n.code()
    assert claim(out) == {"11102": (1, ["59"]), "11306": (1, [])}


def test_eyelid_biopsy_anatomic_modifier_on_add_on():
    n = Note("punch bx R cheek; shave bx L lower eyelid lesion")
    d = n.dx_("lesion", "lesion", uncertain=True)
    n.proc("punch bx", "biopsy", [d], method="punch", site="cheek", laterality="right")
    n.proc("shave bx", "biopsy", [d], method="tangential", site="eyelid", laterality="left",
           eyelid="lower")
    assert claim(n.code()) == {"11104": (1, []), "11103": (1, ["E2"])}


def test_eyelid_without_side_no_modifier_and_laterality_default():
    n = Note("shave bx of upper eyelid papule")
    d = n.dx_("papule", "lesion", uncertain=True)
    n.proc("shave bx", "biopsy", [d], method="tangential", site="eyelid", eyelid="upper")
    out = n.code()
    assert claim(out) == {"11102": (1, [])}
    assert (0, "laterality") in out.defaults


# ------------------------------------------------------------------ removal / excision


def test_finger_shave_removal_digit_modifier():
    n = Note("shave removal of 6 mm pyogenic granuloma R index finger")
    d = n.dx_("pyogenic granuloma", "pyogenic_granuloma")
    n.proc("shave removal", "shave_removal", [d], method="tangential", intent="removal",
           site="finger", laterality="right", digit=2, size_cm=0.6)
    assert claim(n.code()) == {"11306": (1, ["F6"])}


def test_excised_diameter_crosses_band():
    n = Note("0.9 x 0.7 cm BCC L back excised with 5 mm margins")
    d = n.dx_("BCC", "bcc", source="pathology")
    n.proc("excised", "excision", [d], site="back", laterality="left", size_cm=0.9,
           margin_cm=0.5)
    out = n.code()
    assert claim(out) == {"11602": (1, [])}  # 0.9 + 2 x 0.5 = 1.9 cm
    assert "1.9 cm" in out.lines[0].rationale


def test_excision_margins_missing_uses_lesion_size():
    n = Note("Excised 1.1 cm dermatofibroma L shin, simple closure.")
    d = n.dx_("dermatofibroma", "dermatofibroma")
    n.proc("Excised", "excision", [d], site="shin", laterality="left", size_cm=1.1)
    n.proc("simple closure", "repair", [d], method="simple", site="shin", laterality="left")
    out = n.code()
    assert claim(out) == {"11402": (1, [])}
    assert (0, "margins") in out.defaults


def test_excision_uncertain_is_benign_with_histology_default():
    n = Note("Excision 0.9 cm pigmented papule L calf, 3 mm margins, r/o melanoma")
    d = n.dx_("melanoma", "melanoma", uncertain=True)
    n.proc("Excision", "excision", [d], site="calf", laterality="left", size_cm=0.9,
           margin_cm=0.3)
    out = n.code()
    assert claim(out) == {"11402": (1, [])}
    assert (0, "histology") in out.defaults


def test_excision_size_missing_lowest_band_of_group():
    n = Note("Excised cyst from R flank, layered closure 3 cm.")
    d = n.dx_("cyst", "epidermoid_cyst")
    n.proc("Excised", "excision", [d], site="flank", laterality="right")
    n.proc("layered closure", "repair", [d], method="intermediate", site="flank", length_cm=3.0)
    out = n.code()
    assert claim(out) == {"11400": (1, []), "12032": (1, [])}
    assert (0, "size") in out.defaults


def test_several_excisions_59_and_repair_sum_by_group():
    n = Note("BCC L cheek 1.4 cm 4 mm margins; SCC scalp 1.0 cm 3 mm; SCC chest 1.0 cm 2 mm. "
             "complex repair cheek 4.5 cm; layered scalp 3 cm; layered chest 5 cm")
    b = n.dx_("BCC", "bcc", source="pathology")
    s1 = n.dx_("SCC scalp", "scc", source="pathology")
    s2 = n.dx_("SCC chest", "scc", source="pathology")
    n.proc("BCC L cheek", "excision", [b], site="cheek", laterality="left", size_cm=1.4,
           margin_cm=0.4)
    n.proc("SCC scalp", "excision", [s1], site="scalp", size_cm=1.0, margin_cm=0.3)
    n.proc("SCC chest", "excision", [s2], site="chest", size_cm=1.0, margin_cm=0.2)
    n.proc("complex repair", "repair", [b], method="complex", site="cheek", length_cm=4.5)
    n.proc("layered scalp", "repair", [s1], method="intermediate", site="scalp", length_cm=3.0)
    n.proc("layered chest", "repair", [s2], method="intermediate", site="chest", length_cm=5.0)
    assert claim(n.code()) == {
        "11643": (1, []), "11622": (1, ["59"]), "11602": (1, ["59"]),
        "13132": (1, []), "12034": (1, ["59"]),
    }


def test_same_code_two_lesions_units_2_with_59():
    n = Note("two irritated SKs shaved: R back 0.4 cm, L back 0.5 cm")
    d = n.dx_("irritated SKs", "irritated_sk")
    n.proc("R back", "shave_removal", [d], site="back", laterality="right", size_cm=0.4)
    n.proc("L back", "shave_removal", [d], site="back", laterality="left", size_cm=0.5)
    assert claim(n.code()) == {"11300": (2, ["59"])}


def test_complex_repair_over_7_5_adds_units():
    n = Note("complex repair of the back, 13 cm")
    d = n.dx_("back", "scc", source="pathology")
    n.proc("complex repair", "repair", [d], method="complex", site="back", length_cm=13.0)
    assert claim(n.code()) == {"13101": (1, []), "13102": (2, [])}


# ------------------------------------------------------------------ destruction


def test_fifteen_or_more_aks_17004_alone():
    n = Note("LN2 to AKs: face 9, forearms 9")
    d = n.dx_("AKs", "ak")
    n.proc("face 9", "destruction", [d], method="cryo", count=9, site="face")
    n.proc("forearms 9", "destruction", [d], method="cryo", count=9, site="forearm")
    out = n.code()
    assert claim(out) == {"17004": (1, [])}
    assert {"17000", "17003"} <= considered(out)


def test_ak_count_missing_defaults_to_one():
    n = Note("Cryo to several AKs on the scalp.")
    d = n.dx_("AKs", "ak")
    n.proc("Cryo", "destruction", [d], method="cryo", site="scalp")
    out = n.code()
    assert claim(out) == {"17000": (1, [])}
    assert (0, "count") in out.defaults


def test_warts_and_molluscum_session_codes():
    n = Note("LN2 to 16 warts hands")
    d = n.dx_("warts", "common_wart")
    n.proc("LN2", "destruction", [d], method="cryo", count=16, site="hand")
    out = n.code()
    assert claim(out) == {"17111": (1, [])}
    assert "17110" in considered(out)


def test_malignant_destruction_by_group_and_size():
    n = Note("ED&C bx-proven BCC R hand 0.8 cm; ED&C SCCis back 1.5 cm")
    b = n.dx_("BCC", "bcc", source="pathology")
    s = n.dx_("SCCis", "scc_in_situ", source="pathology")
    n.proc("ED&C bx-proven", "destruction", [b], method="electrosurgery", site="hand",
           laterality="right", size_cm=0.8)
    n.proc("ED&C SCCis", "destruction", [s], method="electrosurgery", site="back", size_cm=1.5)
    assert claim(n.code()) == {"17271": (1, ["59"]), "17262": (1, [])}


def test_tags_31():
    n = Note("31 skin tags snipped, irritated")
    d = n.dx_("skin tags", "skin_tag")
    n.proc("snipped", "tag_removal", [d], count=31, site="neck")
    assert claim(n.code()) == {"11200": (1, []), "11201": (2, [])}


# ------------------------------------------------------------------ Mohs, injections, nails, other


def test_mohs_stages_and_blocks():
    n = Note("Mohs L nasal ala BCC, 3 stages, blocks 7/4/6")
    d = n.dx_("BCC", "bcc", source="pathology")
    n.proc("Mohs", "mohs", [d], site="nose", laterality="left", stages=3, blocks=[7, 4, 6])
    out = n.code()
    assert claim(out) == {"17311": (1, []), "17312": (2, []), "17315": (3, [])}


def test_mohs_trunk_with_separate_biopsy_59():
    n = Note("Mohs L shoulder SCC 2 stages; shave bx R cheek papule")
    d = n.dx_("SCC", "scc", source="pathology")
    p = n.dx_("papule", "lesion", uncertain=True)
    n.proc("Mohs", "mohs", [d], site="shoulder", laterality="left", stages=2)
    n.proc("shave bx", "biopsy", [p], method="tangential", site="cheek", laterality="right")
    assert claim(n.code()) == {"17313": (1, []), "17314": (1, []), "11102": (1, ["59"])}


def test_ilk_with_kenalog_units_and_ak_59():
    n = Note("Kenalog 10 mg/mL 1.5 mL into 3 keloids chest; LN2 AK x4 forearms")
    k = n.dx_("keloids", "keloid")
    ak = n.dx_("AK", "ak")
    n.proc("Kenalog", "injection", [k], count=3, site="chest",
           attrs={"conc_mg_ml": 10.0, "volume_ml": 1.5})
    n.proc("LN2", "destruction", [ak], method="cryo", count=4, site="forearm")
    assert claim(n.code()) == {"11900": (1, ["59"]), "J3301": (2, []), "17000": (1, []),
                               "17003": (3, [])}


def test_nail_avulsion_two_toes_digit_modifiers():
    n = Note("avulsion L great toenail; avulsion R great toenail")
    d = n.dx_("toenail", "ingrown_nail")
    n.proc("avulsion L", "nail_avulsion", [d], site="toe", laterality="left", digit=1)
    n.proc("avulsion R", "nail_avulsion", [d], site="toe", laterality="right", digit=1)
    assert claim(n.code()) == {"11730": (1, ["TA"]), "11732": (1, ["T5"])}


def test_pdt_with_debridement_drug_and_cryo_outside_field():
    n = Note("PDT face, Levulan Kerastick x1, curettage of thick AKs; LN2 AK x3 R forearm")
    ak = n.dx_("AKs", "ak")
    n.proc("PDT face, Levulan Kerastick", "pdt", [ak], site="face")
    n.proc("curettage", "destruction", [ak], method="curettage", site="face")
    n.proc("LN2", "destruction", [ak], method="cryo", count=3, site="forearm",
           laterality="right")
    out = n.code()
    assert claim(out) == {"96574": (1, []), "J7308": (1, []), "17000": (1, ["59"]),
                          "17003": (2, [])}


def test_phototherapy_and_inhouse_pathology():
    n = Note("NB-UVB session for psoriasis")
    d = n.dx_("psoriasis", "psoriasis")
    n.proc("NB-UVB", "phototherapy", [d], method="uv")
    assert claim(n.code()) == {"96900": (1, [])}
    n2 = Note("punch bx L hand, read by our dermatopathologist, PAS")
    d2 = n2.dx_("hand", "lesion", uncertain=True)
    n2.proc("punch bx", "biopsy", [d2], method="punch", site="hand", laterality="left")
    n2.cue("inhouse_path", "our dermatopathologist")
    n2.cue("special_stain_micro", "PAS")
    assert claim(n2.code()) == {"11104": (1, []), "88305": (1, []), "88312": (1, [])}


# ------------------------------------------------------------------ status, cosmetic, never


@pytest.mark.parametrize("status", ["planned", "negated", "historical", "hypothetical"])
def test_not_performed_goes_to_considered(status):
    n = Note("excision of the BCC")
    d = n.dx_("BCC", "bcc")
    n.proc("excision", "excision", [d], status=status, site="back", size_cm=1.0)
    out = n.code()
    assert [ln.code for ln in out.lines if not ln.code.startswith("992")] == []
    assert out.considered[0].code.startswith("116")
    assert out.procedure_codes == {}


def test_cosmetic_request_still_coded_with_lower_confidence():
    n = Note("Pt requests removal of benign nevus on chin for appearance; shave removal 0.4 cm")
    d = n.dx_("benign nevus", "nevus")
    n.proc("shave removal", "shave_removal", [d], site="chin", size_cm=0.4, intent="cosmetic")
    plain = n.code().lines[0].confidence
    n.cue("cosmetic", "for appearance")
    out = n.code()
    assert claim(out) == {"11310": (1, [])}
    assert out.lines[0].confidence < plain


def test_flap_and_lipoma_are_considered_only():
    n = Note("rotation flap; excision of lipoma back 3 cm")
    d = n.dx_("lipoma", "lipoma")
    n.proc("rotation flap", "flap", [], site="nose")
    n.proc("excision of lipoma", "excision", [d], site="back", size_cm=3.0)
    out = n.code()
    assert out.lines == []
    assert "14000" in considered(out)


def test_never_dermoscopy_code_never_deleted_code():
    n = Note("Dermoscopy of R scapular mole: reticular network. Shave bx, LN2 AK x2")
    d = n.dx_("mole", "nevus", uncertain=True)
    ak = n.dx_("AK", "ak")
    n.proc("Dermoscopy", "photography", [d])
    n.proc("Shave bx", "biopsy", [d], method="tangential", site="back")
    n.proc("LN2", "destruction", [ak], method="cryo", count=2, site="face")
    out = n.code()
    codes = {ln.code for ln in out.lines} | considered(out)
    assert not codes & DERMOSCOPY_CODES
    assert not codes & DELETED


# ------------------------------------------------------------------ end to end

E2E = [
    ("Est pt. Actinic keratoses x5 on the scalp treated with LN2 cryotherapy today.",
     {"17000": 1, "17003": 4}),
    ("Shave biopsy of a 6 mm pearly papule on the R nasal ala, r/o BCC. Specimen to path.",
     {"11102": 1}),
    ("Procedure: 4 mm punch biopsy of the L forearm, r/o lichen planus. Plan: will excise "
     "the nevus on the back next visit.", {"11104": 1}),
    ("No biopsy today. Mole on the back looks benign, reassured.", {}),
]


@pytest.mark.parametrize(("text", "expected"), E2E)
def test_end_to_end(facts_of, text, expected):
    from extractor.coding import icd10

    facts = facts_of(text)
    out = cpt.code_cpt(facts, icd10.code_note(facts))
    got = {ln.code: ln.units for ln in out.lines if not ln.code.startswith("992")}
    assert got == expected
    for ln in out.lines:
        assert ln.code not in DELETED
        for e in ln.evidence:
            assert text[e.start:e.end] == e.text
