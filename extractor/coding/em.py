"""Office E/M level by medical decision making (CODING_CONVENTIONS §10), incl. modifier 25.

MDM has three elements (problems, data, risk); the level is the one that two of the
three meet or exceed. On a procedure day only problems *other than the indications of
today's procedures* count, and the project's convention asks that they reach at least
low MDM on their own before an E/M with 25 is suggested.

Levels are 1 straightforward, 2 low, 3 moderate, 4 high. Problem levels come from the
diagnosis class (``diagnoses.jsonl``) and note cues; data and risk from the cue rows
``em_*`` of ``patterns/entities/cues.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from extractor.coding import icd10
from extractor.schemas import Considered, CptLine, DiagnosisFact, Evidence, NoteFacts

LEVEL_NAMES = {1: "straightforward", 2: "low", 3: "moderate", 4: "high"}
NEW = {1: "99202", 2: "99203", 3: "99204", 4: "99205"}
ESTABLISHED = {1: "99212", 2: "99213", 3: "99214", 4: "99215"}
COUNTED_SOURCES = {"assessment", "pathology", "procedure"}
CHRONIC_CLASSES = {"inflammatory", "nail"}
ACUTE_CLASSES = {"infection"}
MINOR_CLASSES = {
    "benign_lesion",
    "cyst",
    "tag",
    "wart",
    "molluscum",
    "vascular",
    "symptom",
    "catchall",
    "premalignant",
}
UNCERTAIN_CLASSES = {"malignant", "in_situ"}


@dataclass
class Mdm:
    problems: int
    data: int
    risk: int
    why: list[str]

    @property
    def level(self) -> int:
        return sorted((self.problems, self.data, self.risk))[1]


def _cue(facts: NoteFacts, name: str) -> list[Evidence]:
    return facts.cues.get(name, [])


def _problem_level(facts: NoteFacts, dxs: list[DiagnosisFact], why: list[str]) -> int:
    if not dxs:
        return 0
    classes: dict[str, str] = {}
    for d in dxs:
        classes.setdefault(d.concept, icd10.concept(d.concept).cpt_class)
    # "spreading", "flare", "not controlled" describe the problem they stand next to,
    # not every problem of the note (a spreading molluscum does not make eczema worse)
    starts = [e.start for d in dxs for e in d.evidence[:1]]

    def near(name: str) -> bool:
        return any(abs(c.start - s) < 120 for c in _cue(facts, name) for s in starts)

    worse = near("em_worsening")
    severe = near("em_severe")
    chronic = [c for c, k in classes.items() if k in CHRONIC_CLASSES]
    acute = [c for c, k in classes.items() if k in ACUTE_CLASSES]
    unsure = [
        d.concept
        for d in dxs
        if icd10.concept(d.concept).cpt_class in UNCERTAIN_CLASSES and d.uncertain
    ]
    if chronic and severe:
        why.append(f"chronic illness with severe exacerbation ({', '.join(chronic)})")
        return 4
    if chronic and worse or len(chronic) >= 2 or unsure:
        why.append(
            "chronic illness not at goal / 2+ chronic / undiagnosed new problem: "
            + ", ".join(chronic or unsure)
        )
        return 3
    if chronic or acute or len(classes) >= 2:
        why.append(f"problems: {', '.join(classes)}")
        return 2
    why.append(f"one minor problem: {', '.join(classes)}")
    return 1


def _data_level(facts: NoteFacts, why: list[str]) -> int:
    derm = facts.dermoscopy
    # dermoscopy documentation feeds the AMA data categories (CODING_CONVENTIONS §9):
    # stored images compared = one category-1 item; staff-captured images read by the
    # physician = independent interpretation; images discussed = discussion
    stored = bool(derm.findings) and bool(derm.image_cues.get("1"))
    cat1 = (
        len(_cue(facts, "em_labs_ordered")[:2])
        + min(1, len(_cue(facts, "em_external_notes")))
        + int(stored)
    )
    historian = bool(_cue(facts, "em_historian"))
    discussed = bool(_cue(facts, "em_discussed")) or (
        bool(derm.findings) and bool(derm.image_cues.get("3"))
    )
    interp = bool(derm.findings) and bool(derm.image_cues.get("2"))
    cats = sum((cat1 >= 3 or (cat1 + historian) >= 3, interp, discussed))
    if cats >= 2:
        why.append("extensive data")
        return 4
    if cats >= 1 or cat1 >= 3:
        why.append("moderate data")
        return 3
    if cat1 >= 2 or historian:
        why.append("limited data")
        return 2
    return 1


def _risk_level(facts: NoteFacts, why: list[str]) -> int:
    severe_biologic = _cue(facts, "em_severe") and _cue(facts, "em_rx_biologic")
    if _cue(facts, "em_rx_monitoring") or severe_biologic:
        why.append("drug therapy needing intensive toxicity monitoring")
        return 4
    if _cue(facts, "em_rx_topical") or _cue(facts, "em_rx_oral") or _cue(facts, "em_rx_biologic"):
        why.append("prescription drug management")
        return 3
    if _cue(facts, "em_otc"):
        why.append("OTC measures")
        return 2
    return 1


@lru_cache(maxsize=1)
def _fit() -> dict[str, set[str]]:
    from extractor.patterns import cached_family
    from extractor.schemas import ProcedureDxFit

    return {
        r.kind: set(r.classes)
        for r in cached_family("coding/procedure_dx_fit.jsonl", ProcedureDxFit)
    }


def _could_be_indication(d: DiagnosisFact, done: list) -> bool:
    """Whether a diagnosis is of a kind today's procedures treat (AK for cryo, BCC for ED&C)."""
    cls = icd10.concept(d.concept).cpt_class
    return any(cls in _fit().get(p.kind, {cls}) for p in done)


def _separate_problems(facts: NoteFacts, procedure_dx: set[int]) -> list[DiagnosisFact]:
    """Assessed problems that are not the indication of a procedure done today: not
    linked to one, not the same concept, not on a treated site or numbered lesion."""
    known = icd10.load_tables().concepts
    linked = {facts.diagnoses[j].concept for j in procedure_dx if j < len(facts.diagnoses)}
    done = [p for p in facts.procedures if p.status == "performed"]
    sites = {(p.site, p.laterality) for p in done if p.site}
    lesions = {p.lesion_no for p in done if p.lesion_no is not None}
    sampled = any(p.kind in ("biopsy", "excision", "shave", "shave_removal") for p in done)
    out = []
    for j, d in enumerate(facts.diagnoses):
        if j in procedure_dx or d.status != "active" or d.concept not in known:
            continue
        if d.concept in linked or d.source not in COUNTED_SOURCES:
            continue
        if icd10.concept(d.concept).catchall or d.lesion_no in lesions:
            continue
        if d.uncertain and sampled and (d.site is None or not sites):
            continue  # "r/o melanoma" on a day a lesion is sampled is that lesion's question
        if (
            d.site
            and any(
                d.site == s and (not d.laterality or not lat or d.laterality == lat)
                for s, lat in sites
            )
            and _could_be_indication(d, done)
        ):
            continue  # the lesion treated today, named again; seb derm beside scalp AKs is not
        out.append(d)
    return out


def assess(facts: NoteFacts, procedure_dx: set[int]) -> tuple[Mdm, list[DiagnosisFact]]:
    why: list[str] = []
    dxs = _separate_problems(facts, procedure_dx)
    p = _problem_level(facts, dxs, why)
    return Mdm(p, _data_level(facts, why), _risk_level(facts, why), why), dxs


def code_em(
    facts: NoteFacts,
    t: object,
    procedure_codes: list[str],
    pointers: dict[int, list[str]],
    icd: object | None = None,
) -> tuple[CptLine | None, list[Considered]]:
    """The E/M line (with 25 on a procedure day) or None, and what was set aside."""
    considered: list[Considered] = []
    performed = [i for i, p in enumerate(facts.procedures) if p.status == "performed"]
    proc_dx = {j for i in performed for j in facts.procedures[i].diagnoses}
    procedure_day = bool(procedure_codes)
    if _cue(facts, "em_nurse_visit") and not procedure_day:
        return _line("99211", [], facts, 0.6, "clinical staff visit", []), considered
    mdm, dxs = assess(facts, proc_dx)
    if mdm.problems == 0:
        if procedure_day:
            return None, considered
        return None, [Considered(code="99212", reason="no problem-oriented assessment found")]
    table = NEW if facts.patient == "new" else ESTABLISHED
    level = max(1, min(4, mdm.level))
    code = table[level]
    summary = (
        f"MDM {LEVEL_NAMES[level]} (problems {LEVEL_NAMES.get(mdm.problems, '-')}, data "
        f"{LEVEL_NAMES[mdm.data]}, risk {LEVEL_NAMES[mdm.risk]}): " + "; ".join(mdm.why)
    )
    if facts.patient is None:
        summary += "; new/established not stated: established assumed"
    if _cue(facts, "em_time"):
        considered.append(
            Considered(
                code=code,
                reason="total time documented: a time-based level may apply (out of scope in v1)",
            )
        )
    if procedure_day:
        if level < 2:
            considered.append(
                Considered(
                    code=code,
                    reason="separate problems reach only straightforward MDM: not a "
                    "significant, separately identifiable service on a procedure day (§10)",
                )
            )
            return None, considered
        mods = ["25"]
        summary = "separately identifiable from today's procedures; " + summary
    else:
        mods = []
    codes = _pointer_codes(facts, dxs, icd)
    conf = 0.7 if facts.patient is not None else 0.6
    return _line(code, mods, facts, conf, summary, codes, dxs), considered


def _pointer_codes(facts: NoteFacts, dxs: list[DiagnosisFact], icd: object | None) -> list[str]:
    out: list[str] = []
    lines = getattr(icd, "lines", []) or []
    for d in dxs:
        try:
            res = icd10.resolve(d.concept, d.site, d.laterality, d.eyelid)
        except Exception:  # noqa: BLE001 - a concept without a map row simply gets no pointer
            continue
        if res.code not in out and (not lines or any(ln.code == res.code for ln in lines)):
            out.append(res.code)
    return out[:4]


def _line(
    code: str,
    mods: list[str],
    facts: NoteFacts,
    conf: float,
    why: str,
    codes: list[str],
    dxs: list[DiagnosisFact] | None = None,
) -> CptLine:
    from extractor.coding.cpt_tables import tables

    row = tables().codes[code]
    ev = [e for d in (dxs or [])[:4] for e in d.evidence[:1]]
    return CptLine(
        code=code,
        units=1,
        modifiers=mods,
        icd10=codes,
        confidence=conf,
        rationale=f"{row.label}: {why}",
        label=row.label,
        evidence=ev,
    )
