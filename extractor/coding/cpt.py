"""CPT/HCPCS engine (CODING_CONVENTIONS §2-§12): facts -> claim lines.

Table-driven: ``cpt_routes.jsonl`` sends each performed procedure to a family,
``cpt_codes.jsonl`` holds the codes of every family with the band of the measure that
picks them, ``bundling.jsonl`` holds the §12 edits and ``modifiers.jsonl`` the anatomic
modifiers. The engine itself runs five small steps:

1. *items*: one item per performed procedure (lesion), with its family, measure, site
   group, anatomic modifier, evidence and the conservative defaults it needed;
2. *drop*: §12 same-lesion edits remove bundled items (biopsy of the lesion then
   excised, simple closure, Mohs of the excised tumour, PDT-treated AKs ...);
3. *code*: each family turns its items into codes (band look-up, biopsy hierarchy,
   session counts 17000/17003/17004, repair sums, Mohs stages and blocks ...);
4. *modifiers*: §12 different-lesion pairs and §11.2 per-lesion multiples get 59;
5. *lines*: one line per code with summed units, ordered E/M first, then by RVU.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from extractor.coding import icd10
from extractor.coding.codeset import assert_emittable
from extractor.coding.cpt_tables import CptCodeRow, CptTables, tables
from extractor.patterns import cached_family
from extractor.schemas import (
    Considered,
    CptLine,
    CptOutcome,
    DiagnosisFact,
    Evidence,
    NoteFacts,
    ProcedureFact,
)

MOD_59 = "59"
BIOPSY_FAMILIES = ("biopsy_incisional", "biopsy_punch", "biopsy_tangential")  # hierarchy order
PER_LESION_FAMILIES = ("excision_malignant", "excision_benign", "destruction_malignant",
                       "shave_removal")  # §11.2 ranking order: malignant over benign
SPECIMEN_FAMILIES = ("biopsy_tangential", "biopsy_punch", "biopsy_incisional", "excision_benign",
                     "excision_malignant", "shave_removal", "nail_biopsy")
REMOVAL_FAMILIES = ("excision_benign", "excision_malignant", "shave_removal", "mohs_first",
                    "destruction_malignant", "nail_matrixectomy", "nail_avulsion")
DEFAULT_PENALTY = 0.15
_GROUP_RANK = {"C": 2, "B": 1, "A": 0}
_COMPLICATED_ID = re.compile(r"\b(multiple|several|loculat\w*|complicated|abscesses)\b", re.I)
_WHOLE_BODY = re.compile(r"\b(total|whole|full)[- ]body\b|\bTBP\b|mole mapping", re.I)
_PDT_DEBRIDE = ("curettage", "debridement")
_SPECIAL_STAIN = re.compile(r"\b(PAS|GMS|AFB|Gram stain|Fite)\b")


class DrugRow(BaseModel):
    """A drug with its own HCPCS line (§8.3, §8.7)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kinds: list[str]
    words: list[str]
    code: str
    unit: str
    per_unit: float
    comment: str | None = None


@lru_cache(maxsize=1)
def _drugs() -> tuple[DrugRow, ...]:
    return cached_family("coding/cpt_drugs.jsonl", DrugRow)


def round_cm(value: float) -> float:
    """§1.5: one decimal, half up."""
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------ items


@dataclass
class Item:
    proc: int
    family: str
    code: str | None = None
    value: float | None = None
    group: str | None = None
    count: int = 1
    units: int = 1
    anat: str | None = None
    modifiers: set[str] = field(default_factory=set)
    what: str = ""  # rationale fragment: "R cheek, 0.6 cm"
    confidence: float = 0.92
    evidence: list[Evidence] = field(default_factory=list)
    stages: int = 1
    extra_blocks: int = 0
    primary: Item | None = None  # for add-on items: the line that carries their 59


@dataclass
class _Ctx:
    facts: NoteFacts
    t: CptTables
    items: list[Item] = field(default_factory=list)
    considered: list[Considered] = field(default_factory=list)
    defaults: list[tuple[int, str]] = field(default_factory=list)

    def default(self, i: int, element: str, item: Item | None = None) -> None:
        if (i, element) not in self.defaults:
            self.defaults.append((i, element))
        if item is not None:
            item.confidence = max(0.3, item.confidence - DEFAULT_PENALTY)

    def consider(self, code: str, reason: str) -> None:
        if not any(c.code == code and c.reason == reason for c in self.considered):
            self.considered.append(Considered(code=code, reason=reason))


def _active_dx(facts: NoteFacts, p: ProcedureFact) -> list[DiagnosisFact]:
    """Linked diagnoses, most telling first: pathology, certain, specific."""
    out = []
    for j in p.diagnoses:
        if 0 <= j < len(facts.diagnoses):
            d = facts.diagnoses[j]
            if d.status == "active" and d.concept in icd10.load_tables().concepts:
                out.append((j, d))
    def key(jd: tuple[int, DiagnosisFact]) -> tuple[int, int, int, int]:
        j, d = jd
        row = icd10.concept(d.concept)
        return (row.catchall, d.source != "pathology", d.uncertain, j)
    return [d for _, d in sorted(out, key=key)]


def _classes(dxs: list[DiagnosisFact]) -> list[str]:
    return list(dict.fromkeys(icd10.concept(d.concept).cpt_class for d in dxs))


def _side(p: ProcedureFact) -> str:
    return {"left": "L ", "right": "R ", "bilateral": "bilat "}.get(p.laterality or "", "")


def _where(p: ProcedureFact) -> str:
    site = (p.site or "site not stated").replace("_", " ")
    lid = f"{p.eyelid} " if p.eyelid else ""
    digit = f" (digit {p.digit})" if p.digit else ""
    return f"{_side(p)}{lid}{site}{digit}"


def _anat(ctx: _Ctx, i: int, p: ProcedureFact, item: Item) -> None:
    """§11.3: eyelid/digit modifier; a missing side or digit is a laterality default."""
    if p.site not in ("eyelid", "finger", "toe"):
        return
    digit = p.digit
    if digit is None and p.site != "eyelid":
        row = ctx.t.sites.get(p.site)
        digit = row.digit_number if row else None
    mod = ctx.t.anatomic_modifier(p.site, p.laterality, p.eyelid, digit)
    if mod:
        item.anat = mod
    else:
        ctx.default(i, "laterality", item)


def _site_group(ctx: _Ctx, i: int, p: ProcedureFact, item: Item, attr: str, low: str) -> str:
    row = ctx.t.sites.get(p.site or "")
    if row is None:
        ctx.default(i, "site", item)
        return low
    return getattr(row, attr)


def _new_item(ctx: _Ctx, i: int, p: ProcedureFact, family: str, **kw) -> Item:
    it = Item(proc=i, family=family, evidence=list(p.evidence[:4]), **kw)
    if p.uncertain:
        it.confidence -= 0.05
    return it


def _count(ctx: _Ctx, i: int, p: ProcedureFact, item: Item) -> int:
    if p.count is None or p.count < 1:
        ctx.default(i, "count", item)
        return 1
    return p.count


# ------------------------------------------------------------------ family handlers
# Each handler appends items for one performed procedure.


def _h_biopsy(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    method = p.method if p.method in ("tangential", "punch", "incisional") else None
    it = _new_item(ctx, i, p, f"biopsy_{method or 'tangential'}")
    if method is None:
        ctx.default(i, "technique", it)
    if p.site is None:
        ctx.default(i, "site", it)
    it.count = p.count if p.count and 1 < p.count <= 20 else 1
    it.what = f"{method or 'tangential (technique not stated)'}: {_where(p)}"
    _anat(ctx, i, p, it)
    if p.site in ("eyelid",) and method == "incisional":
        ctx.consider("67810", "incisional biopsy of eyelid: site-specific code 67810 (verify, §2)")
    if p.site == "ear":
        ctx.consider("69100", "ear skin biopsy coded 1110x; site-specific 69100 (verify, §2)")
    if p.site == "lip":
        ctx.consider("40490", "lip biopsy coded 1110x; site-specific 40490 (verify, §2)")
    ctx.items.append(it)


def _h_nail_biopsy(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "nail_biopsy", code="11755", what=f"nail unit biopsy: {_where(p)}")
    _anat(ctx, i, p, it)
    ctx.items.append(it)


def _h_banded(ctx: _Ctx, i: int, p: ProcedureFact, family: str, size: float | None,
              what: str) -> Item:
    """Per-lesion families picked by lesion group and a diameter (§3, §4, §6.4)."""
    it = _new_item(ctx, i, p, family)
    it.group = _site_group(ctx, i, p, it, "lesion_group", "A")
    if size is None or size <= 0:
        ctx.default(i, "size", it)
        it.code = ctx.t.lowest(family, it.group).code
        it.what = f"{what}: {_where(p)}, size not documented"
    else:
        it.value = round_cm(size)
        it.code = ctx.t.band(family, it.group, it.value).code
        it.what = f"{what}: {_where(p)}, {it.value:g} cm"
    it.count = 1  # one fact = one lesion; "x2"/"x3" next to ED&C or a shave is cycles/noise
    _anat(ctx, i, p, it)
    ctx.items.append(it)
    return it


def _h_shave_removal(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    _h_banded(ctx, i, p, "shave_removal", p.size_cm, "shave removal")


def _is_malignant_known(ctx: _Ctx, dxs: list[DiagnosisFact]) -> tuple[bool, bool]:
    """(malignant family, histology pending) per §4 'family by pathology'."""
    for d in dxs:
        row = icd10.concept(d.concept)
        if row.excision_family == "malignant" and (not d.uncertain or d.source == "pathology"):
            return True, False
    certain_benign = any(
        not d.uncertain and not icd10.concept(d.concept).catchall
        and icd10.concept(d.concept).excision_family == "benign"
        for d in dxs
    )
    return False, not certain_benign


def _h_excision(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    malignant, pending = _is_malignant_known(ctx, dxs)
    family = "excision_malignant" if malignant else "excision_benign"
    size, margins_missing = p.excised_cm, False
    if size is None and p.size_cm:
        if p.margin_cm is None:
            margins_missing = True
            size = p.size_cm
        else:
            size = p.size_cm + 2 * p.margin_cm
    label = f"excision, {'malignant' if malignant else 'benign'}"
    if p.excised_cm is None and p.size_cm and p.margin_cm is not None:
        label += f" ({p.size_cm:g} cm lesion + 2 x {p.margin_cm:g} cm margins)"
    it = _h_banded(ctx, i, p, family, size, label)
    if margins_missing:
        ctx.default(i, "margins", it)
        it.what += " (margins not documented: lesion diameter used)"
    if pending:
        ctx.default(i, "histology", it)
        it.what += "; histology pending, benign family provisionally"


def _h_destruction_malignant(ctx: _Ctx, i: int, p: ProcedureFact,
                             dxs: list[DiagnosisFact]) -> None:
    _h_banded(ctx, i, p, "destruction_malignant", p.size_cm, "destruction of malignant lesion")


def _h_session_count(family: str, noun: str) -> Callable[..., None]:
    def handler(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
        it = _new_item(ctx, i, p, family)
        it.count = _count(ctx, i, p, it)
        if p.site is None:
            ctx.default(i, "site", it)
        it.what = f"{it.count} {noun}{'' if p.count else ' (count not stated)'}: {_where(p)}"
        ctx.items.append(it)
    return handler


def _h_vascular(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "destruction_vascular")
    if p.area_sqcm is None:
        ctx.default(i, "size", it)
        it.code = ctx.t.lowest("destruction_vascular", None).code
        it.what = f"vascular lesion destruction: {_where(p)}, area not documented"
    else:
        it.value = p.area_sqcm
        it.code = ctx.t.band("destruction_vascular", None, p.area_sqcm).code
        it.what = f"vascular lesion destruction: {_where(p)}, {p.area_sqcm:g} sq cm"
    ctx.items.append(it)


def _h_excimer(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "excimer")
    if p.area_sqcm is None:
        ctx.default(i, "size", it)
        it.code = ctx.t.lowest("excimer", None).code
        it.what = "excimer laser, treated area not documented"
    else:
        it.code = ctx.t.band("excimer", None, p.area_sqcm).code
        it.what = f"excimer laser, {p.area_sqcm:g} sq cm"
    ctx.items.append(it)


_PHOTO_CODES = {"uv": "96900", "tar": "96910", "puva": "96912"}
_TAR = re.compile(r"\b(coal tar|tar|goeckerman|psoralen|methoxsalen|8-mop|puva)\b", re.I)


def _h_phototherapy(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    hit = _TAR.search(_evidence_text(p))
    method = p.method
    if hit and method in (None, "uv"):
        method = "puva" if hit.group(1).lower() in ("psoralen", "methoxsalen", "8-mop", "puva") \
            else "tar"
    code = _PHOTO_CODES.get(method or "uv", "96900")
    if p.method not in _PHOTO_CODES:
        ctx.default(i, "technique")
    ctx.items.append(_new_item(ctx, i, p, "phototherapy", code=code,
                               what=f"phototherapy ({method or 'UV'})"))


def _evidence_text(p: ProcedureFact) -> str:
    return " ".join(e.text for e in p.evidence)


def _drug_item(ctx: _Ctx, i: int, p: ProcedureFact, kind: str) -> None:
    text = (_evidence_text(p) + " " + (p.drug or "")).lower()
    best: tuple[int, DrugRow] | None = None
    for d in _drugs():
        if kind not in d.kinds:
            continue
        for w in d.words:
            if re.search(rf"\b{re.escape(w)}", text) and (best is None or len(w) > best[0]):
                best = (len(w), d)
    if best is None:
        return
    drug = best[1]
    if drug.unit == "mg":
        mg = p.dose_mg
        conc, vol = p.attrs.get("conc_mg_ml"), p.attrs.get("volume_ml")
        if conc and vol:
            mg = float(conc) * float(vol)
        if not mg:
            ctx.consider(drug.code, f"{drug.id}: dose not documented, no drug line (§8.3)")
            return
        units = max(1, math.ceil(round(mg / drug.per_unit, 6)))
        what = f"{drug.id} {mg:g} mg"
    else:
        units = max(1, int(p.drug_units or 1))
        what = f"{drug.id} x{units} {drug.unit}"
    ctx.items.append(_new_item(ctx, i, p, "drug", code=drug.code, units=units, what=what))


def _h_injection(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    _h_session_count("injection", "lesion(s) injected")(ctx, i, p, dxs)
    _drug_item(ctx, i, p, "injection")


def _h_pdt(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    if any(it.family == "pdt" for it in ctx.items):
        return  # one PDT code per day (§8.7)
    debrided = [
        k for k, q in enumerate(ctx.facts.procedures)
        if q.status == "performed" and q.kind == "destruction" and q.method in _PDT_DEBRIDE
    ]
    text = _evidence_text(p).lower()
    code = "96574" if debrided or "debride" in text or "curett" in text else "96567"
    if code == "96567":
        ctx.consider("96573", "PDT: physician application/illumination not documented; "
                              "staff code 96567 suggested (lowest)")
    it = _new_item(ctx, i, p, "pdt", code=code, what=f"photodynamic therapy: {_where(p)}")
    ctx.items.append(it)
    _drug_item(ctx, i, p, "pdt")


def _h_mohs(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "mohs_first")
    it.group = _site_group(ctx, i, p, it, "mohs", "trunk_limbs")
    first = next(r for r in ctx.t.family_rows("mohs_first", it.group))
    it.code = first.code
    it.stages = p.stages or 1
    it.extra_blocks = sum(max(0, b - 5) for b in p.blocks)
    it.what = f"Mohs: {_where(p)}, {it.stages} stage(s)"
    if it.extra_blocks:
        it.what += f", {it.extra_blocks} block(s) beyond 5"
    _anat(ctx, i, p, it)
    ctx.items.append(it)


def _nearest_removal_site(ctx: _Ctx, i: int) -> ProcedureFact | None:
    procs = ctx.facts.procedures
    order = list(range(i - 1, -1, -1)) + list(range(i + 1, len(procs)))
    for k in order:
        q = procs[k]
        if q.status == "performed" and q.kind in ("excision", "mohs", "removal", "shave_removal",
                                                   "biopsy", "shave") and q.site:
            return q
    return None


def _h_repair(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    cls = p.method if p.method in ("simple", "intermediate", "complex") else "simple"
    if cls == "complex" and p.length_cm is not None and round_cm(p.length_cm) <= 1.0:
        cls = "intermediate"  # complex codes start at 1.1 cm (§5)
    site_p = p
    if p.site is None:
        near = _nearest_removal_site(ctx, i)
        if near is not None:
            site_p = near
    it = _new_item(ctx, i, p, f"repair_{cls}")
    it.group = _site_group(ctx, i, site_p, it, f"repair_{cls}",
                           {"simple": "body", "intermediate": "body", "complex": "trunk"}[cls])
    if p.length_cm is None:
        ctx.default(i, "size", it)
        it.value = None
    else:
        it.value = round_cm(p.length_cm)
    it.what = f"{cls} repair: {_where(site_p)}, " + (
        f"{it.value:g} cm" if it.value is not None else "length not documented")
    _anat(ctx, i, site_p, it)
    ctx.items.append(it)


def _h_incision_drainage(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    text = _evidence_text(p) + " " + " ".join(d.text for d in dxs)
    multi = (p.count or 1) > 1 or bool(_COMPLICATED_ID.search(text))
    others = [it for it in ctx.items if it.family == "incision_drainage"]
    if others:
        for o in others:
            o.code = "10061"
        return
    code = "10061" if multi else "10060"
    note = " (multiple/complicated)" if multi else ""
    ctx.items.append(_new_item(ctx, i, p, "incision_drainage", code=code,
                               what=f"incision and drainage{note}: {_where(p)}"))


def _h_nail_avulsion(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "nail_avulsion", what=f"nail avulsion: {_where(p)}")
    it.count = p.count if p.count and p.count <= 10 else 1
    _anat(ctx, i, p, it)
    ctx.items.append(it)


def _h_nail_matrixectomy(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    it = _new_item(ctx, i, p, "nail_matrixectomy", code="11750",
                   what=f"nail matrixectomy: {_where(p)}")
    _anat(ctx, i, p, it)
    ctx.items.append(it)


def _h_photography(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    if not _WHOLE_BODY.search(_evidence_text(p)):
        return  # lesion photos and dermoscopic close-ups are not 96904 (§8.9)
    ctx.items.append(_new_item(ctx, i, p, "photography", code="96904",
                               what="whole-body photography for monitoring"))


def _h_out_of_scope(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    concepts = ", ".join(d.concept for d in dxs) or p.kind
    code = "54050" if p.kind == "destruction" else "11400"
    ctx.consider(code if code in ctx.t.codes else "11400",
                 f"{p.kind} of {concepts}: outside this tool's code families, coder to assign")


def _h_flap(ctx: _Ctx, i: int, p: ProcedureFact, dxs: list[DiagnosisFact]) -> None:
    ctx.consider("14000", f"flap/adjacent tissue transfer at {_where(p)}: out of scope in v1 "
                          "(14000-14061), coder to assign")


HANDLERS: dict[str, Callable[[_Ctx, int, ProcedureFact, list[DiagnosisFact]], None]] = {
    "biopsy": _h_biopsy,
    "nail_biopsy": _h_nail_biopsy,
    "shave_removal": _h_shave_removal,
    "excision": _h_excision,
    "destruction_malignant": _h_destruction_malignant,
    "destruction_premalignant": _h_session_count("destruction_premalignant",
                                                 "premalignant lesion(s)"),
    "destruction_benign": _h_session_count("destruction_benign", "benign lesion(s)"),
    "destruction_vascular": _h_vascular,
    "tags": _h_session_count("tags", "skin tag(s)"),
    "injection": _h_injection,
    "nail_debridement": _h_session_count("nail_debridement", "nail(s) debrided"),
    "nail_avulsion": _h_nail_avulsion,
    "nail_matrixectomy": _h_nail_matrixectomy,
    "excimer": _h_excimer,
    "phototherapy": _h_phototherapy,
    "pdt": _h_pdt,
    "mohs": _h_mohs,
    "repair": _h_repair,
    "incision_drainage": _h_incision_drainage,
    "photography": _h_photography,
    "out_of_scope": _h_out_of_scope,
    "flap": _h_flap,
}


def _resolve_shave(p: ProcedureFact, dxs: list[DiagnosisFact]) -> str:
    """§3: intent decides; unstated -> uncertain diagnosis = biopsy, definite benign = removal."""
    if p.intent == "diagnostic":
        return "biopsy"
    if p.intent in ("removal", "cosmetic"):
        return "shave_removal"
    if not dxs or any(d.uncertain or icd10.concept(d.concept).catchall for d in dxs):
        return "biopsy"
    if any(icd10.concept(d.concept).excision_family == "malignant" for d in dxs):
        return "biopsy"
    return "shave_removal"


# ------------------------------------------------------------------ step 2/4: bundling


def _same_lesion(facts: NoteFacts, a: Item, b: Item) -> bool:
    if a.proc == b.proc:
        return True
    if a.proc < 0 or b.proc < 0:
        return False
    p, q = facts.procedures[a.proc], facts.procedures[b.proc]
    if p.lesion_no is not None and q.lesion_no is not None:
        return p.lesion_no == q.lesion_no and (p.site == q.site or None in (p.site, q.site))
    if p.site is None and q.site is None:
        return bool(set(p.diagnoses) & set(q.diagnoses))
    if p.site is None or q.site is None or p.site != q.site:
        return False
    if p.laterality and q.laterality and p.laterality != q.laterality:
        return False
    concepts_p = {facts.diagnoses[j].concept for j in p.diagnoses if j < len(facts.diagnoses)}
    concepts_q = {facts.diagnoses[j].concept for j in q.diagnoses if j < len(facts.diagnoses)}
    return bool(set(p.diagnoses) & set(q.diagnoses) or concepts_p & concepts_q)


def _key(it: Item) -> str:
    return it.code or ""


def _drop_pass(ctx: _Ctx) -> None:
    dropped: set[int] = set()
    for row in ctx.t.bundling:
        comps = [it for it in ctx.items if row.is_comprehensive(_key(it), it.family)]
        for it in ctx.items:
            if id(it) in dropped or not row.is_component(_key(it), it.family):
                continue
            for c in comps:
                if c is it or id(c) in dropped:
                    continue
                same = it.family == "repair_simple" and (
                    ctx.facts.procedures[it.proc].site is None
                    and ctx.facts.procedures[it.proc].lesion_no is None
                ) or _same_lesion(ctx.facts, it, c)
                action = row.same_lesion if same else row.different_lesion
                if action == "drop":
                    dropped.add(id(it))
                    ctx.consider(
                        it.code or ctx.t.lowest(_base_family(it.family), it.group).code,
                        f"bundled ({row.id}): {it.what or it.family} with "
                        f"{c.code or c.family} {'on the same lesion' if same else ''}".strip())
                    break
    ctx.items = [it for it in ctx.items if id(it) not in dropped]


def _base_family(family: str) -> str:
    return family


def _carrier(ctx: _Ctx, it: Item) -> Item:
    """59 never goes on an add-on (§11.2): carry it on the primary of the same series."""
    row = ctx.t.codes.get(it.code or "")
    if row is not None and row.addon_of is not None and it.primary is not None:
        return it.primary
    return it


def _modifier_pass(ctx: _Ctx) -> None:
    for row in ctx.t.bundling:
        comps = [it for it in ctx.items if row.is_comprehensive(_key(it), it.family)]
        for it in ctx.items:
            if not row.is_component(_key(it), it.family):
                continue
            for c in comps:
                if c is it or c.code == it.code:
                    continue
                same = _same_lesion(ctx.facts, it, c)
                action = row.same_lesion if same else row.different_lesion
                if action != "modifier":
                    continue
                if it.anat and c.anat and it.anat != c.anat:
                    continue  # anatomic modifiers already tell them apart (§11.2)
                _carrier(ctx, it).modifiers.add(MOD_59)
    # §11.2: several per-lesion codes: all but the highest-valued carry 59; units > 1 too
    per = [it for it in ctx.items if it.family in PER_LESION_FAMILIES]
    if per:
        def rank(it: Item) -> tuple[bool, float, int, float]:
            r = ctx.t.codes[it.code or ""]
            return ("malignant" in it.family, r.lo or 0.0, _GROUP_RANK.get(it.group or "A", 0),
                    r.rvu)
        top = max(per, key=rank)
        by_code: dict[str, int] = defaultdict(int)
        for it in per:
            by_code[it.code or ""] += it.count
        for it in per:
            if it.code != top.code or by_code[it.code or ""] > 1:
                it.modifiers.add(MOD_59)


# ------------------------------------------------------------------ step 3: codes


def _code_biopsies(ctx: _Ctx) -> None:
    bx = [it for it in ctx.items if it.family in BIOPSY_FAMILIES]
    if not bx:
        return
    bx.sort(key=lambda it: (BIOPSY_FAMILIES.index(it.family), it.proc))
    primary_codes = {"biopsy_tangential": "11102", "biopsy_punch": "11104",
                     "biopsy_incisional": "11106"}
    first = bx[0]
    base = primary_codes[first.family]
    first.code, first.units = base, 1
    out = [first]
    extra_first = first.count - 1
    if extra_first > 0:
        out.append(Item(proc=first.proc, family=first.family,
                        code=ctx.t.addon(base).code, units=extra_first, what=first.what,
                        confidence=first.confidence, evidence=first.evidence, primary=first))
    for it in bx[1:]:
        it.code = ctx.t.addon(primary_codes[it.family]).code
        it.units = it.count
        it.primary = first
        out.append(it)
    ctx.items = [it for it in ctx.items if it.family not in BIOPSY_FAMILIES] + out


def _code_per_lesion(ctx: _Ctx) -> None:
    for it in ctx.items:
        if it.family in PER_LESION_FAMILIES or it.family in ("nail_matrixectomy",):
            it.units = it.count


def _session(ctx: _Ctx, family: str, total_code: Callable[[int], list[tuple[str, int]]],
             noun: str) -> None:
    group = [it for it in ctx.items if it.family == family]
    if not group:
        return
    clusters: list[list[Item]] = []
    for it in group:  # two mentions of one treatment (tag snip + cautery) count once
        home = next((c for c in clusters if _same_lesion(ctx.facts, c[0], it)), None)
        (home.append(it) if home is not None else clusters.append([it]))
    n = sum(max(it.count for it in c) for c in clusters)
    codes = total_code(n)
    rest = [it for it in ctx.items if it.family != family]
    head = group[0]
    new = []
    for code, units in codes:
        new.append(Item(proc=head.proc, family=family, code=code, units=units,
                        what=f"{n} {noun} in total: " + "; ".join(g.what for g in group),
                        confidence=min(g.confidence for g in group),
                        evidence=[e for g in group for e in g.evidence][:6]))
    for x in new:
        x.primary = new[0]
        x.modifiers = set().union(*(g.modifiers for g in group))
    # remember every contributing procedure for pointers/procedure_codes
    for x in new:
        x.__dict__["procs"] = [k for g in group for k in _procs(g)]
    ctx.items = rest + new


def _premalignant(n: int) -> list[tuple[str, int]]:
    return [("17004", 1)] if n >= 15 else [("17000", 1)] + ([("17003", n - 1)] if n > 1 else [])


def _tags(n: int) -> list[tuple[str, int]]:
    return [("11200", 1)] + ([("11201", math.ceil((n - 15) / 10))] if n > 15 else [])


def _banded_count(family: str, t: CptTables) -> Callable[[int], list[tuple[str, int]]]:
    return lambda n: [(t.band(family, None, n).code, 1)]


def _code_sessions(ctx: _Ctx) -> None:
    t = ctx.t
    def total(family: str) -> int:
        clusters: list[list[Item]] = []
        for it in (x for x in ctx.items if x.family == family):
            home = next((c for c in clusters if _same_lesion(ctx.facts, c[0], it)), None)
            (home.append(it) if home is not None else clusters.append([it]))
        return sum(max(it.count for it in c) for c in clusters)

    pre = total("destruction_premalignant")
    if pre >= 15:
        ctx.consider("17000", f"replaced by 17004: {pre} premalignant lesions destroyed")
        ctx.consider("17003", f"replaced by 17004: {pre} premalignant lesions destroyed")
    ben = total("destruction_benign")
    if ben >= 15:
        ctx.consider("17110", f"replaced by 17111: {ben} benign lesions destroyed")
    _session(ctx, "destruction_premalignant", _premalignant, "premalignant lesion(s)")
    _session(ctx, "destruction_benign", _banded_count("destruction_benign", t), "benign lesion(s)")
    _session(ctx, "tags", _tags, "skin tag(s)")
    _session(ctx, "injection", _banded_count("injection", t), "lesion(s) injected")
    _session(ctx, "nail_debridement", _banded_count("nail_debridement", t), "nail(s)")


def _code_nails(ctx: _Ctx) -> None:
    av = [it for it in ctx.items if it.family == "nail_avulsion"]
    if not av:
        return
    first = av[0]
    first.code, first.units = "11730", 1
    extra = first.count - 1
    out = [first]
    if extra > 0:
        out.append(Item(proc=first.proc, family="nail_avulsion", code="11732", units=extra,
                        what=first.what, evidence=first.evidence, primary=first))
    for it in av[1:]:
        it.code, it.units, it.primary = "11732", it.count, first
        out.append(it)
    ctx.items = [it for it in ctx.items if it.family != "nail_avulsion"] + out


def _code_repairs(ctx: _Ctx) -> None:
    reps = [it for it in ctx.items if it.family.startswith("repair_")]
    if not reps:
        return
    sums: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in reps:
        sums[(it.family, it.group or "")].append(it)
    out = []
    for (family, group), members in sums.items():
        known = [m.value for m in members if m.value is not None]
        total = round_cm(sum(known)) if known else None
        head = members[0]
        if total is None:
            row = ctx.t.lowest(family, group)
        elif family == "repair_complex" and total > 7.5:
            row = ctx.t.band(family, group, 7.5)
        else:
            row = ctx.t.band(family, group, total)
        what = "; ".join(m.what for m in members)
        if len(members) > 1:
            what = f"{len(members)} repairs summed to {total:g} cm: {what}" if total else what
        line = Item(proc=head.proc, family=family, code=row.code, group=group, value=total,
                    what=what, confidence=min(m.confidence for m in members),
                    evidence=[e for m in members for e in m.evidence][:6],
                    anat=head.anat if len(members) == 1 else None)
        line.__dict__["procs"] = [m.proc for m in members]
        out.append(line)
        if family == "repair_complex" and total is not None and total > 7.5:
            add = ctx.t.addon(row.code)
            extra = Item(proc=head.proc, family=family, code=add.code,
                         units=math.ceil(round(total - 7.5, 6) / 5), what=what,
                         confidence=line.confidence, evidence=line.evidence, primary=line)
            extra.__dict__["procs"] = line.__dict__["procs"]
            out.append(extra)
    ctx.items = [it for it in ctx.items if not it.family.startswith("repair_")] + out


def _code_mohs(ctx: _Ctx) -> None:
    out = []
    for it in [it for it in ctx.items if it.family == "mohs_first"]:
        it.units = 1
        if it.stages > 1:
            add = ctx.t.addon(it.code or "")
            out.append(Item(proc=it.proc, family="mohs_additional", code=add.code,
                            units=it.stages - 1, what=it.what, evidence=it.evidence,
                            confidence=it.confidence, primary=it))
        if it.extra_blocks:
            out.append(Item(proc=it.proc, family="mohs_block", code="17315",
                            units=it.extra_blocks, what=it.what, evidence=it.evidence,
                            confidence=it.confidence, primary=it))
    ctx.items += out


def _code_pathology(ctx: _Ctx) -> None:
    """§8.8: only when the practice performs the pathology itself."""
    cues = ctx.facts.cues
    if not cues.get("inhouse_path") or cues.get("outside_lab"):
        return
    specimens = [it for it in ctx.items if it.family in SPECIMEN_FAMILIES]
    if not specimens:
        return
    n305 = n304 = 0
    for it in specimens:
        p = ctx.facts.procedures[it.proc]
        simple = any(
            icd10.concept(d.concept).cpt_class in ("cyst", "tag")
            for d in _active_dx(ctx.facts, p)
        )
        n = max(it.units, it.count) if it.family not in BIOPSY_FAMILIES else it.units
        if simple:
            n304 += n
        else:
            n305 += n
    for code, n in (("88305", n305), ("88304", n304)):
        if n:
            ctx.items.append(Item(proc=specimens[0].proc, family="pathology", code=code, units=n,
                                  what=f"in-house surgical pathology, {n} specimen(s)",
                                  confidence=0.75, evidence=cues["inhouse_path"][:2]))
    if cues.get("special_stain_micro"):
        ctx.items.append(Item(proc=specimens[0].proc, family="pathology", code="88312", units=1,
                              what="in-house special stain for microorganisms",
                              confidence=0.7, evidence=cues["special_stain_micro"][:2]))


# ------------------------------------------------------------------ step 5: lines


def _procs(it: Item) -> list[int]:
    return it.__dict__.get("procs") or [it.proc]


def _lines(ctx: _Ctx, icd_pointers: dict[int, list[str]]) -> tuple[list[CptLine],
                                                                   dict[int, list[str]]]:
    by_code: dict[str, list[Item]] = defaultdict(list)
    for it in ctx.items:
        if it.code:
            by_code[it.code].append(it)
    lines, proc_codes = [], defaultdict(list)
    for code, its in by_code.items():
        row: CptCodeRow = ctx.t.codes[code]
        assert_emittable(code, ctx.t.emittable)
        mods: list[str] = []
        for it in its:
            for m in sorted(it.modifiers):
                if m not in mods:
                    mods.append(m)
        anats = [it.anat for it in its if it.anat]
        for a in anats:
            if a not in mods:
                mods.append(a)
        pointers: list[str] = []
        for it in its:
            for k in _procs(it):
                for c in icd_pointers.get(k, []):
                    if c not in pointers:
                        pointers.append(c)
                if code not in proc_codes[k]:
                    proc_codes[k].append(code)
        units = sum(it.units for it in its)
        what = "; ".join(dict.fromkeys(it.what for it in its if it.what))
        lines.append(CptLine(
            code=code, units=max(1, units), modifiers=mods, icd10=pointers,
            confidence=round(min(it.confidence for it in its), 2),
            rationale=f"{row.label}, {units} unit(s): {what}" if what else row.label,
            label=row.label,
            evidence=list({(e.start, e.end): e for it in its for e in it.evidence}.values()),
        ))
    lines.sort(key=lambda ln: (-ctx.t.codes[ln.code].rvu, ln.code))
    return lines, dict(proc_codes)


# ------------------------------------------------------------------ entry point


def _route(ctx: _Ctx, i: int, p: ProcedureFact) -> tuple[str | None, list[DiagnosisFact]]:
    dxs = _active_dx(ctx.facts, p)
    kind = p.kind
    if kind == "shave":
        kind = _resolve_shave(p, dxs)
    classes = _classes(dxs)
    concepts = [d.concept for d in dxs]
    route = ctx.t.route(kind, p.method, classes, concepts)
    return (route.family if route else None), dxs


def _not_performed(ctx: _Ctx, i: int, p: ProcedureFact) -> None:
    family, dxs = _route(ctx, i, p)
    probe = _Ctx(facts=ctx.facts, t=ctx.t)
    handler = HANDLERS.get(family or "")
    code = None
    if handler is not None:
        handler(probe, i, p.model_copy(update={"status": "performed"}), dxs)
        _code_biopsies(probe)
        _code_sessions(probe)
        _code_nails(probe)
        _code_repairs(probe)
        code = next((it.code for it in probe.items if it.code), None)
    if code is None:
        return
    verb = {"negated": "documented as not done", "historical": "done at an earlier encounter",
            "planned": "planned, not done today", "hypothetical": "conditional/hypothetical",
            "family": "family history", "mentioned": "only mentioned (indication/history)"}
    ctx.consider(code, f"{p.kind} at {_where(p)}: {verb.get(p.status, p.status)}")


MERGE_KINDS = {"excision", "shave_removal", "shave", "destruction", "mohs", "tag_removal",
               "injection", "biopsy", "removal", "incision_drainage", "nail_avulsion",
               "nail_matrixectomy", "pdt", "phototherapy", "excimer", "vascular_laser"}


def _fill_site(facts: NoteFacts, i: int, p: ProcedureFact) -> ProcedureFact:
    """A procedure without a site takes the site of its linked diagnosis, or of another
    mention of the same diagnosis concept (the biopsy that proved it)."""
    if p.site is not None or p.attrs.get("separate_lesion"):
        return p  # "pt pointed out another papule": not the site of the main lesion
    concepts = {facts.diagnoses[j].concept for j in p.diagnoses if j < len(facts.diagnoses)}
    for j in p.diagnoses:
        d = facts.diagnoses[j] if j < len(facts.diagnoses) else None
        if d is not None and d.site:
            return p.model_copy(update={"site": d.site, "laterality": p.laterality or d.laterality,
                                        "eyelid": p.eyelid or d.eyelid})
    for k, q in enumerate(facts.procedures):
        if k != i and q.site and concepts & {
            facts.diagnoses[j].concept for j in q.diagnoses if j < len(facts.diagnoses)
        }:
            return p.model_copy(update={
                "site": q.site, "laterality": p.laterality or q.laterality,
                "eyelid": p.eyelid or q.eyelid, "digit": p.digit or q.digit})
    return p


def _duplicate(facts: NoteFacts, p: ProcedureFact, q: ProcedureFact) -> bool:
    """Two performed mentions of the same procedure on the same lesion."""
    if p.kind != q.kind or p.kind not in MERGE_KINDS:
        return False
    if p.method and q.method and p.method != q.method and p.kind != "destruction":
        return False
    if p.lesion_no is not None and q.lesion_no is not None and p.lesion_no != q.lesion_no:
        return False
    if p.site is None or q.site is None:
        return p.site is None and q.site is None or p.size_cm is None or q.size_cm is None
    if p.site != q.site or (p.laterality and q.laterality and p.laterality != q.laterality):
        return False
    if p.size_cm and q.size_cm and p.size_cm != q.size_cm:
        return False
    cp = {facts.diagnoses[j].concept for j in p.diagnoses if j < len(facts.diagnoses)}
    cq = {facts.diagnoses[j].concept for j in q.diagnoses if j < len(facts.diagnoses)}
    return bool(cp & cq) or not cp or not cq


def _merge(p: ProcedureFact, q: ProcedureFact) -> ProcedureFact:
    upd = {}
    for name in ProcedureFact.model_fields:
        if name in ("diagnoses", "evidence", "blocks", "attrs"):
            continue
        if getattr(p, name) in (None, "") and getattr(q, name) not in (None, ""):
            upd[name] = getattr(q, name)
    upd["diagnoses"] = list(dict.fromkeys(p.diagnoses + q.diagnoses))
    upd["evidence"] = p.evidence + [e for e in q.evidence if e not in p.evidence]
    upd["blocks"] = p.blocks or q.blocks
    upd["attrs"] = {**q.attrs, **p.attrs}
    if p.count and q.count:
        upd["count"] = max(p.count, q.count)
    return p.model_copy(update=upd)


def _performed(facts: NoteFacts) -> list[tuple[list[int], ProcedureFact]]:
    """Performed procedures with duplicate mentions of one lesion merged (first index leads)."""
    groups: list[tuple[list[int], ProcedureFact]] = []
    for i, p in enumerate(facts.procedures):
        if p.status != "performed":
            continue
        p = _fill_site(facts, i, p)
        for g in groups:
            if _duplicate(facts, g[1], p):
                g[0].append(i)
                groups[groups.index(g)] = (g[0], _merge(g[1], p))
                break
        else:
            groups.append(([i], p))
    return groups


def _drop_summaries(groups: list[tuple[list[int], ProcedureFact]]
                    ) -> list[tuple[list[int], ProcedureFact]]:
    """'bx x3' heading a list of three itemised biopsies is a summary, not a fourth biopsy."""
    out = []
    for idx, p in groups:
        others = [q for _, q in groups if q is not p and q.kind == p.kind and q.method]
        if p.kind == "biopsy" and p.method is None and p.count and 1 < p.count <= len(others):
            continue
        out.append((idx, p))
    return out


def code_cpt(facts: NoteFacts, icd: object | None = None,
             t: CptTables | None = None) -> CptOutcome:
    """The claim's CPT/HCPCS lines for one note (E/M included), with what was set aside."""
    from extractor.coding import em

    ctx = _Ctx(facts=facts, t=t or tables())
    for i, p in enumerate(facts.procedures):
        if p.status != "performed":
            _not_performed(ctx, i, p)
    merged = _drop_summaries(_performed(facts))
    ctx.facts = facts.model_copy(update={"procedures": [
        next((m for idx, m in merged if idx[0] == i), p) for i, p in enumerate(facts.procedures)
    ]})
    also = {idx[0]: idx for idx, _ in merged}
    for idx, p in merged:
        i = idx[0]
        family, dxs = _route(ctx, i, p)
        handler = HANDLERS.get(family or "")
        if handler is None:
            continue
        before = len(ctx.items)
        handler(ctx, i, p, dxs)
        for it in ctx.items[before:]:
            if len(also[i]) > 1:
                it.__dict__["procs"] = also[i]
        if family not in ("biopsy", "out_of_scope", "flap") and not dxs and len(ctx.items) > before:
            ctx.default(i, "diagnosis", ctx.items[-1])
        elif dxs and all(icd10.concept(d.concept).catchall for d in dxs) and family not in (
            "biopsy", "nail_biopsy") and len(ctx.items) > before:
            ctx.default(i, "diagnosis", ctx.items[-1])
    _drop_pass(ctx)
    _code_biopsies(ctx)
    _code_per_lesion(ctx)
    _code_sessions(ctx)
    _code_nails(ctx)
    _code_repairs(ctx)
    _code_mohs(ctx)
    _drop_pass(ctx)
    _code_pathology(ctx)
    _modifier_pass(ctx)
    if facts.cues.get("cosmetic"):
        for it in ctx.items:
            it.confidence = max(0.3, it.confidence - 0.1)
    pointers = getattr(icd, "pointers", {}) or {}
    lines, proc_codes = _lines(ctx, pointers)
    em_line, em_considered = em.code_em(facts, ctx.t, [ln.code for ln in lines], pointers, icd)
    ctx.considered.extend(em_considered)
    if em_line is not None:
        assert_emittable(em_line.code, ctx.t.emittable)
        lines.insert(0, em_line)
    claim = {ln.code for ln in lines}
    considered = [c for c in ctx.considered if c.code not in claim]
    return CptOutcome(lines=lines, considered=considered, procedure_codes=proc_codes,
                      defaults=ctx.defaults)
