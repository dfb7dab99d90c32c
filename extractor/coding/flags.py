"""Documentation flags for CDI teams (CONTRACT.md flag ids, CODING_CONVENTIONS §1.4, §15).

Every flag is a row of ``patterns/coding/flags.jsonl`` (id, severity, trigger, message
and query templates); this module only knows how to *detect* each trigger and fill
the templates. Wording therefore lives with the data, where a CDI lead can review it
without reading Python, and a new flag that reuses a trigger needs no code.

Two principles shape the detectors:

* **Precision over recall.** A flag sends a query to a physician; one that cries wolf
  costs trust in all the others. When the CPT engine reports a conservative default
  (``CptOutcome.defaults``) the default is only a *candidate*: it is cross-checked
  against the facts and the note text (a sibling mention of the same procedure that
  does carry the size, a pathology addendum, a margin written in the procedure
  sentence) before it becomes a flag. When the CPT engine gives nothing, the same
  candidates are derived from the facts directly.
* **Queries follow the AHIMA/ACDIS query practice brief.** They quote the note's own
  words, ask an open or multiple-choice question whose options include "other" and
  "clinically undetermined", never lead to a particular answer and never mention
  payment, codes or reimbursement. Quoted text that itself talks about payment
  ("self-pay") is cut out of the quote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from extractor.components.measurements import WORD_NUMBERS
from extractor.patterns import cached_family
from extractor.schemas import (
    CptOutcome,
    Dermoscopy,
    DiagnosisFact,
    Evidence,
    Flag,
    NoteFacts,
    ProcedureFact,
    SiteRow,
    TargetRule,
)

Trigger = Literal[
    "dermoscopy_without_findings",
    "dermoscopy_not_linked",
    "procedure_gap",
    "laterality",
    "cosmetic",
    "count_mismatch",
]
Element = Literal[
    "technique", "size", "margins", "site", "laterality", "count", "histology", "diagnosis"
]


class FlagRow(BaseModel):
    """One flag: what raises it and the words a physician reads."""

    model_config = ConfigDict(extra="forbid")

    id: str
    severity: Literal["info", "warning", "error"]
    trigger: Trigger
    #: for ``procedure_gap``: the missing elements (CptOutcome.defaults vocabulary)
    elements: list[Element] = []
    #: procedure kinds the row applies to (None = every kind)
    kinds: list[str] | None = None
    message: str
    query: str
    comment: str | None = None


@lru_cache(maxsize=1)
def flag_rows() -> tuple[FlagRow, ...]:
    """The flag table, validated once (a bad row fails with file:line at start-up)."""
    return cached_family("coding/flags.jsonl", FlagRow)


@lru_cache(maxsize=1)
def _site_words() -> re.Pattern[str]:
    """Every literal of the site vocabulary, to tell "no site anywhere in the note" apart
    from "a site the extraction did not tie to this procedure"."""
    rows = cached_family("entities/sites.jsonl", TargetRule)
    words = sorted({r.literal.lower() for r in rows if r.pattern is None}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.I)


@lru_cache(maxsize=1)
def _sites() -> dict[str, SiteRow]:
    return {r.id: r for r in cached_family("coding/sites.jsonl", SiteRow)}


# --------------------------------------------------------------------------- text helpers

_PAYMENT = re.compile(
    r"self[- ]?pay|out[- ]of[- ]pocket|cash|insur\w*|cover(?:ed|age)?\b|bill\w*|reimburs\w*|"
    r"payment|pay\b|paid|charge\w*|fee\b|cpt|icd|\bcode[sd]?\b|modifier|claim",
    re.I,
)
# number words as the measurement stage reads them (one table for the whole project)
_ROMAN = {"i", "ii", "iii", "iv", "v", "vi"}
_NUM_WORDS = {w: n for w, n in WORD_NUMBERS.items() if w.isalpha() and w not in _ROMAN and n <= 20}
_PLANNED_OR_PAST = re.compile(
    r"\b(?:will|would|plan(?:ned|s)?|next (?:visit|time)|at (?:the )?next|repeat|schedul\w*|"
    r"consider|if (?:it|they|any)|previous(?:ly)?|prior|last (?:visit|year)|in 20\d\d|"
    r"on \d{1,2}/\d{2,4}|at (?:the|her|his) (?:last|previous))\b",
    re.I,
)
_MANAGEMENT = re.compile(
    r"\b(?:benign|reassur\w*|no (?:further )?(?:treatment|tx|intervention)|monitor\w*|"
    r"recheck|re-check|follow(?:[- ]up)?|f/u|rtc|return|observ\w*|photo\w*|watch|"
    r"excis\w*|bx|biops\w*|shave[ds]?|punch|saucer\w*|cryo\w*|ln2|curett\w*|ed&c|"
    r"destroy\w*|destruction|remov\w*|refer\w*|mohs|re-?image|imaging)\b",
    re.I,
)


def _valid(text: str, evs: Iterable[Evidence]) -> list[Evidence]:
    """Evidence that slices the note exactly; anything else is dropped, never repaired."""
    out: list[Evidence] = []
    for e in evs:
        if 0 <= e.start < e.end <= len(text) and text[e.start : e.end] == e.text and e not in out:
            out.append(e)
    return out


def _line_span(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, (len(text) if end < 0 else end)


def _sentence_span(text: str, start: int, end: int | None = None) -> tuple[int, int]:
    """The sentence around a span: bounded by a line break or a full stop that ends a word."""
    end = start if end is None else end
    ls, le = _line_span(text, start)
    s = ls
    for m in re.finditer(r"(?<![A-Z0-9a-z][./])(?<!\b[A-Za-z])[.;!?](?=\s)", text[ls:start]):
        s = ls + m.end()
    m = re.search(r"(?<!\b[A-Za-z])[.;!?](?=\s|$)", text[end:le])
    e = end + m.end() if m else le
    return s, max(e, end)


def quote(text: str, ev: Evidence | None, limit: int = 180) -> str:
    """The note's own words around ``ev``, trimmed, with any talk of payment cut out."""
    if ev is None:
        return ""
    s, e = _sentence_span(text, ev.start, ev.end)
    sent = " ".join(text[s:e].split()).strip(" -:,;.")
    if _PAYMENT.search(sent):
        parts = [p.strip() for p in re.split(r"[,;.]", sent) if p.strip()]
        sent = ", ".join(p for p in parts if not _PAYMENT.search(p))
    if len(sent) > limit:
        cut = sent[:limit].rsplit(" ", 1)[0]
        sent = cut + " …"
    return sent or " ".join(ev.text.split())


def _where(p: ProcedureFact | DiagnosisFact) -> str:
    if not p.site:
        return ""
    side = {"left": "left ", "right": "right ", "bilateral": "bilateral "}.get(
        p.laterality or "", ""
    )
    lid = f"{p.eyelid} " if p.eyelid else ""
    return f"{side}{lid}{p.site.replace('_', ' ')}"


_PROC_WORDS = {
    "biopsy": "biopsy",
    "excision": "excision",
    "shave_removal": "shave removal",
    "destruction": "destruction",
    "repair": "repair",
    "mohs": "Mohs surgery",
    "injection": "intralesional injection",
    "tag_removal": "skin tag removal",
    "incision_drainage": "incision and drainage",
    "nail_avulsion": "nail avulsion",
    "nail_matrixectomy": "nail matrixectomy",
    "nail_debridement": "nail debridement",
    "nail_biopsy": "nail biopsy",
    "vascular_laser": "laser treatment",
    "removal": "removal",
}


def _proc_word(p: ProcedureFact) -> str:
    if p.kind == "destruction" and p.method == "cryo":
        return "cryotherapy"
    return _PROC_WORDS.get(p.kind, p.kind.replace("_", " "))


class _SafeDict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: str, values: dict[str, str]) -> str:
    out = template.format_map(_SafeDict(values))
    out = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"[ \t]{2,}", " ", out))
    return out.replace("“”", "").strip()


# --------------------------------------------------------------------------- the note


@dataclass
class Hit:
    """One occurrence of a trigger: the spans to show and the words for the templates."""

    evidence: list[Evidence]
    values: dict[str, str] = field(default_factory=dict)
    key: Any = None


@dataclass
class Note:
    """A note with everything the triggers read, and the cross-checked procedure gaps."""

    text: str
    facts: NoteFacts
    icd: Any
    cpt_out: CptOutcome
    derm: Dermoscopy
    gaps: dict[tuple[int, str], ProcedureFact] = field(default_factory=dict)

    # ------------------------------------------------------------ procedure relations
    def siblings(self, i: int, same_kind: bool = True, any_status: bool = False) -> list[int]:
        """Other procedure mentions that describe the same procedure (the extraction often
        splits one procedure over several sentences): same kind, compatible site and side."""
        p = self.facts.procedures[i]
        out = []
        for j, q in enumerate(self.facts.procedures):
            if j == i or (same_kind and q.kind != p.kind):
                continue
            if not any_status and q.status != "performed":
                continue
            if p.site and q.site and p.site != q.site:
                continue
            if p.laterality and q.laterality and p.laterality != q.laterality:
                continue
            out.append(j)
        return out

    def dxs(self, p: ProcedureFact) -> list[DiagnosisFact]:
        return [
            self.facts.diagnoses[j]
            for j in p.diagnoses
            if 0 <= j < len(self.facts.diagnoses) and self.facts.diagnoses[j].status == "active"
        ]

    def sentences_of(self, i: int) -> list[tuple[int, int]]:
        p = self.facts.procedures[i]
        return list(
            dict.fromkeys(
                _sentence_span(self.text, e.start, e.end) for e in _valid(self.text, p.evidence)
            )
        )

    def said_near(self, i: int, pattern: re.Pattern[str], siblings: bool = True) -> bool:
        idx = [i] + (self.siblings(i) if siblings else [])
        return any(pattern.search(self.text[s:e]) for j in idx for s, e in self.sentences_of(j))

    def any_current_site(self) -> bool:
        """Any site on a current fact: the note names where things are, somewhere."""
        return any(
            x.site and x.status in ("active", "performed", "planned", "mentioned")
            for x in [*self.facts.diagnoses, *self.facts.procedures]
        )

    def specific_dx_fits(self, p: ProcedureFact) -> bool:
        classes = _dx_fit().get(p.kind)
        for d in self.facts.diagnoses:
            row = _concepts().get(d.concept)
            if (
                row is None
                or row.catchall
                or d.status != "active"
                or d.uncertain
                or d.source not in ("assessment", "procedure", "pathology")
            ):
                continue
            if classes is None or row.cpt_class in classes:
                if not p.site or not d.site or d.site == p.site:
                    return True
        return False

    def measured_in_text(self, i: int, pattern: re.Pattern[str] | None = None) -> bool:
        """A lesion measurement (or ``pattern``) on a line that names this procedure or its
        lesion: the extraction did not tie it, but the physician did write it."""
        pattern = pattern or _LESION_SIZE
        p = self.facts.procedures[i]
        spans = _valid(self.text, p.evidence)
        for j in p.diagnoses:
            if 0 <= j < len(self.facts.diagnoses):
                spans += _valid(self.text, self.facts.diagnoses[j].evidence)
        if p.site:
            for x in [*self.facts.diagnoses, *self.facts.procedures]:
                if x.site == p.site and (not p.laterality or x.laterality in (None, p.laterality)):
                    spans += _valid(self.text, x.evidence)
        lines = {_line_span(self.text, e.start) for e in spans}
        site_texts = {
            e.text.lower()
            for x in [
                p,
                *(
                    self.facts.diagnoses[j]
                    for j in p.diagnoses
                    if 0 <= j < len(self.facts.diagnoses)
                ),
            ]
            for e in x.evidence[1:]
            if _site_words().fullmatch(e.text)
        }
        for m in re.finditer(r"[^\n]+", self.text):
            if any(w in m.group(0).lower() for w in site_texts):
                lines.add((m.start(), m.end()))
        return any(pattern.search(self.text[a:b]) for a, b in lines)

    def has_pathology(self, i: int) -> bool:
        """A pathology result in the note (an addendum), or "biopsy-proven" said of this
        procedure's lesion (not "prior biopsy declined", not another lesion's)."""
        if any(
            d.source == "pathology" and d.status == "active" and not d.uncertain
            for d in self.facts.diagnoses
        ):
            return True
        lines = {
            _line_span(self.text, e.start)
            for e in _valid(self.text, self.facts.procedures[i].evidence)
        }
        for d in self.dxs(self.facts.procedures[i]):
            lines |= {_line_span(self.text, e.start) for e in _valid(self.text, d.evidence)}
        for c in _valid(self.text, self.facts.cues.get("path_proven", [])):
            if re.match(
                r"\W*(?:declined|deferred|not\b|refused)", self.text[c.end : c.end + 20], re.I
            ):
                continue
            if _line_span(self.text, c.start) in lines:
                return True
        return False


# --------------------------------------------------------------------------- procedure gaps

_TECHNIQUES = ("tangential", "punch", "incisional")
_TECHNIQUE_WORDS = re.compile(
    r"\b(?:shave|saucer\w*|tangential|punch|incisional|excisional|scoop|deep shave|snip)\b", re.I
)
_MARGIN_WORDS = re.compile(
    r"\d\s*(?:mm|cm)\s+(?:\w+\s+){0,2}margins?|margins?\s+(?:of\s+)?\d|excised diameter|"
    r"total (?:excised )?diameter|defect (?:size|diameter)",
    re.I,
)
_REPAIR_LENGTH = re.compile(r"(?:length|long|repair(?:ed)?)\b[^.\n]{0,25}?\d+(?:\.\d+)?\s*cm", re.I)
_LESION_SIZE = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:x\s*\d+(?:\.\d+)?\s*)?(?:mm|cm)\b"
    r"(?!\s*(?:\w+\s+){0,2}margins?)(?!\s*(?:punch|long|length|in length|rim|curette|ellipse))",
    re.I,
)
_COUNT_WORDS = re.compile(
    r"(?:\ball\s+(?:\d+|" + "|".join(_NUM_WORDS) + r")\b|[x×]\s*\d+\b|\b\d+\s+(?:lesions?|aks?|"
    r"warts?|tags?|papules?|sks?|keratoses)\b)",
    re.I,
)
_VAGUE_QUANTITY = re.compile(
    r"\b(?:several|multiple|a few|few|some|numerous|scattered|various|many|all)\b", re.I
)
_SIZE_KINDS = {"excision", "shave_removal", "destruction", "repair"}
_COUNT_KINDS = {"destruction", "tag_removal", "nail_debridement"}
_DX_EXEMPT = {"biopsy", "nail_biopsy", "repair", "flap", "mohs", "photography"}


@lru_cache(maxsize=1)
def _dx_fit() -> dict[str, list[str]]:
    from extractor.schemas import ProcedureDxFit

    return {
        r.kind: r.classes for r in cached_family("coding/procedure_dx_fit.jsonl", ProcedureDxFit)
    }


def _concepts() -> dict[str, Any]:
    from extractor.coding import icd10

    return icd10.load_tables().concepts


def _is_catchall(d: DiagnosisFact) -> bool:
    row = _concepts().get(d.concept)
    return bool(row and row.catchall)


def _is_malignant(d: DiagnosisFact) -> bool:
    row = _concepts().get(d.concept)
    return bool(row and row.cpt_class in ("malignant", "in_situ"))


def _facts_defaults(note: Note) -> list[tuple[int, str]]:
    """The conservative defaults the CPT engine would apply, derived from the facts
    (used while the CPT engine gives none)."""
    out: list[tuple[int, str]] = []
    for i, p in enumerate(note.facts.procedures):
        if p.status != "performed":
            continue
        dxs = note.dxs(p)
        if p.kind == "biopsy" and p.method not in _TECHNIQUES:
            out.append((i, "technique"))
        if p.site is None and p.kind not in ("repair", "flap"):
            out.append((i, "site"))
        malignant = any(_is_malignant(d) for d in dxs)
        if p.kind in ("excision", "shave_removal") or (p.kind == "destruction" and malignant):
            if p.size_cm is None and p.excised_cm is None:
                out.append((i, "size"))
            elif p.kind == "excision" and p.excised_cm is None and p.margin_cm is None:
                out.append((i, "margins"))
        if p.kind == "repair" and p.length_cm is None:
            out.append((i, "size"))
        if p.kind in _COUNT_KINDS and not malignant and p.count is None:
            out.append((i, "count"))
        row = _sites().get(p.site or "")
        if row and row.paired and p.laterality is None and p.site in ("eyelid", "finger", "toe"):
            out.append((i, "laterality"))
        if p.kind == "excision" and not malignant:
            out.append((i, "histology"))
        if dxs and all(_is_catchall(d) for d in dxs) and p.kind not in _DX_EXEMPT:
            out.append((i, "diagnosis"))
    return out


def _cross_check(note: Note, i: int, element: str) -> str | None:
    """Keep a default only when the note really lacks the element; may re-label a size
    default as a margins gap when the size is documented on another mention."""
    f = note.facts
    p = f.procedures[i]
    sib = note.siblings(i)
    if element == "technique":
        if p.kind != "biopsy" or any(f.procedures[j].method in _TECHNIQUES for j in sib):
            return None
        return None if note.said_near(i, _TECHNIQUE_WORDS, siblings=True) else element
    if element == "size":
        if p.kind not in _SIZE_KINDS:
            return None
        if p.kind == "destruction" and not any(_is_malignant(d) for d in note.dxs(p)):
            return None
        if p.kind == "repair":
            if p.method not in ("intermediate", "complex"):
                return None  # a simple closure is part of the excision (§5, §12)
            if any(
                q.kind in ("excision", "mohs")
                and (i, "size") != (j, "size")
                and (j, "size") in note.cpt_out.defaults
                for j, q in enumerate(f.procedures)
                if j in note.siblings(i, same_kind=False)
            ):
                return None  # the excision's own gap is the one to query
            if any(f.procedures[j].length_cm for j in sib) or note.said_near(i, _REPAIR_LENGTH):
                return None
            return element
        same_site = note.siblings(i, same_kind=False, any_status=True) if p.site else sib
        sized = [j for j in same_site if f.procedures[j].size_cm or f.procedures[j].excised_cm]
        if not sized and not note.measured_in_text(i):
            return element
        if p.kind != "excision":
            return None
        return _cross_check(note, i, "margins")
    if element == "margins":
        if p.kind != "excision" or p.excised_cm is not None:
            return None
        if any(f.procedures[j].margin_cm or f.procedures[j].excised_cm for j in sib):
            return None
        if note.said_near(i, _MARGIN_WORDS) or note.measured_in_text(i, _MARGIN_WORDS):
            return None
        return element
    if element == "site":
        if note.any_current_site() or _site_words().search(note.text):
            return None  # the site is somewhere in the note, only not tied to this mention
        if p.kind in ("repair", "flap") or any(
            f.procedures[j].site for j in note.siblings(i, any_status=True)
        ):
            return None
        if any(d.site for d in note.dxs(p)):
            return None
        return element
    if element == "laterality":
        row = _sites().get(p.site or "")
        if not row or not row.paired or p.laterality:
            return None
        if any(f.procedures[j].laterality for j in sib):
            return None
        return element
    if element == "count":
        if p.kind not in _COUNT_KINDS or p.count is not None or p.count_text:
            return None
        if note.said_near(i, _COUNT_WORDS) or any(
            _COUNT_WORDS.search(note.text[slice(*_line_span(note.text, e.start))])
            for d in note.dxs(p)
            for e in _valid(note.text, d.evidence)
        ):
            return None
        if any(f.procedures[j].count for j in sib):
            return None
        # Nothing says what was treated (often a step of another procedure), or one vague
        # lesion named in the singular ("the plaque was snipped"): a count of one.
        dxs = note.dxs(p)
        if not dxs:
            return None
        singular = all(_is_catchall(d) and not d.text.lower().endswith("s") for d in dxs)
        if singular and not note.said_near(i, _VAGUE_QUANTITY):
            return None
        return element
    if element == "histology":
        if p.kind != "excision" or note.has_pathology(i):
            return None
        dxs = note.dxs(p)
        assessed = [d for d in dxs if d.source in ("assessment", "procedure", "pathology")]
        dxs = assessed or dxs
        if any(_is_malignant(d) and not d.uncertain for d in dxs):
            return None
        if any(not d.uncertain and not _is_catchall(d) for d in dxs):
            return None  # a definite benign entity (§15)
        return element
    if element == "diagnosis":
        if p.kind in _DX_EXEMPT:
            return None
        dxs = note.dxs(p)
        if not dxs or not all(_is_catchall(d) for d in dxs):
            return None
        if note.specific_dx_fits(p):
            return None  # the lesion is named specifically elsewhere in the note
        if any(not _is_catchall(d) for j in sib for d in note.dxs(f.procedures[j])):
            return None
        return element
    return None


def _gaps(note: Note) -> dict[tuple[int, str], ProcedureFact]:
    engine_ran = bool(note.cpt_out.lines or note.cpt_out.defaults or note.cpt_out.considered)
    candidates = list(note.cpt_out.defaults) if engine_ran else []
    # The engine's §4 family logic does not report histology for every uncertain excision;
    # the facts check is exact enough to add it.
    candidates += [
        c for c in _facts_defaults(note) if not engine_ran or c[1] in ("histology", "diagnosis")
    ]
    out: dict[tuple[int, str], ProcedureFact] = {}
    for i, element in candidates:
        if not 0 <= i < len(note.facts.procedures):
            continue
        p = note.facts.procedures[i]
        if p.status != "performed":
            continue
        el = _cross_check(note, i, element)
        if el is None:
            continue
        # one gap per procedure: a later sibling mention of the same procedure adds nothing
        if any(k[1] == el and j in note.siblings(i) for k in out for j in [k[0]]):
            continue
        out[(i, el)] = p
    if any(k[1] == "histology" for k in out):
        # §15: an excision already flagged HISTOLOGY_PENDING is not flagged unspecified
        hist = {k[0] for k in out if k[1] == "histology"}
        out = {k: v for k, v in out.items() if not (k[1] == "diagnosis" and k[0] in hist)}
    return out


# --------------------------------------------------------------------------- triggers

TriggerFn = Callable[[Note, FlagRow], list[Hit]]


def _mention_is_current(note: Note, ev: Evidence) -> bool:
    """A dermoscopy mention in a planned or past-visit sentence says nothing about today."""
    s, e = _sentence_span(note.text, ev.start, ev.end)
    return not _PLANNED_OR_PAST.search(note.text[s:e])


def _t_dermoscopy_without_findings(note: Note, row: FlagRow) -> list[Hit]:
    if note.derm.status != "without_findings":
        return []
    mentions = [
        m for m in _valid(note.text, note.facts.dermoscopy.mentions) if _mention_is_current(note, m)
    ]
    if not mentions:
        return []
    site = _site_near(note, mentions[0].start)
    return [
        Hit(
            mentions,
            {"quote": quote(note.text, mentions[0]), "where": f" of the {site}" if site else ""},
            key="derm",
        )
    ]


def _site_near(note: Note, pos: int) -> str:
    """The site words of a diagnosis or procedure on the same line as ``pos``, if any."""
    ls, le = _line_span(note.text, pos)
    for fact in [*note.facts.diagnoses, *note.facts.procedures]:
        if fact.site and any(ls <= e.start < le for e in fact.evidence):
            return _where(fact)
    return ""


_LESION_NO = re.compile(r"#\s?(\d{1,2})\b")


def _facts_on(note: Note, start: int, end: int) -> list[ProcedureFact | DiagnosisFact]:
    return [
        fact
        for fact in [*note.facts.diagnoses, *note.facts.procedures]
        if fact.site and any(start <= e.start < end for e in fact.evidence)
    ]


def _has_management(note: Note, start: int, end: int) -> bool:
    if _MANAGEMENT.search(note.text[start:end]):
        return True
    cues = [*note.facts.dermoscopy.management, *note.facts.cues.get("management", [])]
    if any(start <= c.start < end for c in cues):
        return True
    return any(
        p.status in ("performed", "planned") and any(start <= e.start < end for e in p.evidence)
        for p in note.facts.procedures
    )


def _t_dermoscopy_not_linked(note: Note, row: FlagRow) -> list[Hit]:
    """Findings of one lesion (its line; the line above when the findings line names
    neither a lesion number nor a site) with no management for that lesion anywhere."""
    if note.derm.status != "findings_documented":
        return []
    text = note.text
    blocks: dict[tuple[int, int], list[Evidence]] = {}
    for f in _valid(text, note.facts.dermoscopy.findings):
        blocks.setdefault(_line_span(text, f.start), []).append(f)
    finding_lines = set(blocks)
    hits: list[Hit] = []
    for (ls, le), evs in blocks.items():
        bs = ls
        numbers = set(_LESION_NO.findall(text[ls:le]))
        sited = _facts_on(note, ls, le)
        if not numbers and not sited and ls > 0:
            ps, _pe = _line_span(text, ls - 1)
            numbers = set(_LESION_NO.findall(text[ps:ls]))
            sited = _facts_on(note, ps, ls)
            bs = ps
        if _has_management(note, bs, le):
            continue
        if numbers:
            linked = all(_number_managed(note, n, finding_lines) for n in numbers)
        elif sited:
            linked = any(_site_managed(note, s, bs, le) for s in sited)
        else:
            linked = any(p.status in ("performed", "planned") for p in note.facts.procedures) or (
                bool(note.facts.dermoscopy.management or note.facts.cues.get("management"))
            )
        if linked:
            continue
        lesion = (
            "lesion " + ", ".join(f"#{n}" for n in sorted(numbers, key=int))
            if numbers
            else f"the lesion on the {_where(sited[0])}"
            if sited
            else "the lesion examined"
        )
        hits.append(Hit(evs, {"quote": quote(text, evs[0]), "lesion": lesion}, key=(ls, le)))
    return hits


def _number_managed(note: Note, n: str, finding_lines: set[tuple[int, int]]) -> bool:
    rx = re.compile(rf"#\s?{n}\b")
    for m in rx.finditer(note.text):
        span = _line_span(note.text, m.start())
        if span in finding_lines:
            continue
        if _has_management(note, *span):
            return True
        ls, le = span
        if any(_site_managed(note, s, ls, le) for s in _facts_on(note, ls, le)):
            return True
    return False


def _site_managed(note: Note, s: ProcedureFact | DiagnosisFact, bs: int, be: int) -> bool:
    def same(x: ProcedureFact | DiagnosisFact) -> bool:
        return x.site == s.site and (
            not x.laterality or not s.laterality or x.laterality == s.laterality
        )

    for p in note.facts.procedures:
        if p.status in ("performed", "planned") and same(p):
            return True
    for d in note.facts.diagnoses:
        if d.section in ("assessment", "plan", "assessment_plan") and same(d):
            for e in d.evidence:
                if bs <= e.start < be:
                    continue
                ls, le = _line_span(note.text, e.start)
                nxt = _line_span(note.text, min(le + 1, len(note.text)))
                if _has_management(note, ls, le) or (
                    le < len(note.text) and _has_management(note, *nxt)
                ):
                    return True
    return False


def _t_procedure_gap(note: Note, row: FlagRow) -> list[Hit]:
    hits = []
    for (i, el), p in note.gaps.items():
        if el not in row.elements or (row.kinds is not None and p.kind not in row.kinds):
            continue
        evs = _valid(note.text, p.evidence)
        if not evs:
            continue
        dxs = note.dxs(p)
        where = _where(p)
        if el == "diagnosis" and dxs:
            # the vague words themselves are the evidence a reviewer needs to see first
            evs = [*_valid(note.text, dxs[0].evidence[:1]), *evs]
        hits.append(
            Hit(
                evs,
                {
                    "procedure": _proc_word(p),
                    "where": f" of the {where}" if where else "",
                    "site": where,
                    "quote": quote(note.text, evs[-1] if el == "diagnosis" else evs[0]),
                    "dx": dxs[0].text if dxs else "",
                    "measure": "repair length" if p.kind == "repair" else "lesion diameter",
                },
                key=i,
            )
        )
    return hits


def _t_laterality(note: Note, row: FlagRow) -> list[Hit]:
    hits = _t_procedure_gap(note, row)
    covered = {(e.start, e.end) for h in hits for e in h.evidence}
    for ev in _valid(note.text, getattr(note.icd, "laterality_missing", []) or []):
        if (ev.start, ev.end) in covered:
            continue
        dx = next(
            (
                d
                for d in note.facts.diagnoses
                if d.status == "active" and d.site and any(e == ev for e in d.evidence)
            ),
            None,
        )
        if dx is None or not (_sites().get(dx.site or "") or SiteRow.model_construct()).paired:
            continue
        evs = _valid(note.text, dx.evidence)
        covered.update((e.start, e.end) for e in evs)
        hits.append(
            Hit(
                evs,
                {
                    "procedure": f"diagnosis “{dx.text}”",
                    "site": _where(dx),
                    "where": f" of the {_where(dx)}",
                    "quote": quote(note.text, evs[0]),
                },
                key=("dx", dx.site),
            )
        )
    return hits


_NOT_COSMETIC = re.compile(r"(?:\bnot\b|\bnon-?|\bno\b)[\w\s-]{0,12}$", re.I)
_COSMETIC_OTHER_SENSE = re.compile(
    r"^\W*(?:and \w+ )?(?:sensitive|important|acceptable|favou?rable|result|outcome|closure|"
    r"options?|concerns? about (?:the )?scar|superior|appearance of the scar|units?)",
    re.I,
)
_REMOVAL_KINDS = {
    "shave_removal",
    "excision",
    "destruction",
    "tag_removal",
    "removal",
    "vascular_laser",
    "injection",
    "biopsy",
}


def _t_cosmetic(note: Note, row: FlagRow) -> list[Hit]:
    """Cosmetic/patient-request wording, for a performed removal, with no symptom or
    medical reason in the note (a negated symptom, "no itch or bleeding", is none)."""
    text = note.text
    procs = [
        p for p in note.facts.procedures if p.status == "performed" and p.kind in _REMOVAL_KINDS
    ]
    if not procs:
        return []
    cues = []
    for c in _valid(text, note.facts.cues.get("cosmetic", [])):
        left = text[max(0, c.start - 25) : c.start]
        right = text[c.end : c.end + 40]
        if _NOT_COSMETIC.search(left) or _COSMETIC_OTHER_SENSE.search(right):
            continue
        cues.append(c)
    if not cues:
        return []
    for s in _valid(text, note.facts.cues.get("symptom", [])):
        left = text[max(0, s.start - 30) : s.start]
        if re.search(r"\b(?:no|not|never|denies|without|nor)\b[^.;\n]*$", left, re.I):
            continue
        return []
    if any(_is_malignant(d) or d.uncertain for p in procs for d in note.dxs(p)):
        return []
    p = procs[0]
    return [
        Hit(
            cues,
            {
                "procedure": _proc_word(p),
                "where": f" of the {_where(p)}" if p.site else "",
                "quote": quote(text, cues[0]),
            },
            key="cosmetic",
        )
    ]


_LESION_NOUN = (
    r"(?:lesions?|aks?|actinic keratos[ie]s|warts?|verrucae|sks?|seborrheic keratos[ie]s|"
    r"tags?|acrochordons?|papules?|growths?|spots?|keloids?|molluscum)"
)
_STATED = re.compile(
    r"\b(\d{1,2}|" + "|".join(_NUM_WORDS) + r")\s+(?:[a-z-]+\s+)?" + _LESION_NOUN + r"\b"
    r"|\b" + _LESION_NOUN + r"\s*[x×]\s*(\d{1,2})\b",
    re.I,
)
_PART_COUNT = re.compile(
    r"(?:[x×]\s*(\d{1,2})\b|\((\d{1,2})\)|\b("
    + "|".join(_NUM_WORDS)
    + r")\b(?=\s*(?:[,;.)]|and\b|$)))",
    re.I,
)


def _t_count_mismatch(note: Note, row: FlagRow) -> list[Hit]:
    """A stated total ("cryo to 6 AKs") whose own sentence goes on to list per-site counts
    or lesion numbers that add up to something else. Both numbers are read from the
    sentence itself, so the flag does not depend on how the extraction summed them."""
    hits = []
    text = note.text
    kinds = row.kinds or sorted(_COUNT_KINDS)
    for p in note.facts.procedures:
        if p.status != "performed" or p.kind not in kinds:
            continue
        evs = _valid(text, p.evidence)
        if not evs:
            continue
        s, e = _sentence_span(text, evs[0].start, evs[0].end)
        m = _STATED.search(text, s, e)
        if m is None:
            continue
        raw = (m.group(1) or m.group(2)).lower()
        stated = int(raw) if raw.isdigit() else _NUM_WORDS[raw]
        after = text[m.end() : e]
        numbers = set(_LESION_NO.findall(after))
        parts = [
            int(a or b) if (a or b) else _NUM_WORDS[c.lower()]
            for a, b, c in _PART_COUNT.findall(after)
        ]
        listed = len(numbers) if len(numbers) >= 2 else (sum(parts) if len(parts) >= 2 else None)
        if listed is None or listed == stated:
            continue
        ev = Evidence(start=m.start(), end=m.end(), text=text[m.start() : m.end()])
        hits.append(
            Hit(
                [ev, *evs[:1]],
                {
                    "procedure": _proc_word(p),
                    "stated": str(stated),
                    "listed": str(listed),
                    "quote": quote(text, ev),
                },
                key=(s, e),
            )
        )
    return hits


TRIGGERS: dict[str, TriggerFn] = {
    "dermoscopy_without_findings": _t_dermoscopy_without_findings,
    "dermoscopy_not_linked": _t_dermoscopy_not_linked,
    "procedure_gap": _t_procedure_gap,
    "laterality": _t_laterality,
    "cosmetic": _t_cosmetic,
    "count_mismatch": _t_count_mismatch,
}


def evaluate(
    text: str, facts: NoteFacts, icd: Any, cpt_out: CptOutcome, derm: Dermoscopy
) -> list[Flag]:
    """Every flag of the table the note raises, one per affected procedure or lesion."""
    note = Note(text=text, facts=facts, icd=icd, cpt_out=cpt_out, derm=derm)
    note.gaps = _gaps(note)
    flags: list[Flag] = []
    for row in flag_rows():
        seen: set[Any] = set()
        for hit in TRIGGERS[row.trigger](note, row):
            if hit.key in seen or not hit.evidence:
                continue
            seen.add(hit.key)
            flags.append(
                Flag(
                    id=row.id,
                    severity=row.severity,
                    message=_fill(row.message, hit.values),
                    query=_fill(row.query, hit.values),
                    evidence=hit.evidence[:6],
                )
            )
    return flags
