"""ICD-10-CM selection (CODING_CONVENTIONS §13–§15): concept table, site map, note rules.

Two tables under ``patterns/coding/`` drive everything: ``diagnoses.jsonl`` says what
a concept *is* (its CPT class, whether it is a discrete lesion, its history codes) and
``icd10_map.jsonl`` says which code it takes at which site. Every code is checked
against the shipped code set when the tables load, so a typo or a retired code stops
the program at start-up with its file and line instead of reaching a claim.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from extractor.coding import icd10_codeset as codeset
from extractor.errors import CodeSetError, PatternFileError
from extractor.patterns import load_family, patterns_dir, read_rows
from extractor.schemas import (
    DiagnosisFact,
    Evidence,
    Icd10Line,
    IcdRegion,
    NoteFacts,
    ProcedureFact,
    SiteRow,
)

log = logging.getLogger("dermcode")

CONCEPTS_FILE = "coding/diagnoses.jsonl"
MAP_FILE = "coding/icd10_map.jsonl"
SITES_FILE = "coding/sites.jsonl"

CptClass = Literal[
    "malignant",
    "in_situ",
    "premalignant",
    "benign_lesion",
    "cyst",
    "tag",
    "wart",
    "molluscum",
    "vascular",
    "inflammatory",
    "infection",
    "nail",
    "catchall",
    "symptom",
]


class ConceptRow(BaseModel):
    """One diagnosis concept: what the CPT side and §13 need to know about it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    label: str
    cpt_class: CptClass
    discrete_lesion: bool
    catchall: bool
    history_code: str | None = None
    family_history_code: str | None = None
    excision_family: Literal["malignant", "benign"]
    # more specific concepts of this one ("cyst" → "epidermoid_cyst"): when one of them is
    # coded in the note, this NOS concept adds nothing a coder keeps
    refined_by: list[str] = []
    comment: str | None = None


class IcdMapRow(BaseModel):
    """concept × site → code; an absent key means "any" (and, for laterality, unspecified side)."""

    model_config = ConfigDict(extra="forbid")

    concept: str
    region: IcdRegion | None = None
    site: str | None = None
    laterality: Literal["left", "right", "bilateral"] | None = None
    eyelid: Literal["upper", "lower"] | None = None
    code: str
    comment: str | None = None


@dataclass(frozen=True)
class IcdResolution:
    code: str
    description: str
    side_defaulted: bool = False
    site_defaulted: bool = False


class IcdOutcome(BaseModel):
    lines: list[Icd10Line] = []
    pointers: dict[int, list[str]] = {}
    laterality_missing: list[Evidence] = []
    unspecified: list[int] = []


# ------------------------------------------------------------------ code-set check

_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


def is_billable(code: str) -> bool:
    """A dotted code that exists in the shipped code set and has no children
    (through the snapshot that tests/coding/test_icd10_codeset.py checks against it)."""
    return bool(_CODE_SHAPE.match(code)) and codeset.is_billable(code)


def _line_of(path: Path, model: type[BaseModel], index: int) -> int:
    # Only on the error path: load_family drops line numbers, read_rows keeps them.
    return read_rows(path, model)[index][0]


# ------------------------------------------------------------------ tables

_Key = tuple[str | None, str | None, str | None, str | None]


class IcdTables:
    """The loaded, checked tables and the site → region lookup that resolve() needs."""

    def __init__(self, base: Path | None = None) -> None:
        root = base or patterns_dir()
        self.regions: dict[str, str] = {
            s.id: s.region for s in load_family(SITES_FILE, SiteRow, base=root)
        }
        cpath, mpath = root / CONCEPTS_FILE, root / MAP_FILE
        concepts = load_family(CONCEPTS_FILE, ConceptRow, base=root)
        rows = load_family(MAP_FILE, IcdMapRow, base=root)
        self.concepts: dict[str, ConceptRow] = {c.id: c for c in concepts}
        for i, c in enumerate(concepts):
            for code in (c.history_code, c.family_history_code):
                if code is not None and not is_billable(code):
                    line = _line_of(cpath, ConceptRow, i)
                    raise CodeSetError(f"{cpath}:{line}: {code!r} is not a billable ICD-10-CM code")
        self.rows: dict[str, list[IcdMapRow]] = {c: [] for c in self.concepts}
        seen: set[tuple[str, _Key]] = set()
        for i, r in enumerate(rows):
            problem = self._row_problem(r, seen)
            if problem:
                raise PatternFileError(str(mpath), _line_of(mpath, IcdMapRow, i), problem)
            if not is_billable(r.code):
                line = _line_of(mpath, IcdMapRow, i)
                raise CodeSetError(f"{mpath}:{line}: {r.code!r} is not a billable ICD-10-CM code")
            self.rows[r.concept].append(r)
        for i, c in enumerate(concepts):
            if not any(
                r.site is None and r.region is None and r.laterality is None and r.eyelid is None
                for r in self.rows[c.id]
            ):
                raise PatternFileError(
                    str(cpath),
                    _line_of(cpath, ConceptRow, i),
                    f"concept {c.id!r} has no site-free row in {MAP_FILE}",
                )

    def _row_problem(self, r: IcdMapRow, seen: set[tuple[str, _Key]]) -> str | None:
        if r.concept not in self.concepts:
            return f"unknown concept {r.concept!r}"
        if r.site is not None:
            if r.site not in self.regions:
                return f"unknown site {r.site!r}"
            if r.region is not None and r.region != self.regions[r.site]:
                return f"site {r.site!r} is not in region {r.region!r}"
        key = (r.concept, (r.site, r.region, r.laterality, r.eyelid))
        if key in seen:
            return "duplicate concept/site/region/laterality/eyelid key"
        seen.add(key)
        return None

    # -------------------------------------------------------------- lookups

    def concept(self, cid: str) -> ConceptRow:
        return self.concepts[cid]

    def _pick(
        self, cid: str, site: str | None, lat: str | None, eyelid: str | None
    ) -> tuple[IcdMapRow, bool, bool]:
        region = self.regions.get(site) if site else None
        rows = self.rows[cid]

        def fits(r: IcdMapRow) -> bool:
            return (
                (r.site is None or r.site == site)
                and (r.region is None or r.region == region)
                and (r.laterality is None or r.laterality == lat)
                and (r.eyelid is None or r.eyelid == eyelid)
            )

        best = max(
            (r for r in rows if fits(r)),
            key=lambda r: (
                r.site is not None,
                r.region is not None,
                r.laterality is not None,
                r.eyelid is not None,
            ),
        )
        scope = [r for r in rows if r.site == best.site and r.region == best.region]
        side_defaulted = (lat is None and any(r.laterality for r in scope)) or (
            eyelid is None and any(r.eyelid and (lat is None or r.laterality == lat) for r in scope)
        )
        site_defaulted = (
            best.site is None and best.region is None and any(r.site or r.region for r in rows)
        )
        return best, side_defaulted, site_defaulted

    def resolve(
        self,
        cid: str,
        site: str | None = None,
        laterality: str | None = None,
        eyelid: str | None = None,
    ) -> IcdResolution:
        """The one code for a concept at a site; ``bilateral`` needs resolve_sides()."""
        if laterality == "bilateral":
            raise ValueError("bilateral findings take one code per side: use resolve_sides()")
        row, side_d, site_d = self._pick(cid, site, laterality, eyelid)
        return IcdResolution(row.code, codeset.description(row.code), side_d, site_d)

    def resolve_sides(
        self,
        cid: str,
        site: str | None = None,
        laterality: str | None = None,
        eyelid: str | None = None,
    ) -> list[IcdResolution]:
        """Like resolve(), but a bilateral finding yields the bilateral code or both sides."""
        if laterality != "bilateral":
            return [self.resolve(cid, site, laterality, eyelid)]
        row, _, site_d = self._pick(cid, site, "bilateral", eyelid)
        if row.laterality == "bilateral":
            return [IcdResolution(row.code, codeset.description(row.code), False, site_d)]
        out: list[IcdResolution] = []
        for side in ("right", "left"):
            res = self.resolve(cid, site, side, eyelid)
            if res.code not in {r.code for r in out}:
                out.append(res)
        return out


@lru_cache(maxsize=8)
def load_tables(base: Path | None = None) -> IcdTables:
    return IcdTables(base)


def resolve(
    concept: str, site: str | None = None, laterality: str | None = None, eyelid: str | None = None
) -> IcdResolution:
    return load_tables().resolve(concept, site, laterality, eyelid)


def resolve_sides(
    concept: str, site: str | None = None, laterality: str | None = None, eyelid: str | None = None
) -> list[IcdResolution]:
    return load_tables().resolve_sides(concept, site, laterality, eyelid)


def concept(cid: str) -> ConceptRow:
    return load_tables().concept(cid)


def history_code(cid: str) -> str | None:
    return load_tables().concept(cid).history_code


def family_history_code(cid: str) -> str | None:
    return load_tables().concept(cid).family_history_code


# ------------------------------------------------------------------ note rules

BIOPSY_KINDS = {"biopsy", "nail_biopsy"}
# Procedures that take tissue whose histology is unknown until pathology (§13.5).
TISSUE_KINDS = BIOPSY_KINDS | {"excision", "shave", "shave_removal", "removal", "mohs"}
# Procedures that serve another procedure's lesion (closure, photos): no diagnosis of their own.
ADJUNCT_KINDS = {"repair", "flap", "photography"}
ASSESSING_SOURCES = {"assessment", "procedure", "pathology"}
UNSPECIFIED_BEHAVIOR = "D49.2"
CATCHALL_FALLBACK = "L98.9"
_PATH_PROVEN = re.compile(
    r"\b(bx|biopsy|path|pathology|histo\w*)[- ]?(proven|proved|confirmed)\b", re.IGNORECASE
)
_CLASS_RANK = {"malignant": 0, "in_situ": 1, "premalignant": 2}
_SOURCE_CONFIDENCE = {
    "pathology": 0.95,
    "assessment": 0.9,
    "procedure": 0.9,
    "exam": 0.8,
    "history": 0.75,
    "other": 0.75,
}


@dataclass
class _Hit:
    code: str
    confidence: float
    evidence: list[Evidence]
    rank: int  # 0 procedure/pathology, 1 other active, 2 history, 3 family
    concept: str | None = None
    region: str | None = None
    side_defaulted: bool = False
    site_defaulted: bool = False
    from_procedure: bool = False
    order: tuple[int, int] = (0, 0)


def _is_biopsy(p: ProcedureFact) -> bool:
    return p.kind in BIOPSY_KINDS or p.intent == "diagnostic"


def _is_pathology(d: DiagnosisFact) -> bool:
    return d.source == "pathology" or bool(_PATH_PROVEN.search(d.text))


class _NoteCoder:
    """One note's worth of §13 decisions; a class only to share the lookups between steps."""

    def __init__(self, facts: NoteFacts, t: IcdTables) -> None:
        self.f, self.t = facts, t
        self.dx = facts.diagnoses
        self.known = [d.concept in t.concepts for d in self.dx]
        for d, ok in zip(self.dx, self.known, strict=True):
            if not ok:
                log.debug("no ICD-10-CM concept row for %r", d.concept)
        self.performed = [k for k, p in enumerate(facts.procedures) if p.status == "performed"]
        self.linked: dict[int, list[int]] = {}
        for k in self.performed:
            for j in facts.procedures[k].diagnoses:
                if 0 <= j < len(self.dx) and self.known[j]:
                    self.linked.setdefault(j, []).append(k)
        self.parent = list(range(len(self.dx)))
        self._group_lesions()
        self.path_groups = {
            self._find(i)
            for i, d in enumerate(self.dx)
            if self.known[i] and self.status(i) == "active" and _is_pathology(d)
        }
        self.hits: list[_Hit] = []

    # -------------------------------------------------------------- lesion grouping

    def _find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a: int, b: int) -> None:
        self.parent[self._find(a)] = self._find(b)

    def _group_lesions(self) -> None:
        by_no: dict[int, int] = {}
        for i, d in enumerate(self.dx):
            if d.lesion_no is not None:
                if d.lesion_no in by_no:
                    self._union(i, by_no[d.lesion_no])
                by_no.setdefault(d.lesion_no, i)
        for k in self.performed:
            p = self.f.procedures[k]
            ids = [
                j
                for j in p.diagnoses
                if 0 <= j < len(self.dx) and self.dx[j].lesion_no in (None, p.lesion_no)
            ]
            for a, b in zip(ids, ids[1:], strict=False):
                self._union(a, b)

    def status(self, i: int) -> str:
        """History mentions tied to a procedure done today are current disease (§13.4)."""
        st = self.dx[i].status
        return "active" if st == "history" and i in self.linked else st

    def _overridden(self, i: int) -> bool:
        return not _is_pathology(self.dx[i]) and self._find(i) in self.path_groups

    # -------------------------------------------------------------- hits

    def _fact_hits(
        self, i: int, rank: int, p: ProcedureFact | None = None, from_procedure: bool = False
    ) -> list[_Hit]:
        d = self.dx[i]
        site = d.site or (p.site if p else None)
        lat = d.laterality or (p.laterality if p else None)
        eyelid = d.eyelid or (p.eyelid if p else None)
        conf = (
            _SOURCE_CONFIDENCE[d.source]
            if not from_procedure
            else max(_SOURCE_CONFIDENCE[d.source], 0.85)
        )
        if self.t.concepts[d.concept].catchall:
            conf = min(conf, 0.6)
        out = []
        for res in self.t.resolve_sides(d.concept, site, lat, eyelid):
            c = conf - 0.15 * res.side_defaulted - 0.15 * res.site_defaulted
            ev = list(d.evidence) or (list(p.evidence) if p else [])
            out.append(
                _Hit(
                    res.code,
                    round(max(c, 0.3), 2),
                    ev,
                    rank,
                    d.concept,
                    self.t.regions.get(site) if site else None,
                    res.side_defaulted,
                    res.site_defaulted,
                    from_procedure,
                    (rank, i),
                )
            )
        return out

    def _fixed(self, code: str, conf: float, ev: list[Evidence], k: int) -> _Hit:
        return _Hit(code, conf, list(ev), 0, from_procedure=True, order=(0, k))

    def _sort_key(self, j: int) -> tuple[int, int, int]:
        c = self.t.concepts[self.dx[j].concept]
        return (
            0 if _is_pathology(self.dx[j]) else 1,
            int(c.catchall),
            _CLASS_RANK.get(c.cpt_class, 3),
        )

    def code_procedure(self, k: int) -> tuple[list[_Hit], bool]:
        """Codes for one performed procedure's lesion, and whether only catch-alls support it."""
        p = self.f.procedures[k]
        ids = [
            j
            for j in dict.fromkeys(p.diagnoses)
            if 0 <= j < len(self.dx) and self.known[j] and self.status(j) == "active"
        ]
        groups = {self._find(j) for j in ids}
        path = [
            j
            for j in range(len(self.dx))
            if self._find(j) in groups
            and self.known[j]
            and self.status(j) == "active"
            and _is_pathology(self.dx[j])
        ]
        ev = list(p.evidence)
        if path:
            return [
                h for j in sorted(path, key=self._sort_key) for h in self._fact_hits(j, 0, p, True)
            ], False
        concepts = self.t.concepts
        uncertain = [j for j in ids if self.dx[j].uncertain]
        certain = [j for j in ids if not self.dx[j].uncertain]
        specific = [j for j in certain if not concepts[self.dx[j].concept].catchall]
        tissue = p.kind in TISSUE_KINDS or _is_biopsy(p)
        hits: list[_Hit] = []
        if tissue and any(concepts[self.dx[j].concept].discrete_lesion for j in uncertain):
            # §13.5: a sampled lesion whose behaviour is in doubt is D49.2 until pathology.
            hits.append(self._fixed(UNSPECIFIED_BEHAVIOR, 0.85, ev, k))
            specific = [j for j in specific if not concepts[self.dx[j].concept].discrete_lesion]
            return hits + [
                h
                for j in sorted(specific, key=self._sort_key)
                for h in self._fact_hits(j, 0, p, True)
            ], False
        if specific:
            return [
                h
                for j in sorted(specific, key=self._sort_key)
                for h in self._fact_hits(j, 0, p, True)
            ], False
        if tissue and uncertain:
            return [self._fixed("R21", 0.7, ev, k)], False
        catchalls = [j for j in certain if concepts[self.dx[j].concept].catchall]
        if catchalls:
            if tissue and any(concepts[self.dx[j].concept].discrete_lesion for j in catchalls):
                return [self._fixed(UNSPECIFIED_BEHAVIOR, 0.8, ev, k)], not _is_biopsy(p)
            return [h for j in catchalls for h in self._fact_hits(j, 0, p, True)], not _is_biopsy(p)
        if _is_biopsy(p):
            return [self._fixed(UNSPECIFIED_BEHAVIOR, 0.6, ev, k)], False
        return [self._fixed(CATCHALL_FALLBACK, 0.5, ev, k)], True

    def _adjunct_pointer(self, k: int, pointers: dict[int, list[str]]) -> list[str]:
        p = self.f.procedures[k]
        for k2 in self.performed:
            q = self.f.procedures[k2]
            if (
                k2 in pointers
                and q.kind not in ADJUNCT_KINDS
                and (
                    (p.lesion_no is not None and q.lesion_no == p.lesion_no)
                    or (p.lesion_no is None and p.site is not None and q.site == p.site)
                )
            ):
                return pointers[k2]
        earlier = [k2 for k2 in pointers if k2 < k]
        return pointers[max(earlier)] if earlier else []

    def run(self) -> IcdOutcome:
        pointers: dict[int, list[str]] = {}
        unspecified: list[int] = []
        for k in self.performed:
            p = self.f.procedures[k]
            if p.kind in ADJUNCT_KINDS:
                continue  # a repair or flap is coded for the lesion of its excision/Mohs
            hits, only_catchall = self.code_procedure(k)
            self.hits.extend(hits)
            pointers[k] = list(dict.fromkeys(h.code for h in hits))
            if only_catchall:
                unspecified.append(k)
        for k in self.performed:
            if k not in pointers:
                pointers[k] = self._adjunct_pointer(k, pointers)
        self._code_unlinked()
        return self._outcome(pointers, unspecified)

    def _code_unlinked(self) -> None:
        has_assessment = any(d.source in ASSESSING_SOURCES for d in self.dx)
        named = {
            self.dx[i].concept
            for i in range(len(self.dx))
            if self.known[i]
            and self.status(i) == "active"
            and not self.dx[i].uncertain
            and (self.dx[i].source in ASSESSING_SOURCES or i in self.linked)
        }
        proc_sites = {
            (p.site, p.laterality) for k in self.performed for p in [self.f.procedures[k]]
        }
        for i, d in enumerate(self.dx):
            if not self.known[i] or i in self.linked:
                continue
            st, c = self.status(i), self.t.concepts[d.concept]
            if st == "family" and c.family_history_code:
                self.hits.append(self._z_hit(c.family_history_code, d, 3, i, 0.8))
            elif st == "history" and c.history_code:
                self.hits.append(self._z_hit(c.history_code, d, 2, i, 0.85))
            elif st == "active" and not d.uncertain and not self._overridden(i):
                if c.catchall and any(
                    self.known[j] and self.status(j) == "active"
                    and not self.t.concepts[self.dx[j].concept].catchall
                    for j in range(len(self.dx))
                ):
                    continue  # §13.6: a catch-all only when nothing specific is documented
                if d.source not in ASSESSING_SOURCES and has_assessment and d.concept not in named:
                    continue  # §13.1: exam/history findings only when the assessment names them
                if (
                    c.catchall
                    and c.discrete_lesion
                    and self.performed
                    and (d.site is None or (d.site, d.laterality) in proc_sites)
                ):
                    continue  # the same lesion is coded through its procedure
                self.hits.extend(self._fact_hits(i, 1))

    @staticmethod
    def _z_hit(code: str, d: DiagnosisFact, rank: int, i: int, conf: float) -> _Hit:
        return _Hit(code, conf, list(d.evidence), rank, order=(rank, i))

    def _outcome(self, pointers: dict[int, list[str]], unspecified: list[int]) -> IcdOutcome:
        hits = self.hits
        keep: list[_Hit] = []
        for h in hits:
            if not h.from_procedure and h.concept and (h.site_defaulted or h.side_defaulted):
                better = [
                    o
                    for o in hits
                    if o is not h
                    and o.concept == h.concept
                    and (
                        (h.site_defaulted and not o.site_defaulted)
                        or (h.side_defaulted and not o.side_defaulted and o.region == h.region)
                    )
                ]
                if better:
                    better[0].evidence.extend(e for e in h.evidence if e not in better[0].evidence)
                    continue
            keep.append(h)
        # A catch-all beside a real diagnosis in the same region adds nothing a coder keeps.
        concepts = self.t.concepts
        specific_regions = {
            h.region for h in keep if h.region and h.concept and not concepts[h.concept].catchall
        }
        keep = [
            h
            for h in keep
            if h.from_procedure
            or h.concept is None
            or not concepts[h.concept].catchall
            or h.region not in specific_regions
        ]
        # NOS beside its specific form ("cyst" and "epidermoid cyst"), and signs or symptoms
        # beside a definitive diagnosis (pruritus of the eczema), are not coded (§13.1, §13.6)
        refined = {
            id(h)
            for h in keep
            for o in keep
            if h.concept and o.concept in set(concepts[h.concept].refined_by)
            and (h.region == o.region or None in (h.region, o.region))
        }
        has_specific = any(
            h.concept and not concepts[h.concept].catchall
            and concepts[h.concept].cpt_class != "symptom"
            for h in keep
        )
        keep = [
            h
            for h in keep
            if h.concept is None
            or id(h) not in refined
            and not (concepts[h.concept].cpt_class == "symptom" and has_specific
                     and not h.from_procedure)
        ]
        lines: dict[str, Icd10Line] = {}
        lat_missing: list[Evidence] = []
        for h in sorted(keep, key=lambda h: h.order):
            line = lines.get(h.code)
            if line is None:
                lines[h.code] = Icd10Line(
                    code=h.code,
                    description=codeset.description(h.code),
                    confidence=h.confidence,
                    evidence=[],
                )
                line = lines[h.code]
            line.confidence = max(line.confidence, h.confidence)
            line.evidence.extend(e for e in h.evidence if e not in line.evidence)
            if h.side_defaulted:
                lat_missing.extend(e for e in h.evidence if e not in lat_missing)
        return IcdOutcome(
            lines=list(lines.values()),
            pointers=pointers,
            laterality_missing=lat_missing,
            unspecified=unspecified,
        )


def code_note(facts: NoteFacts, tables: IcdTables | None = None) -> IcdOutcome:
    """The note's ICD-10-CM lines and each performed procedure's diagnosis pointers (§13)."""
    return _NoteCoder(facts, tables or load_tables()).run()
