"""Row models and loaders of the CPT tables under ``patterns/coding/``.

- ``cpt_codes.jsonl``: one row per code: family, our plain label (never AMA text), site
  group, the band of the measure that selects it, add-on parent, units rule, CMS global
  days and RVU (PFS 2023A, non-facility total, used only to order lines).
- ``cpt_routes.jsonl``: procedure kind (+ diagnosis class/concept, method) -> family.
- ``bundling.jsonl``: CODING_CONVENTIONS §12 as rows.
- ``modifiers.jsonl``: anatomic modifiers by site, side, eyelid and digit (§11.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import translate
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from extractor.coding.codeset import check_table
from extractor.errors import PatternFileError
from extractor.patterns import load_family, patterns_dir
from extractor.schemas import SiteRow

CODES_FILE = "coding/cpt_codes.jsonl"
ROUTES_FILE = "coding/cpt_routes.jsonl"
BUNDLING_FILE = "coding/bundling.jsonl"
MODIFIERS_FILE = "coding/modifiers.jsonl"
SITES_FILE = "coding/sites.jsonl"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


UnitsRule = Literal[
    "one", "per_lesion", "additional", "per_5cm_over_7_5", "per_10_over_15", "drug"
]


class CptCodeRow(_Row):
    code: str
    family: str
    label: str
    group: str | None = None
    measure: Literal["size", "length", "area", "count"] | None = None
    lo: float | None = None
    hi: float | None = None
    addon_of: str | None = None
    units: UnitsRule = "one"
    anatomic: bool = False
    emit: bool = True
    global_days: str | None = None
    rvu: float = 0.0
    mult_proc: str | None = None
    comment: str | None = None

    def fits(self, value: float) -> bool:
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)


class RouteRow(_Row):
    id: str
    kind: str
    cpt_class: str | None = None
    concept: str | None = None
    method: str | None = None
    family: str
    comment: str | None = None

    def specificity(self) -> int:
        return 4 * (self.concept is not None) + 2 * (self.cpt_class is not None) + (
            self.method is not None
        )


@cache
def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One compiled regex per row's glob list (fnmatch recompiled per call was a hot spot)."""
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


class BundlingRow(_Row):
    id: str
    comprehensive: list[str]
    component: list[str]
    same_lesion: Literal["drop", "modifier", "report"]
    different_lesion: Literal["drop", "modifier", "report"]
    comment: str | None = None

    @staticmethod
    def _hit(patterns: list[str], code: str, family: str) -> bool:
        rx = _glob_regex(tuple(patterns))
        return bool(rx.match(code) or rx.match(family))

    def is_comprehensive(self, code: str, family: str) -> bool:
        return self._hit(self.comprehensive, code, family)

    def is_component(self, code: str, family: str) -> bool:
        return self._hit(self.component, code, family)


class ModifierRow(_Row):
    id: str
    site: Literal["eyelid", "finger", "toe"]
    laterality: Literal["left", "right"]
    eyelid: Literal["upper", "lower"] | None = None
    digit: int | None = None
    modifier: str
    label: str
    comment: str | None = None


@dataclass(frozen=True)
class CptTables:
    codes: dict[str, CptCodeRow]
    routes: tuple[RouteRow, ...]
    bundling: tuple[BundlingRow, ...]
    modifiers: tuple[ModifierRow, ...]
    sites: dict[str, SiteRow]

    @property
    def emittable(self) -> frozenset[str]:
        return frozenset(c for c, r in self.codes.items() if r.emit)

    def family_rows(self, family: str, group: str | None = None) -> list[CptCodeRow]:
        return [
            r
            for r in self.codes.values()
            if r.family == family and (group is None or r.group == group)
        ]

    def band(self, family: str, group: str | None, value: float) -> CptCodeRow:
        """The base (non-add-on) code of a family/group whose band holds ``value``."""
        rows = [r for r in self.family_rows(family, group) if r.addon_of is None]
        for r in rows:
            if r.fits(value):
                return r
        return min(rows, key=lambda r: r.lo or 0.0)

    def lowest(self, family: str, group: str | None) -> CptCodeRow:
        rows = [r for r in self.family_rows(family, group) if r.addon_of is None]
        return min(rows, key=lambda r: (r.lo or 0.0, r.rvu))

    def addon(self, parent: str) -> CptCodeRow:
        return next(r for r in self.codes.values() if r.addon_of == parent)

    def route(self, kind: str, method: str | None, classes: list[str], concepts: list[str]):
        best: RouteRow | None = None
        for r in self.routes:
            if r.kind != kind:
                continue
            if r.method is not None and r.method != method:
                continue
            if r.cpt_class is not None and r.cpt_class not in classes:
                continue
            if r.concept is not None and r.concept not in concepts:
                continue
            if best is None or r.specificity() > best.specificity():
                best = r
            elif r.specificity() == best.specificity() and r.cpt_class and best.cpt_class:
                # several linked classes: the first (most relevant) linked class wins
                if classes.index(r.cpt_class) < classes.index(best.cpt_class):
                    best = r
        return best

    def anatomic_modifier(
        self, site: str | None, laterality: str | None, eyelid: str | None, digit: int | None
    ) -> str | None:
        for m in self.modifiers:
            if m.site == site and m.laterality == laterality and m.eyelid == eyelid and (
                m.digit == digit
            ):
                return m.modifier
        return None


def load_tables(base: Path | None = None) -> CptTables:
    root = base or patterns_dir()
    check_table(CODES_FILE, CptCodeRow, base=root)
    codes: dict[str, CptCodeRow] = {}
    for r in load_family(CODES_FILE, CptCodeRow, base=root):
        if r.code in codes:
            raise PatternFileError(str(root / CODES_FILE), 0, f"duplicate code {r.code}", "code")
        codes[r.code] = r
    for r in codes.values():
        if r.addon_of and r.addon_of not in codes:
            raise PatternFileError(
                str(root / CODES_FILE), 0, f"{r.code}: add-on parent {r.addon_of} not listed"
            )
    return CptTables(
        codes=codes,
        routes=tuple(load_family(ROUTES_FILE, RouteRow, base=root)),
        bundling=tuple(load_family(BUNDLING_FILE, BundlingRow, base=root)),
        modifiers=tuple(load_family(MODIFIERS_FILE, ModifierRow, base=root)),
        sites={s.id: s for s in load_family(SITES_FILE, SiteRow, base=root)},
    )


@lru_cache(maxsize=1)
def tables() -> CptTables:
    return load_tables()
