"""dermcode_lesions: assemble the extracted spans into procedure and diagnosis facts.

Coding needs to know which size, site, side, count and diagnosis belong to which
procedure. Notes spread these over a lesion list ("#1 L forearm: 6 mm pink papule"),
the sentence that names the procedure, and the lines of a procedure-note block.
The assembly works in three passes:

1. *Units*: sentences, grouped into lesion items (a "#N"/"N." line and what follows
   it) and sections.
2. *Mentions*: every procedure span becomes a candidate carrying the facts of its
   own sentence; a sentence naming several sites gives one candidate per site for
   per-lesion procedures ("shave bx of R cheek and L arm").
3. *Merging and inheritance*: candidates of compatible kinds in the same sentence
   or procedure block merge ("Shave biopsy ... the lesion was shaved"); missing
   facts are inherited from the lesion item, then the nearest earlier sentences of
   the same section, then the procedure block's "Site:"/"Diagnosis:" lines.

The result is a :class:`~extractor.schemas.NoteFacts` on ``doc._.dc_facts``.
"""

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import islice

from spacy.attrs import IDX, LENGTH
from spacy.language import Language
from spacy.tokens import Doc, Span

from extractor import _extensions
from extractor.components.measurements import WORD_NUMBERS, to_number
from extractor.patterns import cached_family
from extractor.schemas import (
    DermoscopyFact,
    DiagnosisFact,
    Evidence,
    NoteFacts,
    ProcedureDxFit,
    ProcedureFact,
    ProcedurePart,
    SiteRow,
)

HISTORY_SECTIONS = {"history", "social_history", "medications", "allergies", "ros"}
# Sections that give the reason for a visit; their procedure words are not the record
# of what was done when the note has a procedure, plan or assessment section too.
REASON_SECTIONS = {"chief_complaint", "hpi", "preop_diagnosis", "pathology"}
DOING_SECTIONS = {"procedure", "plan", "assessment_plan", "assessment", "findings"}
FAMILY_SECTIONS = {"family_history"}
PATHOLOGY_SECTIONS = {"pathology", "diagnosis"}
ASSESSMENT_SECTIONS = {"assessment", "assessment_plan", "plan", "preop_diagnosis", "diagnosis"}
PROCEDURE_SECTIONS = {"procedure", "anesthesia", "findings"}

# Procedures coded one line per lesion: a sentence with several sites makes several.
PER_LESION = {"biopsy", "shave", "shave_removal", "excision", "mohs", "nail_biopsy"}
# Session procedures: every performed mention at one site is the same service.
SESSION = {
    "incision_drainage",
    "phototherapy",
    "pdt",
    "excimer",
    "photography",
    "injection",
    "vascular_laser",
    "mohs",
    "nail_biopsy",
    "nail_matrixectomy",
}
# One code per day whatever the sites: every performed mention is the same service.
WHOLE_SESSION = {"phototherapy", "pdt", "excimer", "photography"}
# Electrosurgery/chemicals used to stop bleeding are part of the procedure, not a destruction.
HEMOSTASIS_METHODS = {"electrosurgery", "chemical", None}
# Mentions that only say "something was done" and take their kind from a neighbour.
COMPATIBLE = {
    frozenset({"shave", "biopsy"}): "biopsy",
    frozenset({"shave", "shave_removal"}): "shave_removal",
    frozenset({"shave", "removal"}): "shave_removal",
    frozenset({"removal", "excision"}): "excision",
    frozenset({"removal", "tag_removal"}): "tag_removal",
    frozenset({"removal", "destruction"}): "destruction",
    frozenset({"removal", "shave_removal"}): "shave_removal",
    frozenset({"biopsy", "nail_biopsy"}): "nail_biopsy",
    frozenset({"excision", "biopsy"}): "excision",
    frozenset({"shave_removal", "biopsy"}): "biopsy",
}
METHOD_RANK = {"incisional": 3, "punch": 2, "tangential": 1}
LESION_NOUNS = {
    "lesion",
    "lesions",
    "spot",
    "spots",
    "site",
    "sites",
    "area",
    "areas",
    "papule",
    "papules",
    "nail",
    "nails",
    "tags",
    "tag",
    "warts",
    "wart",
    "aks",
    "ak",
    "keratoses",
    "growths",
    "macules",
    "plaques",
    "nodules",
    "cysts",
    "keloids",
    "scars",
    "sks",
    "isks",
    "patches",
    "lesions,",
    "locations",
    "acrochordons",
    "molluscum",
    "toenails",
    "fingernails",
}
ITEM_RE = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:#\s*(?P<a>\d{1,2})\b|(?P<b>\d{1,2})\s*[.)]\s"
    r"|lesion\s*#?\s*(?P<c>\d{1,2})\b(?!\.\d|\s*(?:x\s*\d|mm|cm))"
    r"|\((?P<d>\d{1,2})\)\s|(?:site|specimen)\s*#?\s*(?P<e>[A-H1-9])\b"
    r"|\(?(?P<f>[a-hA-H])\)\s)",
    re.IGNORECASE,
)


class Ent:
    """An entity or measurement as token offsets and a label: what assembly needs of a
    Span, without spaCy building Span and Token objects on every access."""

    __slots__ = ("start", "end", "label_")

    def __init__(self, start: int, end: int, label: str) -> None:
        self.start, self.end, self.label_ = start, end, label

    @property
    def text(self) -> str:
        return (_TEXT or "")[_TOK_START[self.start] : _TOK_END[self.end - 1]]


@dataclass(eq=False)
class Unit:
    """One sentence with what was found in it."""

    idx: int
    start: int
    end: int
    text: str
    section: str
    item: int | None = None
    ents: list[Span] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    meas: list[Span] = field(default_factory=list)
    sites: list | None = None


@dataclass(eq=False)
class Cand:
    """A procedure being assembled."""

    kind: str
    unit: Unit
    spans: list[Span]
    method: str | None = None
    site_span: Span | None = None
    site_id: str | None = None
    side: str | None = None
    eyelid: str | None = None
    digit: int | None = None
    status: str = "performed"
    attrs: dict = field(default_factory=dict)


def _ev(text: str, start: int, end: int) -> Evidence:
    return Evidence(start=start, end=end, text=text[start:end])


def _span_ev(span: Span | Ent) -> Evidence:
    # Span.text rebuilds the string token by token; slicing the note text is far cheaper.
    start, end = _sc(span), _ec(span)
    return Evidence.model_construct(start=start, end=end, text=(_TEXT or "")[start:end])


# The Doc being assembled (set per call; components run one Doc at a time).
_TEXT: str | None = None
_TOK_START: list[int] = []  # character offset of each token
_TOK_END: list[int] = []


def _sc(span: Span) -> int:
    """``span.start_char`` from a per-Doc table (spaCy builds a Token object per call)."""
    return _TOK_START[span.start]


def _ec(span: Span) -> int:
    """``span.end_char`` from the same table."""
    return _TOK_END[span.end - 1] if span.end > span.start else _TOK_START[span.start]


_ATTRS: dict[tuple[int, int], dict] = {}  # entity (start, end) -> rule attrs, read once per Doc


def _a(span: Span) -> dict:
    """The rule attributes of an entity; spaCy's ``span._`` lookup is slow in a hot loop."""
    got = _ATTRS.get((span.start, span.end))
    return got[1] or {} if got else {}


def _mv(span: Span) -> dict:
    """A measurement span's normalised value."""
    got = _ATTRS.get((span.start, span.end, "m"))
    return got[1] or {} if got else {}


def _rid(span: Span) -> str:
    got = _ATTRS.get((span.start, span.end))
    return (got[0] or "") if got else ""


def _status(span: Span, section: str) -> str:
    key = (_sc(span), _ec(span), section)
    hit = _STATUS_CACHE.get(key)
    if hit is None:
        hit = _STATUS_CACHE[key] = _status_uncached(span, section)
    return hit


_STATUS_CACHE: dict[tuple[int, int, str], str] = {}


_CONTEXT: dict[tuple[int, int], set[str]] = {}  # target (start, end) -> ConText categories


def _status_uncached(span: Span, section: str) -> str:
    cats = _CONTEXT.get((span.start, span.end), ())
    if "NEGATED_EXISTENCE" in cats:  # "no FHx of skin cancer" is nothing at all
        return "negated"
    if "FAMILY" in cats or section in FAMILY_SECTIONS:
        return "family"
    if "HISTORICAL" in cats or section in HISTORY_SECTIONS:
        return "historical"
    if "HYPOTHETICAL" in cats:
        return "hypothetical"
    if "PLANNED" in cats:
        return "planned"
    return "performed"


def _uncertain(span: Span) -> bool:
    return "POSSIBLE_EXISTENCE" in _CONTEXT.get((span.start, span.end), ())


class DermLesions:
    """Builds NoteFacts from entities, measurements, context and sections."""

    def __init__(self, nlp: Language, name: str, inherit_window: int) -> None:
        _extensions.register()
        self.name = name
        self.inherit_window = inherit_window
        from extractor.coding.icd10 import load_tables

        tables = load_tables()
        self.catchalls = {cid for cid, row in tables.concepts.items() if row.catchall}
        self.dx_class = {cid: row.cpt_class for cid, row in tables.concepts.items()}
        self.refined_by = {cid: set(row.refined_by) for cid, row in tables.concepts.items()}
        self.region = {row.id: row.region for row in cached_family("coding/sites.jsonl", SiteRow)}
        self.parts: dict[str, dict[str, ProcedurePart]] = {}
        for row in cached_family("procedure_parts.jsonl", ProcedurePart):
            self.parts.setdefault(row.host, {})[row.part] = row
        self.fit = {
            row.kind: set(row.classes)
            for row in cached_family("coding/procedure_dx_fit.jsonl", ProcedureDxFit)
        }

    # ------------------------------------------------------------------ units
    def _units(self, doc: Doc) -> list[Unit]:
        secs = doc._.dc_section_spans or []
        sec_starts = [s[1] for s in secs]
        self._secs, self._sec_starts = secs, sec_starts
        units: list[Unit] = []
        item: int | None = None
        text = self._text
        starts_tok = doc.user_data.get("dc_sent_starts") or [0]
        bounds = list(zip(starts_tok, [*starts_tok[1:], len(doc)], strict=True))
        for i, (s_tok, e_tok) in enumerate(bounds):
            if e_tok <= s_tok:
                continue
            start, end = _TOK_START[s_tok], _TOK_END[e_tok - 1]
            stext = text[start:end]
            k = bisect_right(sec_starts, start) - 1
            section = secs[k][0] if k >= 0 else "none"
            m = ITEM_RE.match(stext)
            prev_section = units[-1].section if units else None
            ref = None if m else _HEAD_REF.match(stext)
            if m:
                g = next(v for v in m.groupdict().values() if v)
                item = int(g) if g.isdigit() else ord(g.upper()) - 64
            elif ref:  # "Procedure (#1): ...", "Re #2: ..." name the lesion they are about
                item = int(ref.group(1))
            elif prev_section is not None and section != prev_section:
                item = None
            elif units and (
                "\n\n" in text[units[-1].end : start] or _BLANK_END.search(units[-1].text)
            ):
                item = None  # a blank line closes a numbered item
            units.append(Unit(i, start, end, stext, section, item))
        starts = [u.start for u in units]
        ents = doc.user_data.get("dc_ents")
        if ents is None:  # a Doc built without dermcode_entities' table
            ents = [(e.start, e.end, e.label_) for e in doc.ents]
        for e_start, e_end, label in ents:
            ent = Ent(e_start, e_end, label)
            k = bisect_right(starts, _sc(ent)) - 1
            if k >= 0:
                units[k].ents.append(ent)
                units[k].labels.append(label)
        meas = doc.user_data.get("dc_meas")
        if meas is None:
            meas = [(m.start, m.end) for m in doc.spans.get("dc_measure", [])]
        for m_start, m_end in meas:
            sp = Ent(m_start, m_end, "MEASURE")
            k = bisect_right(starts, _sc(sp)) - 1
            if k >= 0:
                units[k].meas.append(sp)
        return units

    # ------------------------------------------------------------------ sites
    def _sites(
        self, unit: Unit
    ) -> list[tuple[Span, str | None, str | None, int | None, str | None]]:
        """(site span, side, eyelid, digit, site id) for each site in the unit, side attached."""
        if unit.sites is None:
            unit.sites = self._find_sites(unit, self._text)
        return unit.sites

    @staticmethod
    def _find_sites(unit: Unit, text: str) -> list:
        out = []
        ents = unit.ents
        labels = unit.labels
        if "SITE" not in labels:
            return out
        for j, e in enumerate(ents):
            if labels[j] != "SITE":
                continue
            a = _a(e)
            side = a.get("side")
            # laterality right before the site ("L forearm", "right upper eyelid")
            for k in (j - 1, j - 2):
                if side is None and k >= 0 and labels[k] == "LATERALITY":
                    gap = text[_ec(ents[k]) : _sc(e)]
                    if len(gap) <= 12 and not re.search(r"[.;:]", gap):
                        side = _a(ents[k])["side"]
            # or right after ("forearm, left", "ear (R)")
            if side is None and j + 1 < len(ents) and labels[j + 1] == "LATERALITY":
                gap = text[_ec(e) : _sc(ents[j + 1])]
                if len(gap) <= 3 and not re.search(r"[.;]", gap):
                    side = _a(ents[j + 1])["side"]
            out.append((e, side, a.get("eyelid"), a.get("digit_number"), a.get("site")))
        # merge adjacent sites naming one place ("upper eyelid" + "canthus", "nasal tip")
        merged: list = []
        for s in out:
            if merged and _sc(s[0]) - _ec(merged[-1][0]) <= 1 and s[4] == merged[-1][4]:
                continue
            merged.append(s)
        return merged

    # ------------------------------------------------------------------ main
    def __call__(self, doc: Doc) -> Doc:
        global _TEXT, _TOK_START, _TOK_END
        self._text = _TEXT = _extensions.note_text(doc)
        if len(doc):
            offsets = doc.to_array([IDX, LENGTH]).tolist()  # one C call, no Token objects
            _TOK_START = [o[0] for o in offsets]
            _TOK_END = [o[0] + o[1] for o in offsets]
        else:
            _TOK_START, _TOK_END = [], []
        _STATUS_CACHE.clear()
        global _ATTRS, _CONTEXT
        _ATTRS = doc._.dc_span_meta or {}
        _CONTEXT = {}
        graph = doc._.context_graph
        for target, modifier in graph.edges if graph is not None else ():
            _CONTEXT.setdefault((target.start, target.end), set()).add(modifier.category)
        units = self._units(doc)
        facts = NoteFacts(text_length=len(self._text))
        facts.sections = list(doc._.dc_section_spans or [])
        self._encounter(doc, units, facts)
        self._dermoscopy(doc, units, facts)
        self._diagnoses(doc, units, facts)
        self._procedures(doc, units, facts)
        self._cues(units, facts)
        doc._.dc_facts = facts
        return doc

    def _section_at(self, offset: int, default: str) -> str:
        """The section a character offset falls in: a title may sit mid-sentence
        ("...tolerated well.,PATHOLOGY ADDENDUM (received 06/14): , Left shin: melanoma")."""
        k = bisect_right(self._sec_starts, offset) - 1
        return self._secs[k][0] if k >= 0 else default

    def _encounter(self, doc: Doc, units: list[Unit], facts: NoteFacts) -> None:
        for u in units:
            for e in u.ents:
                if e.label_ == "ENCOUNTER":
                    pt = _a(e).get("patient")
                    if facts.patient is None or (pt == "new" and facts.patient != "new"):
                        if pt == "new" and re.search(r"referred by|referral from", e.text, re.I):
                            if facts.patient is not None:
                                continue
                        facts.patient = pt
                    facts.patient_evidence.append(_span_ev(e))

    def _cues(self, units: list[Unit], facts: NoteFacts) -> None:
        for u in units:
            for e in u.ents:
                if e.label_ == "MODIFIER_CUE":
                    facts.cues.setdefault(_a(e).get("cue", "other"), []).append(_span_ev(e))

    def _dermoscopy(self, doc: Doc, units: list[Unit], facts: NoteFacts) -> None:
        d = DermoscopyFact()
        in_derm_section = False
        for u in units:
            in_derm_section = u.section == "dermoscopy"
            for e in u.ents:
                if e.label_ == "DERMOSCOPY":
                    if _neg_near(self._text, e) or _status(e, u.section) != "performed":
                        d.negated_mentions.append(_span_ev(e))
                    else:
                        d.mentions.append(_span_ev(e))
                elif e.label_ == "DERMOSCOPY_FINDING":
                    if (
                        in_derm_section
                        or any(x.label_ == "DERMOSCOPY" for x in u.ents)
                        or (d.mentions and self._near_dermoscopy(u, units))
                    ):
                        d.findings.append(_span_ev(e))
                elif e.label_ == "DERMOSCOPY_IMAGE":
                    cat = str(_a(e).get("category_number"))
                    d.image_cues.setdefault(cat, []).append(_span_ev(e))
                elif e.label_ == "MODIFIER_CUE" and _a(e).get("cue") == "management":
                    d.management.append(_span_ev(e))
            if in_derm_section and not any(x.label_ == "DERMOSCOPY" for x in u.ents):
                # a "Dermoscopy:" title is itself the mention
                pass
        for cat, s, _e in facts.sections or doc._.dc_section_spans or []:
            if cat == "dermoscopy" and not any(m.start == s for m in d.mentions):
                end = s + len(self._text[s : s + 40].split(":", 1)[0].rstrip())
                d.mentions.append(_ev(self._text, s, end))
        facts.dermoscopy = d

    @staticmethod
    def _near_dermoscopy(u: Unit, units: list[Unit]) -> bool:
        """Findings in the sentence right after a dermoscopy mention belong to it."""
        for prev in units[max(0, u.idx - 2) : u.idx]:
            if any(x.label_ == "DERMOSCOPY" for x in prev.ents):
                return True
        return False

    # ------------------------------------------------------------------ diagnoses
    def _diagnoses(self, doc: Doc, units: list[Unit], facts: NoteFacts) -> None:
        for u in units:
            sites = self._sites(u)
            dx_ents = [e for e, lab in zip(u.ents, u.labels, strict=True) if lab == "DIAGNOSIS"]
            concepts = [str(_a(e).get("concept", "unknown")) for e in dx_ents]
            # "12 lesions", "papules" beside "actinic keratoses" in one sentence are the
            # same lesions named loosely: keep the specific diagnosis only.
            specific = any(c not in self.catchalls for c in concepts)
            for e, concept in zip(dx_ents, concepts, strict=True):
                if specific and concept in self.catchalls:
                    continue
                section = self._section_at(_sc(e), u.section)
                status = {
                    "family": "family",
                    "negated": "negated",
                    "historical": "history",
                    "hypothetical": "hypothetical",
                    "planned": "active",
                    "performed": "active",
                }[_status(e, section)]
                source = (
                    "pathology"
                    if section in PATHOLOGY_SECTIONS or _path_near(self._text, e)
                    else "assessment"
                    if section in ASSESSMENT_SECTIONS
                    else "procedure"
                    if section in PROCEDURE_SECTIONS
                    else "history"
                    if section in HISTORY_SECTIONS
                    else "exam"
                    if section in ("exam", "dermoscopy")
                    else "other"
                )
                site = _nearest(e, sites)
                dx = DiagnosisFact(
                    concept=concept,
                    text=e.text,
                    status=status,
                    uncertain=_uncertain(e),
                    source=source,
                    site=site[4] if site else None,
                    laterality=site[1] if site else None,
                    eyelid=site[2] if site else None,
                    lesion_no=u.item,
                    section=section,
                    rule_id=_rid(e),
                    evidence=[_span_ev(e)] + ([_span_ev(site[0])] if site else []),
                )
                facts.diagnoses.append(dx)

    # ------------------------------------------------------------------ procedures
    def _procedures(self, doc: Doc, units: list[Unit], facts: NoteFacts) -> None:
        cands: list[Cand] = []
        for u in units:
            procs = [e for e in u.ents if e.label_ == "PROCEDURE"]
            if not procs:
                continue
            local: list[Cand] = []
            hemostasis = any(
                e.label_ == "MODIFIER_CUE" and _a(e).get("cue") == "hemostasis" for e in u.ents
            )
            for e in procs:
                a = _a(e)
                kind = a.get("kind", "unknown")
                if (
                    kind == "destruction"
                    and hemostasis
                    and a.get("method") in HEMOSTASIS_METHODS
                    and not _CURETTAGE.search(self._text[_sc(e) : _ec(e)])
                ):
                    continue  # cautery for bleeding; an ED&C beside "hemostasis achieved" stays
                low = u.text.lower()
                if kind == "nail_debridement" and "nail" not in low:
                    continue  # wound or ulcer debridement: outside dermcode's code families
                if kind == "nail_matrixectomy" and not _NAILISH.search(low):
                    continue  # phenol as a peel or a disinfectant is not a matrixectomy
                if kind == "injection" and not _INTRALESIONAL.search(low):
                    continue  # "triamcinolone 0.1% ointment", "lidocaine was injected"
                if kind == "repair" and a.get("method") is None:
                    kind = "repair_generic"
                c = Cand(kind, u, [e], a.get("method"), status=_status(e, u.section), attrs=dict(a))
                if _SEPARATE.search(u.text):
                    c.attrs["separate_lesion"] = True  # not the lesion the note is about
                if c.status == "performed" and (
                    _DATED.match(self._text, _ec(e))
                    or _DATED_BEFORE.search(self._text, max(u.start, _sc(e) - 30), _sc(e))
                ):
                    c.status = "historical"  # "Bx 02/11/2026", "Mohs (2019)": an earlier visit
                # merge with a compatible mention of the same sentence
                for other in local:
                    merged = _merge_kind(other, c) if other.status == c.status else None
                    if merged:
                        other.kind = merged
                        other.spans.append(e)
                        other.method = _better_method(other.method, c.method)
                        other.status = _combine_status(other.status, c.status)
                        break
                else:
                    local.append(c)
            cands.extend(self._split_by_site(u, local))
        cands = [c for c in cands if c.kind not in ("repair_generic",) or _repair_ok(c)]
        # "Same technique" repeats the kind and method of the procedure before it
        resolved: list[Cand] = []
        for c in cands:
            if c.kind == "same_as_previous":
                prev = next(
                    (
                        p
                        for p in reversed(resolved)
                        if p.kind != "same_as_previous" and p.status == "performed"
                    ),
                    None,
                )
                if prev is None:
                    continue
                c.kind, c.method = prev.kind, prev.method
            resolved.append(c)
        cands = resolved
        if any(u.section in DOING_SECTIONS for u in units):
            for c in cands:
                if c.unit.section in REASON_SECTIONS and c.status == "performed":
                    c.status = "mentioned"
        cands = self._merge_across(cands)
        cands = self._merge_blocks(cands)
        cands = self._merge_sessions(cands)
        for c in cands:
            facts.procedures.append(self._fact(doc, c, units, facts))
        self._consolidate_repairs(facts)
        self._split_over_items(units, facts)
        self._link_pathology(facts)
        self._fill_from_blocks(units, facts)
        self._fill_by_site(units, facts)
        self._absorb_parts(facts)

        # "bx x3 today:" / "ED&C x 2, both bx-proven" above the lesions themselves is
        # their summary: a count of 2+ with no site, beside 2+ sited procedures of its kind
        def summary(p: ProcedureFact) -> bool:
            plural = bool(p.evidence) and _PLURAL.search(p.evidence[0].text) is not None
            if p.status != "performed" or p.site is not None:
                return False
            if (p.count or 0) < 2 and not (plural and p.size_cm is None):
                return False
            if p.kind == "biopsy" and p.method:
                return False
            others = [
                q
                for q in facts.procedures
                if q is not p
                and q.kind == p.kind
                and q.status == "performed"
                and (q.site is not None or (p.kind == "biopsy" and q.method))
            ]
            return len(others) >= 2 and p.kind in (
                "biopsy",
                "destruction",
                "excision",
                "shave_removal",
            )

        facts.procedures = [p for p in facts.procedures if not summary(p)]
        self._dedup_assessment(facts)
        # "snipped" with no skin tag in sight is a step of another procedure (a punch base)
        for p in facts.procedures:
            if p.kind == "tag_removal" and not any(
                self.dx_class.get(facts.diagnoses[i].concept) == "tag" for i in p.diagnoses
            ):
                p.kind = "removal"
        # "Remove sutures", "removal" with nothing removed named: not a procedure; and a
        # generic "removal" beside a documented excision/shave/destruction is that procedure
        done = {p.kind for p in facts.procedures if p.status == "performed"}
        facts.procedures = [
            p
            for p in facts.procedures
            if not (p.kind == "removal" and (not p.diagnoses or done & _REMOVING_KINDS))
        ]

    @staticmethod
    def _mohs_stages(units: list[Unit], p: ProcedureFact) -> None:
        """Stages and blocks of the one Mohs case in the note ("Stage 2 - 6 blocks")."""
        stages = p.stages or 0
        blocks: dict[int, int] = {}
        stage_here = None  # the stage a paragraph is about, until the next "Stage N"
        for u in units:
            if u.section in HISTORY_SECTIONS:
                continue
            for m in u.meas:
                v = _mv(m)
                if v.get("kind") == "stage_no":
                    stage_here = v["n"]
                    stages = max(stages, v["n"])
                elif v.get("kind") == "stages":
                    stages = max(stages, v["n"])
                elif v.get("kind") == "blocks" and stage_here is not None:
                    blocks.setdefault(stage_here, v["n"])
        if stages:
            p.stages = stages
            p.blocks = [blocks.get(i, 0) for i in range(1, stages + 1)] if blocks else []

    def _absorb_parts(self, facts: NoteFacts) -> None:
        """Steps of a procedure told as procedures of their own are folded into it
        (``patterns/procedure_parts.jsonl``): only performed steps at the host's site (or
        with no site), so a separate lesion biopsied during Mohs keeps its own code."""
        keep: list[ProcedureFact] = []
        hosts = [p for p in facts.procedures if p.status == "performed" and p.kind in self.parts]
        for p in facts.procedures:
            host = None
            if p.status == "performed":
                for h in hosts:
                    rule = self.parts[h.kind].get(p.kind)
                    if rule is None or h is p:
                        continue
                    if rule.methods and p.method not in rule.methods:
                        continue
                    if rule.same_site_only and (p.site is None or h.site is None):
                        continue
                    if (
                        not rule.any_site
                        and p.site is not None
                        and h.site is not None
                        and (
                            self.region.get(p.site) != self.region.get(h.site)
                            or (p.laterality and h.laterality and p.laterality != h.laterality)
                        )
                    ):
                        continue  # another region or side: a separate lesion
                    host = h
                    if rule.host_attr:
                        h.attrs[rule.host_attr] = True
                    break
            if host is None:
                keep.append(p)
                continue
            host.evidence.extend(p.evidence)
            host.diagnoses = host.diagnoses or p.diagnoses
            host.attrs.setdefault("absorbed", []).append(p.kind)
            if host.site is None and p.site is not None:  # the step names the place
                host.site, host.laterality = p.site, p.laterality
                host.eyelid, host.digit = p.eyelid, p.digit
        facts.procedures = keep

    @staticmethod
    def _consolidate_repairs(facts: NoteFacts) -> None:
        """A repair named in the procedure line and measured in the description is one repair.

        Mentions merge when one has the class and the other the length, at the same
        site (or no site on one side); two measured repairs stay two (they are summed
        or kept apart by the CPT engine, per class and site group).
        """
        reps = [p for p in facts.procedures if p.kind == "repair" and p.status == "performed"]
        drop: set[int] = set()
        for i, a in enumerate(reps):
            if id(a) in drop:
                continue
            for b in reps[i + 1 :]:
                if id(b) in drop:
                    continue
                if a.site and b.site and (a.site, a.laterality) != (b.site, b.laterality):
                    continue
                if (
                    a.method
                    and b.method
                    and a.method != b.method
                    and "simple" not in (a.method, b.method)
                ):
                    continue
                if a.length_cm is not None and b.length_cm is not None:
                    continue
                a.method = _better_class(a.method, b.method)
                a.length_cm = a.length_cm if a.length_cm is not None else b.length_cm
                a.site = a.site or b.site
                a.laterality = a.laterality or b.laterality
                a.evidence.extend(b.evidence)
                a.diagnoses = a.diagnoses or b.diagnoses
                drop.add(id(b))
        facts.procedures = [p for p in facts.procedures if id(p) not in drop]

    def _split_over_items(self, units: list[Unit], facts: NoteFacts) -> None:
        """ "Three lesions removed by shave: 1. R nasal tip 0.5 cm ... 2. L forehead 0.9 cm
        ...": one procedure statement over a numbered lesion list is one procedure per
        lesion, each with its item's site, size and diagnosis."""
        items: dict[int, Unit] = {}
        for u in units:
            if u.item is not None and u.section not in HISTORY_SECTIONS and self._sites(u):
                items.setdefault(u.item, u)
        # no numbered list: the distinct places of the exam ("R lateral neck: ... L upper
        # back: ..."), each with the unit that names it
        by_place: dict[tuple, tuple[Unit, tuple]] = {}
        for u in units:
            if u.section == "exam":
                for site in self._sites(u):
                    by_place.setdefault((site[4], site[1]), (u, site))
        if len(items) < 2 and len(by_place) < 2:
            return
        out: list[ProcedureFact] = []
        for p in facts.procedures:
            taken = {q.lesion_no for q in facts.procedures if q is not p and q.kind == p.kind}
            free = [k for k in sorted(items) if k not in taken]
            # the sentences of every mention of the procedure ("ED&C" in the title, "each
            # lesion curetted and electrodesiccated" in the description)
            sentence = " ".join(
                u.text for u in units if any(u.start <= e.start < u.end for e in p.evidence)
            )
            every = _EVERY.search(sentence)
            n = p.count or (
                2 if every and every.group(0).lower() == "both" else (len(free) if every else 0)
            )
            targets: list[tuple[int | None, Unit, tuple]] = [
                (k, items[k], self._sites(items[k])[0]) for k in free
            ]
            if len(targets) != n and len(by_place) == n and every:
                targets = [(None, u, site) for u, site in by_place.values()]
            if (
                p.status != "performed"
                or p.kind not in ("shave_removal", "excision", "biopsy", "destruction")
                or p.lesion_no is not None
                or n < 2
                or len(targets) != n
            ):
                out.append(p)
                continue
            for k, u, site in targets:
                clone = p.model_copy(deep=True)
                clone.lesion_no, clone.count = k, None
                clone.site, clone.laterality, clone.eyelid, clone.digit = (
                    site[4],
                    site[1],
                    site[2],
                    site[3],
                )
                sizes = sorted(
                    (
                        m
                        for m in u.meas
                        if _mv(m).get("kind") == "size" and _mv(m).get("role") == "lesion"
                    ),
                    key=lambda m: _dist(m, site[0]),
                )[:1]
                if sizes and len(self._sites(u)) > 1:
                    nearest = min(self._sites(u), key=lambda x: _dist(sizes[0], x[0]))
                    sizes = sizes if nearest[4] == site[4] and nearest[1] == site[1] else []
                clone.size_cm = _mv(sizes[0])["cm"] if sizes else None
                dx = [
                    i
                    for i, d in enumerate(facts.diagnoses)
                    if d.status == "active"
                    and u.start <= d.evidence[0].start < u.end
                    and (d.site is None or d.site == site[4])
                ]
                clone.diagnoses = dx or p.diagnoses
                clone.evidence = [*p.evidence[:1], _span_ev(site[0])] + (
                    [_span_ev(sizes[0])] if sizes else []
                )
                out.append(clone)
        facts.procedures = out

    def _dedup_assessment(self, facts: NoteFacts) -> None:
        """ "Impression: epidermoid cyst, posterior neck, excised." restates the excision the
        description documented: a performed procedure named in the assessment is dropped
        when the same kind is documented elsewhere at the same place (or with no site)."""
        drop: set[int] = set()
        procs = facts.procedures
        for i, a in enumerate(procs):
            if a.status != "performed" or a.section not in ("assessment", "diagnosis"):
                continue
            for j, b in enumerate(procs):
                if i == j or j in drop or b.kind != a.kind or b.status != "performed":
                    continue
                if b.section in ("assessment", "diagnosis"):
                    continue
                if (
                    a.site
                    and b.site
                    and (
                        self.region.get(a.site) != self.region.get(b.site)
                        or (a.laterality and b.laterality and a.laterality != b.laterality)
                    )
                ):
                    continue
                b.evidence.extend(a.evidence)
                b.diagnoses = b.diagnoses or a.diagnoses
                for name in ("site", "laterality", "size_cm", "margin_cm"):
                    if getattr(b, name) is None and getattr(a, name) is not None:
                        setattr(b, name, getattr(a, name))
                drop.add(i)
                break
        facts.procedures = [p for k, p in enumerate(procs) if k not in drop]

    def _link_pathology(self, facts: NoteFacts) -> None:
        """A pathology result belongs to the lesion it reports on: same site, or the only
        tissue procedure of the note when the report names no site ("ADDENDUM: melanoma in
        situ"), so it can override the clinical impression (CODING_CONVENTIONS §13.1)."""
        path = [
            i
            for i, d in enumerate(facts.diagnoses)
            if d.status == "active" and d.source == "pathology" and d.concept not in self.catchalls
        ]
        if not path:
            return
        tissue = [
            p
            for p in facts.procedures
            if p.status == "performed" and p.kind in PER_LESION | {"destruction"}
        ]
        for i in path:
            d = facts.diagnoses[i]
            if d.site is not None:
                hits = [
                    p
                    for p in tissue
                    if p.site
                    and self.region.get(p.site) == self.region.get(d.site)
                    and (
                        p.laterality is None or d.laterality is None or p.laterality == d.laterality
                    )
                ]
            else:
                hits = tissue if len(tissue) == 1 else []
            for p in hits:
                if i not in p.diagnoses:
                    p.diagnoses.insert(0, i)

    def _fill_by_site(self, units: list[Unit], facts: NoteFacts) -> None:
        """The lesion's size written where it was examined: "Exam: L upper back: 0.8 x 0.6 cm
        macule" for "excision L upper back" in the plan. The sentence must name the same
        site (and not the other side), or carry the same lesion number."""
        for p in facts.procedures:
            if p.status != "performed" or p.size_cm is not None:
                continue
            if p.kind not in ("excision", "shave_removal", "destruction", "mohs"):
                continue
            for u in units:
                if u.section in HISTORY_SECTIONS:
                    continue
                same_item = p.lesion_no is not None and u.item == p.lesion_no
                sites = self._sites(u)
                near = [
                    s
                    for s in sites
                    if p.site is not None
                    and s[4] == p.site
                    and (s[1] is None or p.laterality is None or s[1] == p.laterality)
                ]
                if not near and not same_item:
                    continue
                if len(sites) > 1 and not near:
                    continue
                sizes = [
                    m
                    for m in u.meas
                    if _mv(m).get("kind") == "size" and _mv(m).get("role") == "lesion"
                ]
                if near and len(sites) > 1:
                    sizes = [m for m in sizes if min(sites, key=lambda s: _dist(m, s[0])) in near]
                if sizes:
                    m = min(sizes, key=lambda m: _dist(m, near[0][0]) if near else 0)
                    p.size_cm = _mv(m)["cm"]
                    p.evidence.append(_span_ev(m))
                    break
            else:
                # one lesion size in the whole note ("Exam: 0.7 cm irregular macule") and one
                # lesion procedure: it can only be that lesion's
                sized = [
                    m
                    for u in units
                    if u.section not in HISTORY_SECTIONS
                    for m in u.meas
                    if _mv(m).get("kind") == "size" and _mv(m).get("role") == "lesion"
                ]
                lesion_procs = [
                    q
                    for q in facts.procedures
                    if q.status == "performed"
                    and q.kind in ("excision", "shave_removal", "destruction", "mohs")
                ]
                if len(sized) == 1 and len(lesion_procs) == 1:
                    p.size_cm = _mv(sized[0])["cm"]
                    p.evidence.append(_span_ev(sized[0]))
        self._fill_single_site(units, facts)
        # "atypical nevi x2 ... saucerized both": two biopsies already, each of one lesion
        groups: dict[tuple[str, str], list[ProcedureFact]] = {}
        for p in facts.procedures:
            if p.status == "performed" and p.kind in PER_LESION and p.count and p.count_text:
                groups.setdefault((p.kind, p.count_text), []).append(p)
        for group in groups.values():
            if len(group) >= 2 and group[0].count <= len(group):
                for p in group:
                    p.count = None

    def _fill_single_site(self, units: list[Unit], facts: NoteFacts) -> None:
        """A note about one place ("O: dorsal distal index finger ... P: shave removal at
        base"): its only site is the site of its only siteless lesion procedure."""
        siteless = [
            p
            for p in facts.procedures
            if p.status == "performed" and p.site is None and p.kind in PER_LESION | {"destruction"}
        ]
        if len(siteless) != 1 or len([p for p in facts.procedures if p.status == "performed"]) != 1:
            return
        found = {
            (s[4], s[1], s[2], s[3]): s
            for u in units
            if u.section not in HISTORY_SECTIONS and u.section != "family_history"
            for s in self._sites(u)
        }
        places = {k[0] for k in found}
        if len(places) == 1:
            best = max(found.values(), key=lambda s: (s[1] is not None, s[3] is not None))
            p = siteless[0]
            p.site, p.laterality, p.eyelid, p.digit = best[4], best[1], best[2], best[3]
            p.evidence.append(_span_ev(best[0]))

    def _fill_from_blocks(self, units: list[Unit], facts: NoteFacts) -> None:
        """Sizes written in a procedure description, far from the procedure's own line.

        Only when the note has a single performed procedure of that kind, so the
        measurement cannot belong to another lesion.
        """
        mohs = [p for p in facts.procedures if p.kind == "mohs" and p.status == "performed"]
        if len(mohs) == 1:
            self._mohs_stages(units, mohs[0])
        block = [u for u in units if u.section in PROCEDURE_SECTIONS]
        if not block:
            return
        wants = {
            "excision": ("size_cm", "margin_cm"),
            "shave_removal": ("size_cm",),
            "destruction": ("size_cm",),
            "repair": ("length_cm",),
        }
        for kind, fields in wants.items():
            same = [p for p in facts.procedures if p.kind == kind and p.status == "performed"]
            if len(same) != 1:
                continue
            p = same[0]
            for field_name in fields:
                if getattr(p, field_name) is not None:
                    continue
                role = {
                    "size_cm": ("size", "lesion"),
                    "margin_cm": ("margin", "margin"),
                    "length_cm": ("size", "length"),
                }[field_name]
                for u in block:
                    hit = next(
                        (m for m in u.meas if (_mv(m).get("kind"), _mv(m).get("role")) == role),
                        None,
                    )
                    if hit is not None:
                        setattr(p, field_name, _mv(hit)["cm"])
                        p.evidence.append(_span_ev(hit))
                        break

    def _split_by_site(self, u: Unit, local: list[Cand]) -> list[Cand]:
        sites = self._sites(u)
        out: list[Cand] = []
        for c in local:
            if c.kind in PER_LESION and len(sites) > 1 and c.kind != "mohs":
                for s in sites:
                    out.append(
                        Cand(
                            c.kind,
                            u,
                            list(c.spans),
                            c.method,
                            s[0],
                            s[4],
                            s[1],
                            s[2],
                            s[3],
                            c.status,
                            dict(c.attrs),
                        )
                    )
            else:
                s = _nearest(c.spans[0], sites)
                if s:
                    c.site_span, c.side, c.eyelid, c.digit, c.site_id = s
                out.append(c)
        return out

    def _merge_across(self, cands: list[Cand]) -> list[Cand]:
        """Merge mentions of one procedure spread over a procedure-note block."""
        out: list[Cand] = []
        for c in cands:
            target = None
            for prev in reversed(out[-6:]):
                if None not in (c.unit.item, prev.unit.item) and c.unit.item != prev.unit.item:
                    continue  # "#1 incisional bx ... #2 punch bx": two lesions
                in_block = (
                    c.unit.section in PROCEDURE_SECTIONS and prev.unit.section in PROCEDURE_SECTIONS
                )
                # a description sentence with no site of its own continues the procedure
                # named earlier in the operative note, however long the description
                same_place = c.site_id is None or (
                    prev.site_id is not None
                    and self.region.get(c.site_id) == self.region.get(prev.site_id)
                    and (c.side is None or prev.side is None or c.side == prev.side)
                )  # "ellipse oriented along the leg axis" in a calf excision
                far_ok = (
                    in_block
                    and same_place
                    and c.status == prev.status == "performed"
                    and (c.kind == prev.kind or "removal" in (c.kind, prev.kind))
                    and c.unit.item == prev.unit.item  # "#2: ... excised" is not the title's
                )
                if not far_ok and (
                    c.unit.idx - prev.unit.idx > 8 or prev.unit.section != c.unit.section
                ):
                    continue
                if c.unit.section not in PROCEDURE_SECTIONS and c.unit.item != prev.unit.item:
                    continue
                if c.unit.section not in PROCEDURE_SECTIONS and c.unit.item is None:
                    continue
                kind = _merge_kind(prev, c) if prev.status == c.status else None
                if not kind:
                    continue
                if (
                    not far_ok
                    and c.site_id
                    and prev.site_id
                    and (c.site_id, c.side) != (prev.site_id, prev.side)
                ):
                    continue
                target = prev
                target.kind = kind
                break
            if target is None:
                out.append(c)
                continue
            target.spans.extend(c.spans)
            target.method = _better_method(target.method, c.method)
            if target.site_id is None and c.site_id:
                target.site_span, target.site_id, target.side = c.site_span, c.site_id, c.side
                target.eyelid, target.digit = c.eyelid, c.digit
        return out

    def _merge_sessions(self, cands: list[Cand]) -> list[Cand]:
        """Session services told several times (plan, procedure note, discharge summary) are one."""
        out: list[Cand] = []
        for c in cands:
            if c.kind in SESSION and c.status == "performed":
                twin = next(
                    (
                        p
                        for p in out
                        if p.kind == c.kind
                        and p.status == "performed"
                        and (
                            c.kind in WHOLE_SESSION
                            or (
                                (
                                    self.region.get(p.site_id) == self.region.get(c.site_id)
                                    or None in (p.site_id, c.site_id)
                                )
                                and (p.side == c.side or None in (p.side, c.side))
                            )
                        )
                    ),
                    None,
                )
                if twin is not None:
                    twin.spans.extend(c.spans)
                    twin.method = twin.method or c.method
                    if twin.site_id is None and c.site_id:
                        twin.site_span, twin.site_id, twin.side = c.site_span, c.site_id, c.side
                    continue
            out.append(c)
        return out

    def _merge_blocks(self, cands: list[Cand]) -> list[Cand]:
        """One procedure told twice: in the assessment/plan and again in a procedure note.

        Merged only across that section boundary, for the same kind and the same
        site and side (or no site on one side), so two biopsies of two back lesions
        listed in one plan stay two.
        """
        out: list[Cand] = []
        for c in cands:
            twin = None
            if c.unit.section in PROCEDURE_SECTIONS and c.status == "performed":
                for prev in out:
                    if prev.unit.section in PROCEDURE_SECTIONS or prev.status != "performed":
                        continue
                    kind = _merge_kind(prev, c)
                    if not kind or getattr(prev, "_twinned", False):
                        continue
                    if (
                        c.site_id
                        and prev.site_id
                        and (c.site_id, c.side) != (prev.site_id, prev.side)
                    ):
                        continue
                    if c.site_id is None and prev.site_id is None and prev.kind in PER_LESION:
                        continue
                    twin = prev
                    twin.kind = kind
                    break
            if twin is None:
                out.append(c)
                continue
            twin._twinned = True  # type: ignore[attr-defined]
            twin.spans.extend(c.spans)
            twin.method = _better_method(twin.method, c.method)
            if twin.site_id is None and c.site_id:
                twin.site_span, twin.site_id, twin.side = c.site_span, c.site_id, c.side
                twin.eyelid, twin.digit = c.eyelid, c.digit
            twin.attrs.setdefault("merged_units", []).append(c.unit.idx)
        return out

    def _fact(self, doc: Doc, c: Cand, units: list[Unit], facts: NoteFacts) -> ProcedureFact:
        u = c.unit
        kind = c.kind
        if kind == "repair_generic":
            kind = "repair"
        pf = ProcedureFact(
            kind=kind,
            method=c.method,
            status=c.status,  # type: ignore[arg-type]
            section=u.section,
            lesion_no=u.item,
            rule_id=_rid(c.spans[0]),
            evidence=[_span_ev(s) for s in c.spans],
            attrs={k: v for k, v in c.attrs.items() if k not in ("kind", "method")},
        )
        # units whose facts this procedure may use: its own, then its lesion item, then
        # earlier sentences of the same section/block
        # the sentences of every merged mention come first ("4th ILK session." ... "Procedure:
        # ILK ... into all 11 patches"), then the lesion item and the block around it
        starts = [v.start for v in units]
        own = [u]
        for sp in c.spans[1:]:
            k = bisect_right(starts, _sc(sp)) - 1
            if k >= 0 and units[k] not in own and (u.item is None or units[k].item == u.item):
                own.append(units[k])  # a mention outside the lesion's item lends no facts
        chain = list(own)
        for o in own:
            chain += [v for v in self._context_units(o, units) if v not in chain]
        # site: a repair or flap closes the wound of the excision/Mohs before it
        if c.site_id is None and kind in ("repair", "flap"):
            host = next(
                (
                    p
                    for p in reversed(facts.procedures)
                    if p.status == "performed"
                    and p.kind in ("excision", "mohs", "shave_removal", "biopsy")
                    and p.site
                ),
                None,
            )
            if host is not None:
                c.site_id, c.side, c.eyelid, c.digit = (
                    host.site,
                    host.laterality,
                    host.eyelid,
                    host.digit,
                )
                c.attrs["host_diagnoses"] = list(host.diagnoses)  # the wound it closes
        if c.site_id is None:
            for v in chain[1:]:
                s = self._sites(v)
                if kind.startswith("nail_"):  # a nail procedure is on a finger or a toe
                    s = [x for x in s if x[4] in ("finger", "toe")]
                if s and (len({x[4] for x in s}) == 1 or v.item is not None):
                    # one place named (perhaps twice: "L middle finger ... finger tourniquet")
                    c.site_span, c.side, c.eyelid, c.digit, c.site_id = s[0]
                    break
        if c.site_id is None:
            # "Dx: invasive SCC, R posterior shoulder" names the Mohs site for the whole note
            for i in self._link_dx(c, chain, facts):
                dx = facts.diagnoses[i]
                if dx.site and (not kind.startswith("nail_") or dx.site in ("finger", "toe")):
                    c.site_id, c.side, c.eyelid = dx.site, dx.laterality, dx.eyelid
                    break
        if c.site_id is None and not c.attrs.get("separate_lesion"):
            # "MOHS ... BCC" with the site only where the biopsy proved it: "shave bx of
            # nodular BCC, L nasal ala": another active mention of the same diagnosis
            concepts = {facts.diagnoses[i].concept for i in self._link_dx(c, chain, facts)}
            for dx in facts.diagnoses:
                if dx.site and dx.status == "active" and dx.concept in concepts - self.catchalls:
                    c.site_id, c.side, c.eyelid = dx.site, dx.laterality, dx.eyelid
                    break
        if c.site_id:
            pf.site, pf.laterality, pf.eyelid, pf.digit = c.site_id, c.side, c.eyelid, c.digit  # type: ignore[assignment]
            if c.site_span is not None:
                pf.evidence.append(_span_ev(c.site_span))
        # measurements
        self._measure(pf, c, chain)
        # counts
        self._count(doc, pf, c, chain)
        self._injected_volume(pf, chain)
        # diagnoses: same sentence, then lesion item, then chain
        pf.diagnoses = c.attrs.pop("host_diagnoses", None) or self._link_dx(c, chain, facts)
        pf.uncertain = any(facts.diagnoses[i].uncertain for i in pf.diagnoses)
        # intent
        text_window = " ".join(v.text for v in chain[:2]).lower()
        if re.search(
            r"\bcosmetic|self[- ]pay|for appearance|patient request|pt request", text_window
        ):
            pf.intent = "cosmetic"
        elif kind == "biopsy" or re.search(
            r"\b(bx|biops|r/o|rule out|to exclude|diagnos)", text_window
        ):
            pf.intent = "diagnostic"
        elif re.search(r"remov|shaved off|symptomatic|irritat|bleed|catch", text_window):
            pf.intent = "removal"
        if u.section in HISTORY_SECTIONS and pf.status == "performed":
            pf.status = "historical"
        return pf

    def _context_units(self, u: Unit, units: list[Unit]) -> list[Unit]:
        out: list[Unit] = []
        # same lesion item, earlier sentences first (the item header holds the site)
        if u.item is not None:
            # the same lesion number in this section, then in the exam/assessment lists
            same = [
                v
                for v in units
                if v.item == u.item and v.idx != u.idx and v.section not in HISTORY_SECTIONS
            ]
            out.extend(
                sorted(
                    same, key=lambda v: (v.section != u.section, v.idx > u.idx, abs(v.idx - u.idx))
                )
            )
        # procedure blocks: the whole section around it
        lo = max(0, u.idx - self.inherit_window)
        hi = min(
            len(units), u.idx + (self.inherit_window if u.section in PROCEDURE_SECTIONS else 3)
        )
        for v in sorted(units[lo:hi], key=lambda v: (v.idx > u.idx, abs(v.idx - u.idx))):
            if v.idx == u.idx or v in out:
                continue
            if v.section != u.section and not (
                u.section in PROCEDURE_SECTIONS
                and v.section in PROCEDURE_SECTIONS | {"preop_diagnosis", "diagnosis"}
            ):
                continue
            if u.item is not None and v.item is not None and v.item != u.item:
                continue
            if any(e.label_ == "PROCEDURE" for e in v.ents) and u.section not in PROCEDURE_SECTIONS:
                continue
            out.append(v)
        return out

    def _measure(self, pf: ProcedureFact, c: Cand, chain: list[Unit]) -> None:
        own = chain[0]
        for v in chain:
            meas = v.meas
            if v is own and c.site_span is not None and len(self._sites(v)) > 1:
                # pick the measurements nearest this site
                meas = _nearest_meas(meas, c.site_span)
            for sp in meas:
                val = _mv(sp)
                k = val.get("kind")
                role = val.get("role")
                if k == "size":
                    if pf.kind == "repair" and (
                        role == "length" or (role == "lesion" and v is own and _repair_alone(own))
                    ):
                        if pf.length_cm is None:
                            pf.length_cm = val["cm"]
                            pf.evidence.append(_span_ev(sp))
                    elif role == "excised":
                        if pf.excised_cm is None:
                            pf.excised_cm = val["cm"]
                            pf.evidence.append(_span_ev(sp))
                    elif role == "lesion" and pf.size_cm is None and pf.kind != "repair":
                        pf.size_cm = val["cm"]
                        pf.evidence.append(_span_ev(sp))
                elif k == "margin" and pf.margin_cm is None:
                    pf.margin_cm = val["cm"]
                    pf.evidence.append(_span_ev(sp))
                elif k == "area" and pf.area_sqcm is None:
                    pf.area_sqcm = val["sqcm"]
                    pf.evidence.append(_span_ev(sp))
                elif k == "stages" and v is own:
                    pf.stages = max(pf.stages or 0, val["n"])
                elif k == "stage_no":
                    pf.stages = max(pf.stages or 0, val["n"])
                elif k == "blocks":
                    pf.blocks.append(val["n"])
                elif k == "dose" and pf.dose_mg is None and v in chain[:3]:
                    pf.dose_mg = val["value"]
                elif k == "concentration" and v in chain[:3]:
                    pf.attrs["conc_mg_ml"] = val["value"]
                elif k == "volume" and v in chain[:3]:
                    # "0.1 mL per point ... total volume 2.4 mL": the total is the largest
                    pf.attrs["volume_ml"] = max(val["value"], pf.attrs.get("volume_ml", 0.0))
                elif k in ("sticks", "grams") and v in chain[:3]:
                    pf.drug_units = float(val.get("n") or val.get("value") or 0)
            if (
                pf.kind not in ("repair", "mohs", "excision")
                and v is own
                and pf.size_cm is not None
            ):
                break

    def _injected_volume(self, pf: ProcedureFact, chain: list[Unit]) -> None:
        """The volume injected in all: a "total volume" line wins over "0.1 mL per point";
        "0.25 mL into each of 2 keloids" is 0.5 mL."""
        if pf.kind != "injection":
            return
        for v in chain[:5]:
            m = _TOTAL_VOL.search(v.text)
            if m:
                pf.attrs["volume_ml"] = float(m.group(1))
                return
        vol = pf.attrs.get("volume_ml")
        if vol and pf.count and any(_EACH_VOL.search(v.text) for v in chain[:2]):
            pf.attrs["volume_ml"] = round(vol * pf.count, 3)

    def _count(self, doc: Doc, pf: ProcedureFact, c: Cand, chain: list[Unit]) -> None:
        total = 0
        found = False
        # the first sentence (own mentions first) that states a count: counts written in
        # the exam and again in the procedure note are the same lesions, not a sum
        for v in chain[:3] if pf.kind not in PER_LESION else chain[:1]:
            n, ev = _count_in(doc, self._text, v)
            if n:
                total = n
                found = True
                pf.evidence.extend(ev)
                break
        if found:
            pf.count = total
            pf.count_text = ", ".join(e.text for e in pf.evidence[-3:])

    def _link_dx(self, c: Cand, chain: list[Unit], facts: NoteFacts) -> list[int]:
        by_unit: dict[int, list[int]] = {}
        for i, dx in enumerate(facts.diagnoses):
            by_unit.setdefault(dx.evidence[0].start, []).append(i)
        picks: list[int] = []
        for v in chain:
            for i, dx in enumerate(facts.diagnoses):
                s = dx.evidence[0].start
                if v.start <= s < v.end and dx.status in ("active",):
                    if c.site_id and dx.site and dx.site != c.site_id and v is not chain[0]:
                        continue
                    picks.append(i)
            if picks:
                break
        if not picks:
            # same lesion number or same site and side anywhere in assessment/pathology
            for i, dx in enumerate(facts.diagnoses):
                if dx.status != "active":
                    continue
                if c.unit.item is not None and dx.lesion_no == c.unit.item:
                    picks.append(i)
                elif c.site_id and dx.site == c.site_id and (dx.laterality == c.side or not c.side):
                    picks.append(i)
        if picks and all(facts.diagnoses[i].concept in self.catchalls for i in picks):
            better = [
                i
                for i, dx in enumerate(facts.diagnoses)
                if dx.status == "active"
                and dx.concept not in self.catchalls
                and dx.site is not None
                and dx.site == (c.site_id or dx.site)
                and (c.side is None or dx.laterality in (None, c.side))
                and self.dx_class.get(dx.concept)
                in self.fit.get(c.kind, {self.dx_class.get(dx.concept)})
            ]
            if better and c.site_id is not None:
                picks = better[:2]
            elif c.site_id is None:
                # no site to compare: the one specific diagnosis of the note that fits
                fits = {
                    facts.diagnoses[i].concept: i
                    for i in range(len(facts.diagnoses))
                    if facts.diagnoses[i].status == "active"
                    and facts.diagnoses[i].concept not in self.catchalls
                    and self.dx_class.get(facts.diagnoses[i].concept) in self.fit.get(c.kind, set())
                }
                if len(fits) == 1:
                    picks = [*fits.values(), *picks]
        # "cyst removal L flank ... clinically epidermoid cyst": the specific form names it
        refined: list[int] = []
        for i in picks:
            better = self.refined_by.get(facts.diagnoses[i].concept)
            if not better:
                continue
            refined += [
                j
                for j, dx in enumerate(facts.diagnoses)
                if dx.status == "active"
                and dx.concept in better
                and j not in picks
                and (dx.site is None or c.site_id is None or dx.site == c.site_id)
            ]
        if refined:
            picks = list(dict.fromkeys(refined + picks))
        if not picks:
            picks = self._fallback_dx(c, facts)
        # pathology results for this lesion go first
        picks.sort(key=lambda i: facts.diagnoses[i].source != "pathology")
        return picks

    def _fallback_dx(self, c: Cand, facts: NoteFacts) -> list[int]:
        """No diagnosis near the procedure: the note's active diagnoses that can justify it.

        "NB-UVB today" in a psoriasis note is for the psoriasis; assessment and
        pathology mentions are preferred, and each concept is taken once.
        """
        classes = self.fit.get(c.kind)
        if not classes:
            return []
        ranked = sorted(
            (
                i
                for i, dx in enumerate(facts.diagnoses)
                if dx.status == "active" and self.dx_class.get(dx.concept) in classes
            ),
            key=lambda i: facts.diagnoses[i].source not in ("assessment", "pathology", "procedure"),
        )
        out: list[int] = []
        seen: set[str] = set()
        for i in ranked:
            if facts.diagnoses[i].concept not in seen:
                seen.add(facts.diagnoses[i].concept)
                out.append(i)
        return out[:1] if c.kind in PER_LESION else out[:2]


_SEPARATE = re.compile(
    r"(?i)\b(?:additional|another|separate|second|different|unrelated)\s+(?:\w+\s+){0,2}?"
    r"(?:lesion|spot|papule|growth|nodule|macule|plaque)|pointed out|also noted|incidental"
)
_NAILISH = re.compile(r"nail|matri|toe|ingrown|onycho|paronych")
_INTRALESIONAL = re.compile(
    r"intralesional|\bil\b|\bilk\b|\bil[- ](?:tac|kenalog|steroid|triamcinolone)"
    r"|kenalog[- ]?\d|mg/ml|mg / ml"
    r"|(?:kenalog|triamcinolone|tac|steroid)\b[^.;]{0,40}\binject|inject\w*[^.;]{0,40}(?:kenalog|triamcinolone|tac\b|steroid)"
)
_HEAD_REF = re.compile(
    r"^\s*[A-Za-z /&]{0,30}\(?\s*(?:#|lesion\s*#?)\s*(\d{1,2})\s*\)?\s*[:-]", re.I
)
_TOTAL_VOL = re.compile(r"(?i)total(?:\s+volume)?(?:\s+of)?[\s:=]*(\d+(?:\.\d+)?)\s*(?:ml|cc)\b")
_EACH_VOL = re.compile(
    r"(?i)(?:ml|cc)\s+(?:into|to|in|per)\s+each\b|\beach\s+(?:lesion|keloid|cyst|patch)"
)
_NOT_LESIONS_BEFORE = re.compile(
    r"nylon|prolene|vicryl|monocryl|suture|stitch|staple|cycle|freeze|thaw|sec\b|applications?|passes"
)
_CURETTAGE = re.compile(r"(?i)&|curett|\+")
_BLANK_END = re.compile(r"\n[ \t]*\n\s*$")
_EVERY = re.compile(r"(?i)\b(?:both|each(?:\s+lesion)?|all\s+(?:\d+|two|three|four|five))\b")
_PLURAL = re.compile(r"(?i)(?:ions|ies|als|multiple)\b")
_DATED = re.compile(
    r"[\s,(]{0,3}(?:on\s+|in\s+|done\s+)?(?:\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\d{1,2}/\d{4}|(?:19|20)\d\d\b)"
)
# "..., 2019, wide local excision": a year just before the procedure word
_DATED_BEFORE = re.compile(r"\b(?:19|20)\d\d\b[\s,:;-]{1,4}(?:[A-Za-z-]+\s+){0,2}$")
# number words from the measurement stage's table (one vocabulary for the project)
_WORDS = "|".join(
    w for w in WORD_NUMBERS if w.isalpha() and w not in ("i", "ii", "iii", "iv", "v", "vi")
)
_NUM_RE = re.compile(rf"(?i)(?<![\w.#/-])(\d{{1,3}}|{_WORDS})(?![\w.%/-])")
_SITE_NUM = re.compile(
    rf"[\s:=-]{{1,3}}(\d{{1,2}}|{_WORDS})\b"
    r"(?![\s.]*(?:mm|cm|%|x\s*\d|months?|weeks?|days?|years?))",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[\w'/-]+|[^\w\s]")
_NOT_COUNTED = {
    "mm",
    "cm",
    "mg",
    "ml",
    "cc",
    "%",
    "-",
    "/",
    "x",
    "months",
    "month",
    "weeks",
    "week",
    "days",
    "day",
    "years",
    "year",
    "yo",
    "y/o",
    ":",
    ".",
    "sec",
    "seconds",
    "minutes",
    "min",
    "times",
    "cycles",
    "cycle",
    "hours",
    "hrs",
    "units",
    "g",
    "gm",
    "stages",
    "stage",
    "blocks",
    "sutures",
    # ages: "31 F, alopecia areata"
    "f",
    "m",
    "yof",
    "yom",
    "year-old",
    "yr-old",
}


def _count_in(doc: Doc, text: str, v: Unit) -> tuple[int, list[Evidence]]:
    """Lesion count of a sentence: "x12", "(6)", "12 AKs", "eighteen lesions", per-site sums.

    Works on the sentence text and its entity offsets: a number counts when one of the
    next three words is a lesion noun or starts a diagnosis, before any site,
    procedure or side intervenes ("3 AKs", "two warts", "face 6 lesions, arms 5 lesions").
    """
    total = 0
    ev: list[Evidence] = []
    for sp in v.meas:
        val = _mv(sp)
        if val.get("kind") == "count":
            before = text[max(0, _sc(sp) - 14) : _sc(sp)].lower()
            if _NOT_LESIONS_BEFORE.search(before):
                continue  # "4-0 nylon x3", "2 cycles x2": sutures and cycles, not lesions
            total += val["n"]
            ev.append(_span_ev(sp))
    if total:
        return total, ev
    stext = v.text
    if not _NUM_RE.search(stext):
        return 0, ev
    # "face nine, scalp six, dorsal hands three": a number right after each site
    for e, lab in zip(v.ents, v.labels, strict=True):
        if lab != "SITE":
            continue
        m = _SITE_NUM.match(stext, _ec(e) - v.start)
        if m:
            n = to_number(m.group(1))
            if n:
                total += int(n)
                s0, e0 = _sc(e), v.start + m.end()
                ev.append(Evidence.model_construct(start=s0, end=e0, text=text[s0:e0]))
    if total:
        return total, ev
    starts = {_sc(e) - v.start: e.label_ for e in v.ents}
    for m in _NUM_RE.finditer(stext):
        n = to_number(m.group(1))
        if n is None or n <= 0 or n > 200:
            continue
        pos = m.end()
        hit_end = None
        for k, w in enumerate(islice(_WORD_RE.finditer(stext, pos), 3)):
            word = w.group(0).lower()
            if k == 0 and word in _NOT_COUNTED:
                break
            label = starts.get(w.start())
            if word in LESION_NOUNS or label == "DIAGNOSIS":
                hit_end = w.end()
                break
            if label in ("SITE", "PROCEDURE", "LATERALITY"):
                break
        if hit_end is not None:
            total += int(n)
            s0, e0 = v.start + m.start(), v.start + hit_end
            ev.append(Evidence.model_construct(start=s0, end=e0, text=text[s0:e0]))
    return total, ev


def _nearest(span: Span, sites: list) -> tuple | None:
    if not sites:
        return None
    return min(sites, key=lambda s: _dist(span, s[0]) + (0 if s[0].start >= span.start else 0.5))


def _dist(a: Span, b: Span) -> int:
    if a.end <= b.start:
        return b.start - a.end
    if b.end <= a.start:
        return a.start - b.end
    return 0


def _nearest_meas(meas: list[Span], site: Span) -> list[Span]:
    """Measurements closer to this site than to any other site in the sentence."""
    return sorted(meas, key=lambda m: _dist(m, site))[:3]


def _merge_kind(a: Cand, b: Cand) -> str | None:
    if a.kind == b.kind:
        return a.kind
    key = frozenset({a.kind, b.kind})
    if key in COMPATIBLE:
        return COMPATIBLE[key]
    if {a.kind, b.kind} & {"repair_generic"} and {a.kind, b.kind} & {"repair"}:
        return "repair"
    return None


_REMOVING_KINDS = {"excision", "shave_removal", "destruction", "tag_removal", "mohs", "biopsy"}
_CLASS_RANK = {"complex": 3, "intermediate": 2, "simple": 1}


def _better_class(a: str | None, b: str | None) -> str | None:
    """The more complicated repair class of two mentions of one repair."""
    if a is None or b is None:
        return a or b
    return a if _CLASS_RANK.get(a, 0) >= _CLASS_RANK.get(b, 0) else b


def _better_method(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if METHOD_RANK.get(a, 0) >= METHOD_RANK.get(b, 0) else b


def _combine_status(a: str, b: str) -> str:
    return a if a != "performed" else b


def _repair_alone(u: Unit) -> bool:
    """A sentence about a repair and nothing else: its bare length is the repair's."""
    kinds = {_a(e).get("kind") for e in u.ents if e.label_ == "PROCEDURE"}
    return kinds <= {"repair", None}


def _repair_ok(c: Cand) -> bool:
    """A bare "closed"/"repair" is a repair only with a length in its sentence."""
    return any(_mv(m).get("role") == "length" for m in c.unit.meas)


def _neg_near(text: str, e: Span) -> bool:
    # within the mention's own sentence: "No trauma recalled. Dermoscopy: ..." is not negated
    left = re.split(r"[.;:\n]", text[max(0, _sc(e) - 20) : _sc(e)].lower())[-1]
    right = re.split(r"[.;\n]", text[_ec(e) : _ec(e) + 25].lower())[0]
    return bool(re.search(r"\bno\b|\bnot\b|without|deferred", left)) or bool(
        re.search(r"^\W*(?:was |were )?(?:not performed|not done|deferred|declined)", right)
    )


def _path_near(text: str, e: Span) -> bool:
    # within the mention's own sentence: "Sent to dermpath.\n\nRTC 6 wks (AD)" is no result
    left = re.split(r"[.;]\s|\n", text[max(0, _sc(e) - 45) : _sc(e)].lower())[-1]
    return bool(
        re.search(
            r"(path(?:ology)?(?: report| result)?s?\s*"
            r"(?:showed|shows|revealed|returned|confirmed|c/w|:|=|-)|"
            r"bx[- ]proven|biopsy[- ]proven|biopsy (?:showed|revealed|confirmed)|"
            r"bx (?:showed|revealed)|"
            r"histolog\w* (?:showed|revealed|confirmed|c/w)|"
            r"dermpath\s*(?::|-|showed|shows|revealed|c/w)|returned (?:as|showing))",
            left,
        )
    )


@Language.factory(
    "dermcode_lesions",
    assigns=["doc._.dc_facts"],
    default_config={"inherit_window": 6},
)
def make_lesions(nlp: Language, name: str, inherit_window: int) -> DermLesions:
    """Factory for lesion/procedure assembly."""
    return DermLesions(nlp, name, inherit_window)
