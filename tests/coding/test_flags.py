"""Documentation flags (CONTRACT.md ids, CODING_CONVENTIONS §15): each flag raised by its
§15 positive examples and not by the negative ones (negated, historical and planned
mentions included), and every query written the AHIMA/ACDIS way."""

from __future__ import annotations

import json
import re

import pytest

from extractor.coding import dermoscopy, flags, icd10
from extractor.engine import code_text
from extractor.errors import PatternFileError
from extractor.patterns import load_family
from extractor.schemas import CptOutcome

CONTRACT_IDS = {
    "DERMOSCOPY_WITHOUT_FINDINGS",
    "DERMOSCOPY_FINDINGS_NOT_LINKED",
    "BIOPSY_TECHNIQUE_MISSING",
    "SIZE_MISSING",
    "MARGINS_MISSING",
    "SITE_MISSING",
    "LATERALITY_MISSING",
    "LESION_COUNT_MISSING",
    "DIAGNOSIS_UNSPECIFIED",
    "HISTOLOGY_PENDING",
    "COSMETIC_INDICATION",
}

POSITIVE = [
    (
        "DERMOSCOPY_WITHOUT_FINDINGS",
        "Dermoscopy performed on R scapular mole. Will recheck in 3 months.",
    ),
    (
        "DERMOSCOPY_WITHOUT_FINDINGS",
        "Exam: 4 mm brown papule L shoulder. Dermatoscopic exam done — benign.",
    ),
    (
        "DERMOSCOPY_FINDINGS_NOT_LINKED",
        "Exam: 6 mm papule L flank.\nDermoscopy L flank: peripheral globules, "
        "structureless center.\n\nA/P: Seborrheic keratosis back - benign.",
    ),
    (
        "DERMOSCOPY_FINDINGS_NOT_LINKED",
        "Exam:\n#1 L cheek: 5 mm scaly papule.\n#3 Nevus R thigh - dermoscopy "
        "shows a few irregular dots.\n\nA/P:\n#1 AK L cheek - LN2 x1.",
    ),
    ("BIOPSY_TECHNIQUE_MISSING", "Biopsy of crusted nodule R ear, r/o SCC; specimen to lab."),
    ("SIZE_MISSING", "Excised cyst from R flank, layered closure."),
    ("SIZE_MISSING", "ED&C x3 of bx-proven BCC L shoulder."),
    ("MARGINS_MISSING", "Excised 1.1 cm dermatofibroma L shin, simple closure."),
    ("SITE_MISSING", "Cryotherapy to actinic keratoses x3."),
    ("SITE_MISSING", "Punch bx of firm nodule, r/o DFSP."),
    ("LATERALITY_MISSING", "Shave bx of translucent papule on the upper eyelid."),
    ("LATERALITY_MISSING", "Avulsion of the thumbnail for painful onycholysis."),
    ("LESION_COUNT_MISSING", "Cryo to several AKs on the scalp."),
    ("LESION_COUNT_MISSING", "Warts on hands treated with LN2."),
    ("LESION_COUNT_MISMATCH", "Cryo to 6 AKs: L temple x2, R cheek x2, nose x1."),
    ("DIAGNOSIS_UNSPECIFIED", "LN2 to 3 growths on the neck."),
    ("DIAGNOSIS_UNSPECIFIED", "Kenalog 10 mg/mL 0.3 mL into bump on the chest."),
    (
        "HISTOLOGY_PENDING",
        "Excision of 0.9 cm pigmented papule L calf, 3 mm margins, r/o melanoma; path to follow.",
    ),
    ("HISTOLOGY_PENDING", "Excised atypical lesion R chest 0.6 cm with 2 mm margins, await path."),
    (
        "COSMETIC_INDICATION",
        "Cosmetic removal of cherry angiomas on chest, pt preference, self-pay. "
        "Shave removal of 3 angiomas, 2 mm each.",
    ),
    (
        "COSMETIC_INDICATION",
        "Pt requests removal of benign nevus on chin for appearance; no "
        "symptoms. Shave removal of 4 mm nevus R chin.",
    ),
]

NEGATIVE = [
    (
        "DERMOSCOPY_WITHOUT_FINDINGS",
        "Exam: 5 mm nevus R flank. Dermoscopy: regular reticular network, no "
        "dots or globules; reassured.",
    ),
    ("DERMOSCOPY_WITHOUT_FINDINGS", "Exam: 5 mm nevus R flank. Dermoscopy not performed."),
    (
        "DERMOSCOPY_WITHOUT_FINDINGS",
        "Exam: 5 mm nevus R flank, benign appearing. Will do dermoscopy at next visit.",
    ),
    (
        "DERMOSCOPY_FINDINGS_NOT_LINKED",
        "Exam: 6 mm papule L flank.\nDermoscopy L flank: peripheral globules; "
        "benign growing pattern, photo and recheck in 6 months.",
    ),
    (
        "DERMOSCOPY_FINDINGS_NOT_LINKED",
        "Exam:\n#1 R upper back: 6 mm macule. Dermoscopy: atypical "
        "network.\n\nA/P:\n#1 r/o dysplastic nevus - tangential shave bx R "
        "upper back.",
    ),
    ("BIOPSY_TECHNIQUE_MISSING", "3 mm punch bx of R shin plaque."),
    (
        "BIOPSY_TECHNIQUE_MISSING",
        "Crusted nodule R ear, r/o SCC. No biopsy today; will biopsy at next visit if it persists.",
    ),
    (
        "BIOPSY_TECHNIQUE_MISSING",
        "Hx biopsy of R ear 2019, benign. Today: AK x3 scalp treated with LN2.",
    ),
    ("SIZE_MISSING", "Shave removal of 0.7 cm irritated SK L neck."),
    ("SIZE_MISSING", "Cyst R flank. Plan: schedule excision next month."),
    ("MARGINS_MISSING", "BCC L back 1.0 cm, excised with 4 mm margins."),
    ("SITE_MISSING", "Cryotherapy to actinic keratoses x3, L temple."),
    ("SITE_MISSING", "Actinic keratoses. LN2 declined today, will treat next visit."),
    ("LATERALITY_MISSING", "Shave bx of translucent papule on the R upper eyelid."),
    ("LESION_COUNT_MISSING", "Cryo to AK x7 scalp."),
    ("LESION_COUNT_MISMATCH", "Cryo to 5 AKs: L temple x2, R cheek x2, nose x1."),
    ("DIAGNOSIS_UNSPECIFIED", "LN2 to 3 irritated SKs on the neck."),
    ("DIAGNOSIS_UNSPECIFIED", "Tangential shave bx of 5 mm lesion R forearm."),
    ("HISTOLOGY_PENDING", "Excision of bx-proven BCC L back, 1.2 cm, 4 mm margins."),
    ("HISTOLOGY_PENDING", "Excised 1.4 cm epidermoid cyst R flank with 2 mm margins, path sent."),
    (
        "COSMETIC_INDICATION",
        "SK L neck irritated by collar, bleeding — shave removal of 0.6 cm SK.",
    ),
    (
        "COSMETIC_INDICATION",
        "Seborrheic keratoses back - benign, reassured. Discussed cosmetic options; none done.",
    ),
]

PAYMENT_WORDS = re.compile(
    r"pay|cash|insur|reimburs|bill|charge|\bcodes?\b|\bcpt\b|\bicd\b|modifier|claim|\b\d{5}\b", re.I
)


@pytest.mark.parametrize(
    ("flag_id", "text"), POSITIVE, ids=[f"{f}+{i}" for i, (f, _) in enumerate(POSITIVE)]
)
def test_flag_raised(flag_id: str, text: str) -> None:
    result = code_text(text)
    raised = [f for f in result.flags if f.id == flag_id]
    assert raised, f"{flag_id} not raised; got {[f.id for f in result.flags]}"
    for f in raised:
        assert f.evidence
        for ev in f.evidence:
            assert text[ev.start : ev.end] == ev.text


@pytest.mark.parametrize(
    ("flag_id", "text"), NEGATIVE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(NEGATIVE)]
)
def test_flag_not_raised(flag_id: str, text: str) -> None:
    assert flag_id not in {f.id for f in code_text(text).flags}


@pytest.mark.parametrize(
    ("flag_id", "text"), POSITIVE, ids=[f"{f}+{i}" for i, (f, _) in enumerate(POSITIVE)]
)
def test_query_follows_practice_brief(flag_id: str, text: str) -> None:
    """Quotes the note, offers 'clinically undetermined', never mentions payment or codes."""
    for f in code_text(text).flags:
        assert f.query and f.message
        assert "clinically undetermined" in f.query
        assert not PAYMENT_WORDS.search(f.query), f.query
        norm = " ".join(text.split())
        for q in re.findall(r"“([^”]+)”", f.query):
            q = q.removesuffix(" …")
            for part in q.split(", "):
                assert part in norm, (part, norm)
        assert "{" not in f.message + f.query


def test_choice_queries_offer_other() -> None:
    """A query that lists choices ends them with "other, or clinically undetermined"."""
    for row in flags.flag_rows():
        if "or clinically undetermined" in row.query and "indicate" not in row.query:
            assert "other, or clinically undetermined" in row.query, row.id


def test_table_covers_contract_ids() -> None:
    ids = {r.id for r in flags.flag_rows()}
    assert CONTRACT_IDS | {"LESION_COUNT_MISMATCH"} <= ids
    for row in flags.flag_rows():
        assert row.trigger in flags.TRIGGERS
        assert not PAYMENT_WORDS.search(row.query), row.id


def test_bad_flag_row_names_its_line(tmp_path) -> None:
    d = tmp_path / "coding"
    d.mkdir()
    good = json.dumps(
        {"id": "X", "severity": "info", "trigger": "cosmetic", "message": "m", "query": "q"}
    )
    bad = json.dumps(
        {"id": "Y", "severity": "fatal", "trigger": "cosmetic", "message": "m", "query": "q"}
    )
    (d / "flags.jsonl").write_text(good + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(PatternFileError) as exc:
        load_family("coding/flags.jsonl", flags.FlagRow, base=tmp_path)
    assert exc.value.line == 2


def test_without_cpt_engine_output_facts_are_used(facts_of) -> None:
    """While the CPT engine gives no defaults, the same gaps come from the facts."""
    text = "Biopsy of crusted nodule R ear, r/o SCC; specimen to lab."
    facts = facts_of(text)
    out = flags.evaluate(
        text, facts, icd10.code_note(facts), CptOutcome(), dermoscopy.assess(facts)
    )
    assert "BIOPSY_TECHNIQUE_MISSING" in {f.id for f in out}


def test_quote_cuts_payment_words() -> None:
    text = "Cosmetic removal of cherry angiomas on chest, pt preference, self-pay."
    from extractor.schemas import Evidence

    q = flags.quote(text, Evidence(start=0, end=8, text="Cosmetic"))
    assert "self-pay" not in q and "Cosmetic removal" in q
