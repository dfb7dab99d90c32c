"""ICD-10-CM tables and note rules, checked the way a coder would read the claim."""

from __future__ import annotations

from pathlib import Path

import pytest
import simple_icd_10_cm as icd

from extractor.coding import icd10
from extractor.coding.icd10 import ConceptRow, IcdMapRow, IcdTables, code_note, is_billable
from extractor.errors import CodeSetError, PatternFileError
from extractor.patterns import load_family, patterns_dir, read_rows
from extractor.schemas import DiagnosisFact, Evidence, NoteFacts, ProcedureFact, TargetRule

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad_patterns"
MAP_ROWS = read_rows(patterns_dir() / icd10.MAP_FILE, IcdMapRow)
CONCEPT_ROWS = read_rows(patterns_dir() / icd10.CONCEPTS_FILE, ConceptRow)


@pytest.fixture(scope="module")
def t() -> IcdTables:
    return icd10.load_tables()


# ------------------------------------------------------------------ helpers


class Note:
    """A hand-written note and facts whose evidence spans really point into it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.dx: list[DiagnosisFact] = []
        self.procs: list[ProcedureFact] = []

    def ev(self, phrase: str) -> Evidence:
        start = self.text.index(phrase)
        return Evidence(start=start, end=start + len(phrase), text=phrase)

    def add_dx(self, phrase: str, concept: str, **kw) -> int:
        self.dx.append(
            DiagnosisFact(concept=concept, text=phrase, evidence=[self.ev(phrase)], **kw)
        )
        return len(self.dx) - 1

    def add_proc(self, phrase: str, kind: str, dx: list[int], **kw) -> int:
        self.procs.append(ProcedureFact(kind=kind, diagnoses=dx, evidence=[self.ev(phrase)], **kw))
        return len(self.procs) - 1

    def code(self) -> icd10.IcdOutcome:
        facts = NoteFacts(text_length=len(self.text), diagnoses=self.dx, procedures=self.procs)
        return code_note(facts)


def codes(out: icd10.IcdOutcome) -> list[str]:
    return [line.code for line in out.lines]


# ------------------------------------------------------------------ the tables


@pytest.mark.parametrize(("line", "row"), MAP_ROWS, ids=[f"line{n}" for n, _ in MAP_ROWS])
def test_every_map_row_is_a_billable_leaf(line: int, row: IcdMapRow) -> None:
    assert is_billable(row.code), f"{icd10.MAP_FILE}:{line} {row.code}"


@pytest.mark.parametrize(("line", "row"), CONCEPT_ROWS, ids=[r.id for _, r in CONCEPT_ROWS])
def test_every_concept_resolves_without_a_site_and_its_z_codes_are_billable(
    t: IcdTables, line: int, row: ConceptRow
) -> None:
    assert is_billable(t.resolve(row.id).code)
    for z in (row.history_code, row.family_history_code):
        assert z is None or (is_billable(z) and z.startswith("Z"))


def test_vocabulary_and_concept_table_agree(t: IcdTables) -> None:
    rules = list(load_family("entities/diagnoses.jsonl", TargetRule))
    used = {r.attrs["concept"] for r in rules}
    assert all(r.category == "DIAGNOSIS" and r.id.startswith("dx.") for r in rules)
    assert used - set(t.concepts) == set(), "vocabulary names a concept with no code row"
    assert set(t.concepts) - used == set(), "a concept no note wording can reach"


def test_family_history_only_for_skin_cancer(t: IcdTables) -> None:
    with_family = {c.id for c in t.concepts.values() if c.family_history_code}
    assert {"bcc", "scc", "melanoma", "merkel"} <= with_family
    assert all(t.concepts[c].excision_family == "malignant" for c in with_family)
    assert t.concepts["nevus"].family_history_code is None


def test_description_comes_from_the_code_set(t: IcdTables) -> None:
    res = t.resolve("scc", "scalp")
    assert (res.code, res.description) == ("C44.42", icd.get_description("C44.42"))


# ------------------------------------------------------------------ resolve: regions


@pytest.mark.parametrize(
    ("concept", "site", "code"),
    [
        ("bcc", "lip", "C44.01"),
        ("bcc", "nose", "C44.311"),
        ("bcc", "cheek", "C44.319"),
        ("bcc", "face", "C44.310"),
        ("bcc", "scalp", "C44.41"),
        ("bcc", "neck", "C44.41"),
        ("bcc", "back", "C44.519"),
        ("bcc", "perianal", "C44.510"),
        ("bcc", "breast", "C44.511"),
        ("scc", "lip", "C44.02"),
        ("scc", "nose", "C44.321"),
        ("scc", "temple", "C44.329"),
        ("scc", "chest", "C44.529"),
        ("melanoma", "nose", "C43.31"),
        ("melanoma", "forehead", "C43.39"),
        ("melanoma", "back", "C43.59"),
        ("melanoma", "breast", "C43.52"),
        ("melanoma_in_situ", "nose", "D03.39"),
        ("melanoma_in_situ", "scalp", "D03.4"),
        ("scc_in_situ", "abdomen", "D04.5"),
        ("scc_in_situ", "nose", "D04.39"),
        ("merkel", "cheek", "C4A.39"),
        ("nevus", "back", "D22.5"),
        ("nevus", "lip", "D22.0"),
        ("dermatofibroma", "nose", "D23.39"),
        ("lipoma", "back", "D17.1"),
        ("lipoma", "neck", "D17.0"),
        ("abscess", "buttock", "L02.31"),
        ("abscess", "neck", "L02.11"),
        ("abscess", "back", "L02.212"),
        ("abscess", "perianal", "K61.0"),
        ("furuncle", "cheek", "L02.02"),
        ("carbuncle", "scalp", "L02.831"),
        ("cellulitis", "flank", "L03.31A"),
        ("hyperhidrosis", "axilla", "L74.510"),
        ("ak", "nose", "L57.0"),
    ],
)
def test_region_codes(t: IcdTables, concept: str, site: str, code: str) -> None:
    res = t.resolve(concept, site)
    assert res.code == code
    assert not res.site_defaulted


def test_c44_311_is_the_nose_not_the_eyelid(t: IcdTables) -> None:
    assert t.resolve("bcc", "nose").code == "C44.311"
    assert t.resolve("bcc", "eyelid", "right", "upper").code != "C44.311"
    assert "nose" in t.resolve("bcc", "nose").description


@pytest.mark.parametrize(
    ("concept", "code"),
    [
        ("bcc", "C44.91"),
        ("scc", "C44.92"),
        ("melanoma", "C43.9"),
        ("nevus", "D22.9"),
        ("scc_in_situ", "D04.9"),
        ("melanoma_in_situ", "D03.9"),
        ("merkel", "C4A.9"),
        ("lipoma", "D17.30"),
        ("abscess", "L02.91"),
    ],
)
def test_unknown_site_takes_the_unspecified_site_code(
    t: IcdTables, concept: str, code: str
) -> None:
    res = t.resolve(concept)
    assert (res.code, res.site_defaulted) == (code, True)


def test_site_free_concepts_are_never_site_defaulted(t: IcdTables) -> None:
    assert t.resolve("ak") == t.resolve("ak", "forearm", "left")
    assert not t.resolve("ak").site_defaulted


# ------------------------------------------------------------------ resolve: laterality


@pytest.mark.parametrize(
    ("concept", "site", "right", "left", "unspecified"),
    [
        ("bcc", "forearm", "C44.612", "C44.619", "C44.611"),
        ("bcc", "thigh", "C44.712", "C44.719", "C44.711"),
        ("bcc", "ear", "C44.212", "C44.219", "C44.211"),
        ("scc", "hand", "C44.622", "C44.629", "C44.621"),
        ("scc", "ear", "C44.222", "C44.229", "C44.221"),
        ("scc", "shin", "C44.722", "C44.729", "C44.721"),
        ("melanoma", "shoulder", "C43.61", "C43.62", "C43.60"),
        ("melanoma", "ear", "C43.21", "C43.22", "C43.20"),
        ("melanoma_in_situ", "calf", "D03.71", "D03.72", "D03.70"),
        ("scc_in_situ", "ear", "D04.21", "D04.22", "D04.20"),
        ("merkel", "knee", "C4A.71", "C4A.72", "C4A.70"),
        ("nevus", "upper_arm", "D22.61", "D22.62", "D22.60"),
        ("dermatofibroma", "leg", "D23.71", "D23.72", "D23.70"),
        ("lipoma", "forearm", "D17.21", "D17.22", "D17.20"),
        ("lipoma", "thigh", "D17.23", "D17.24", "D17.20"),
        ("abscess", "axilla", "L02.411", "L02.412", "L02.419"),
        ("abscess", "hand", "L02.511", "L02.512", "L02.519"),
        ("abscess", "toe", "L02.611", "L02.612", "L02.619"),
        ("abscess", "ear", "H60.01", "H60.02", "H60.00"),
        ("cellulitis", "finger", "L03.011", "L03.012", "L03.019"),
        ("paronychia", "toe", "L03.031", "L03.032", "L03.039"),
    ],
)
def test_laterality(
    t: IcdTables, concept: str, site: str, right: str, left: str, unspecified: str
) -> None:
    assert t.resolve(concept, site, "right").code == right
    assert t.resolve(concept, site, "left").code == left
    unknown = t.resolve(concept, site)
    assert (unknown.code, unknown.side_defaulted) == (unspecified, True)
    assert not t.resolve(concept, site, "left").side_defaulted


def test_side_is_not_missing_where_the_code_has_no_side(t: IcdTables) -> None:
    assert not t.resolve("nevus", "back").side_defaulted
    assert not t.resolve("ak", "forearm").side_defaulted
    assert not t.resolve("bcc", "nose").side_defaulted


@pytest.mark.parametrize(
    ("concept", "ru", "rl", "lu", "ll", "unspecified"),
    [
        ("bcc", "C44.1121", "C44.1122", "C44.1191", "C44.1192", "C44.111"),
        ("scc", "C44.1221", "C44.1222", "C44.1291", "C44.1292", "C44.121"),
        ("sebaceous_carcinoma", "C44.1321", "C44.1322", "C44.1391", "C44.1392", "C44.131"),
        ("melanoma", "C43.111", "C43.112", "C43.121", "C43.122", "C43.10"),
        ("melanoma_in_situ", "D03.111", "D03.112", "D03.121", "D03.122", "D03.10"),
        ("scc_in_situ", "D04.111", "D04.112", "D04.121", "D04.122", "D04.10"),
        ("merkel", "C4A.111", "C4A.112", "C4A.121", "C4A.122", "C4A.10"),
        ("nevus", "D22.111", "D22.112", "D22.121", "D22.122", "D22.10"),
        ("benign_neoplasm", "D23.111", "D23.112", "D23.121", "D23.122", "D23.10"),
    ],
)
def test_eyelid_upper_lower_both_sides(
    t: IcdTables, concept: str, ru: str, rl: str, lu: str, ll: str, unspecified: str
) -> None:
    assert t.resolve(concept, "eyelid", "right", "upper").code == ru
    assert t.resolve(concept, "eyelid", "right", "lower").code == rl
    assert t.resolve(concept, "eyelid", "left", "upper").code == lu
    assert t.resolve(concept, "eyelid", "left", "lower").code == ll
    for lat, lid in [(None, None), ("right", None), (None, "upper")]:
        res = t.resolve(concept, "eyelid", lat, lid)
        assert (res.code, res.side_defaulted) == (unspecified, True)


def test_eyelid_abscess_keeps_the_side_when_the_lid_is_unknown(t: IcdTables) -> None:
    res = t.resolve("abscess", "eyelid", "left")
    assert (res.code, res.side_defaulted) == ("H00.036", True)


def test_bilateral_gives_one_code_per_side_or_the_bilateral_code(t: IcdTables) -> None:
    assert [r.code for r in t.resolve_sides("nevus", "forearm", "bilateral")] == [
        "D22.61",
        "D22.62",
    ]
    assert [r.code for r in t.resolve_sides("lump", "thigh", "bilateral")] == ["R22.43"]
    assert [r.code for r in t.resolve_sides("ak", "forearm", "bilateral")] == ["L57.0"]
    with pytest.raises(ValueError, match="resolve_sides"):
        t.resolve("nevus", "forearm", "bilateral")


# ------------------------------------------------------------------ bad tables


def test_non_billable_code_fails_with_file_and_line() -> None:
    with pytest.raises(CodeSetError, match=r"icd10_map\.jsonl:3: 'C44\.4'"):
        IcdTables(BAD / "icd10_noncode")


def test_bad_history_code_fails_with_file_and_line() -> None:
    with pytest.raises(CodeSetError, match=r"diagnoses\.jsonl:2: 'Z85\.82'"):
        IcdTables(BAD / "icd10_bad_history")


def test_unknown_site_fails_with_file_and_line() -> None:
    with pytest.raises(PatternFileError, match=r"icd10_map\.jsonl:2.*nostril_tip") as exc:
        IcdTables(BAD / "icd10_unknown_site")
    assert exc.value.line == 2


# ------------------------------------------------------------------ code_note


def test_active_history_and_family_each_take_their_own_code() -> None:
    n = Note("Hx melanoma 2015. Mother had BCC. A/P: BCC L upper back.")
    n.add_dx("melanoma", "melanoma", status="history", source="history")
    n.add_dx("Mother had BCC", "bcc", status="family", source="history")
    n.add_dx("BCC L upper back", "bcc", source="assessment", site="back", laterality="left")
    assert codes(n.code()) == ["C44.519", "Z85.820", "Z80.8"]


@pytest.mark.parametrize(
    ("concept", "z"),
    [
        ("bcc", "Z85.828"),
        ("scc", "Z85.828"),
        ("melanoma", "Z85.820"),
        ("merkel", "Z85.821"),
        ("melanoma_in_situ", "Z86.006"),
        ("scc_in_situ", "Z86.007"),
        ("atypical_nevus", "Z86.018"),
    ],
)
def test_history_codes(concept: str, z: str) -> None:
    n = Note("PMH: hx of skin lesion, treated.")
    n.add_dx("skin lesion", concept, status="history", source="history")
    assert codes(n.code()) == [z]


def test_family_history_of_a_benign_lesion_is_not_coded() -> None:
    n = Note("Mother has many moles.")
    n.add_dx("moles", "nevus", status="family", source="history")
    assert codes(n.code()) == []


def test_history_tumour_treated_today_is_current_disease() -> None:
    n = Note("Hx BCC R nasal ala, here for Mohs.")
    dx = n.add_dx("BCC R nasal ala", "bcc", status="history", source="history", site="nose")
    n.add_proc("Mohs", "mohs", [dx], site="nose")
    out = n.code()
    assert codes(out) == ["C44.311"]
    assert out.pointers == {0: ["C44.311"]}


@pytest.mark.parametrize("status", ["negated", "hypothetical"])
def test_negated_and_hypothetical_produce_nothing(status: str) -> None:
    n = Note("No AKs today. Will bx if the nevus grows.")
    n.add_dx("AKs", "ak", status=status, source="assessment")
    assert n.code().lines == []


def test_uncertain_lesion_biopsied_without_pathology_is_d49_2() -> None:
    n = Note("Pearly papule L nasal tip, r/o BCC. Shave bx performed.")
    pap = n.add_dx("Pearly papule", "lesion", source="assessment", site="nose")
    bcc = n.add_dx("r/o BCC", "bcc", uncertain=True, source="assessment", site="nose")
    n.add_proc("Shave bx", "biopsy", [pap, bcc], method="tangential", site="nose")
    out = n.code()
    assert codes(out) == ["D49.2"]
    assert out.pointers == {0: ["D49.2"]}
    assert out.unspecified == []  # biopsies exist to make the diagnosis


def test_uncertain_diagnosis_without_procedure_is_not_coded() -> None:
    n = Note("A/P: pink scaly papule R cheek, possible BCC - monitor.")
    n.add_dx("possible BCC", "bcc", uncertain=True, source="assessment", site="cheek")
    assert codes(n.code()) == []


def test_pathology_overrides_the_clinical_impression() -> None:
    n = Note("Lesion #1 L forearm, clinically SK vs SCC. Path: SCC, well differentiated.")
    sk = n.add_dx(
        "SK",
        "seborrheic_keratosis",
        uncertain=True,
        source="assessment",
        site="forearm",
        laterality="left",
        lesion_no=1,
    )
    path = n.add_dx(
        "SCC, well differentiated",
        "scc",
        source="pathology",
        lesion_no=1,
        site="forearm",
        laterality="left",
    )
    n.add_proc(
        "Lesion #1",
        "biopsy",
        [sk, path],
        method="tangential",
        site="forearm",
        laterality="left",
        lesion_no=1,
    )
    out = n.code()
    assert codes(out) == ["C44.629"]
    assert out.pointers == {0: ["C44.629"]}


def test_pathology_for_the_same_lesion_number_overrides_an_unlinked_impression() -> None:
    n = Note("A/P #2 ISK R chest. Path #2: basal cell carcinoma, nodular.")
    n.add_dx("ISK", "irritated_sk", source="assessment", site="chest", lesion_no=2)
    n.add_dx("basal cell carcinoma, nodular", "bcc", source="pathology", site="chest", lesion_no=2)
    assert codes(n.code()) == ["C44.519"]


def test_bx_proven_diagnosis_counts_as_pathology() -> None:
    n = Note("Excision of bx-proven BCC L shoulder.")
    bcc = n.add_dx("bx-proven BCC", "bcc", source="procedure", site="shoulder", laterality="left")
    n.add_proc("Excision", "excision", [bcc], site="shoulder", laterality="left")
    out = n.code()
    assert out.pointers == {0: ["C44.619"]}


def test_biopsy_with_no_diagnosis_is_d49_2_and_other_procedures_l98_9() -> None:
    n = Note("Punch bx L calf. Cryo x2 R hand.")
    n.add_proc("Punch bx", "biopsy", [], method="punch", site="calf", laterality="left")
    n.add_proc("Cryo x2", "destruction", [], site="hand", laterality="right", count=2)
    out = n.code()
    assert out.pointers == {0: ["D49.2"], 1: ["L98.9"]}
    assert out.unspecified == [1]


def test_catchall_on_a_destruction_is_unspecified() -> None:
    n = Note("LN2 to 3 growths on the neck.")
    g = n.add_dx("growths", "growth", source="procedure", site="neck")
    n.add_proc("LN2", "destruction", [g], site="neck", count=3)
    out = n.code()
    assert out.pointers == {0: ["D49.2"]}
    assert out.unspecified == [0]


def test_specific_diagnosis_on_a_destruction_is_not_unspecified() -> None:
    n = Note("LN2 to 3 irritated SKs on the neck.")
    g = n.add_dx("irritated SKs", "irritated_sk", source="procedure", site="neck")
    n.add_proc("LN2", "destruction", [g], site="neck", count=3)
    out = n.code()
    assert (out.pointers, out.unspecified, codes(out)) == ({0: ["L82.0"]}, [], ["L82.0"])


def test_definite_cyst_excised_keeps_its_diagnosis() -> None:
    n = Note("Epidermoid cyst upper back excised, sent to path.")
    c = n.add_dx("Epidermoid cyst", "epidermoid_cyst", source="procedure", site="back")
    n.add_proc("excised", "excision", [c], site="back")
    assert codes(n.code()) == ["L72.0"]


def test_missing_side_reports_laterality_evidence() -> None:
    n = Note("Shave bx of BCC on the upper eyelid.")
    b = n.add_dx("BCC", "bcc", source="pathology", site="eyelid", eyelid="upper")
    n.add_proc("Shave bx", "biopsy", [b], site="eyelid", eyelid="upper")
    out = n.code()
    assert codes(out) == ["C44.111"]
    assert [e.text for e in out.laterality_missing] == ["BCC"]


def test_aks_on_forearms_raise_no_laterality_question() -> None:
    n = Note("Cryo to AK x5 forearms.")
    a = n.add_dx("AK", "ak", source="procedure", site="forearm")
    n.add_proc("Cryo", "destruction", [a], site="forearm", count=5)
    out = n.code()
    assert (codes(out), out.laterality_missing) == (["L57.0"], [])


def test_bilateral_nevi_give_both_side_codes() -> None:
    n = Note("A/P: benign nevi both arms, reassured.")
    n.add_dx("benign nevi", "nevus", source="assessment", site="upper_arm", laterality="bilateral")
    assert codes(n.code()) == ["D22.61", "D22.62"]


def test_exam_finding_is_coded_only_when_the_assessment_names_it() -> None:
    n = Note("Exam: SK L temple, cherry angioma chest. A/P: SKs, benign, reassured.")
    n.add_dx("SK", "seborrheic_keratosis", source="exam", site="temple")
    n.add_dx("cherry angioma", "cherry_angioma", source="exam", site="chest")
    n.add_dx("SKs", "seborrheic_keratosis", source="assessment")
    out = n.code()
    assert codes(out) == ["L82.1"]
    assert len(out.lines[0].evidence) == 2


def test_site_specific_mention_absorbs_the_unspecified_one() -> None:
    n = Note("Exam: nevus R forearm. A/P: nevi, benign.")
    n.add_dx("nevus R forearm", "nevus", source="exam", site="forearm", laterality="right")
    n.add_dx("nevi", "nevus", source="assessment")
    out = n.code()
    assert codes(out) == ["D22.61"]
    assert [e.text for e in out.lines[0].evidence] == ["nevus R forearm", "nevi"]


def test_past_history_section_condition_not_addressed_is_not_coded() -> None:
    n = Note("PMH: psoriasis. A/P: AK R temple, LN2.")
    n.add_dx("psoriasis", "psoriasis", source="history")
    n.add_dx("AK", "ak", source="assessment", site="temple", laterality="right")
    assert codes(n.code()) == ["L57.0"]


def test_unlinked_catchall_is_dropped_when_its_lesion_was_biopsied() -> None:
    n = Note("A/P: lesion R cheek, r/o BCC. Shave bx of R cheek lesion.")
    n.add_dx("lesion R cheek", "lesion", source="assessment", site="cheek", laterality="right")
    d = n.add_dx("R cheek lesion", "lesion", source="procedure", site="cheek", laterality="right")
    u = n.add_dx("r/o BCC", "bcc", uncertain=True, source="assessment", site="cheek")
    n.add_proc("Shave bx", "biopsy", [d, u], site="cheek", laterality="right")
    assert codes(n.code()) == ["D49.2"]


def test_repair_points_to_its_excisions_codes() -> None:
    n = Note("Excision of bx-proven SCC R forearm; intermediate repair 3 cm.")
    s = n.add_dx("bx-proven SCC", "scc", source="procedure", site="forearm", laterality="right")
    n.add_proc("Excision", "excision", [s], site="forearm", laterality="right", lesion_no=1)
    n.add_proc("intermediate repair", "repair", [], site="forearm", laterality="right", lesion_no=1)
    out = n.code()
    assert out.pointers == {0: ["C44.622"], 1: ["C44.622"]}
    assert codes(out) == ["C44.622"]


def test_planned_procedure_gets_no_pointers() -> None:
    n = Note("AK L temple; schedule PDT.")
    a = n.add_dx("AK", "ak", source="assessment", site="temple")
    n.add_proc("PDT", "pdt", [a], status="planned")
    out = n.code()
    assert (codes(out), out.pointers) == (["L57.0"], {})


def test_lines_carry_confidence_and_real_evidence() -> None:
    n = Note("A/P: psoriasis vulgaris, elbows.")
    n.add_dx("psoriasis vulgaris", "plaque_psoriasis", source="assessment")
    (line,) = n.code().lines
    assert line.code == "L40.0" and 0.0 < line.confidence <= 1.0
    span = line.evidence[0]
    assert n.text[span.start : span.end] == span.text
