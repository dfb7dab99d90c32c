"""dermcode_measurements: sizes, margins, repair lengths, areas, doses and counts.

Regexes from ``patterns/measurements.jsonl`` run over the text in file order; an
earlier rule's match wins an overlap, so "1.2 x 0.8 cm" is one size and not two
single lengths. A bare length is given a role from the words around it
(``patterns/measurement_roles.jsonl``): "4 mm punch" is a tool, "3 mm margins" a
margin, "repaired ... 3.2 cm" a repair length, "defect 1.4 cm" a defect. Sutures
("4-0 nylon") are matched only to be thrown away. Everything is in cm.
"""

import re
from dataclasses import dataclass

from spacy.language import Language
from spacy.tokens import Doc, Span

from extractor import _extensions
from extractor.patterns import cached_family
from extractor.schemas import MeasureRoleRule, MeasureRule

WORD_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "single": 1,
    "a single": 1,
    "i": 1,
    "ii": 2,
    "iii": 3,
    "iv": 4,
    "v": 5,
    "vi": 6,
}


def to_number(text: str) -> float | None:
    """Digits, decimals, number words and roman stage numerals."""
    t = text.strip().lower()
    if t in WORD_NUMBERS:
        return float(WORD_NUMBERS[t])
    try:
        return float(t)
    except ValueError:
        return None


def to_cm(value: float, unit: str | None) -> float:
    """mm ÷ 10; cm as is (CODING_CONVENTIONS §1.5)."""
    return value / 10.0 if unit and unit.lower().startswith(("mm", "milli")) else value


_SENT_END = re.compile(r"(?<=[.;])\s+(?=[A-Z#\d])|\n\s*\n|\n(?=\s*[A-Z#\d-])")


_OTHER_MEASURE = re.compile(r"\d+(?:\.\d+)?\s*(?:mm|cm)\b")


@dataclass(frozen=True)
class _Compiled:
    rule: MeasureRule
    regex: re.Pattern[str]


class DermMeasurements:
    """Writes ``doc.spans["dc_measure"]``; each span's ``_.dc_value`` holds the normalised value."""

    def __init__(self, nlp: Language, name: str) -> None:
        _extensions.register()
        self.name = name
        self.rules = [
            _Compiled(r, re.compile(r.regex))
            for r in cached_family("measurements.jsonl", MeasureRule)
        ]
        self.roles = list(cached_family("measurement_roles.jsonl", MeasureRoleRule))
        self._role_res = [
            (
                role,
                re.compile(r"(?i)(?<![a-z])(?:" + "|".join(re.escape(w) for w in role.words) + r")")
                if role.words
                else None,
            )
            for role in self.roles
        ]

    def role_of(self, text: str, start: int, end: int) -> str:
        """The role whose words stand nearest the measurement, within its sentence.

        "Final defect 2.3 x 1.9 cm.\n\nRepair: ... Length 6.5 cm": the defect word is
        next to the first size and the repair words belong to the next sentence, so
        the nearest keyword in the same sentence decides, and file order breaks ties.
        """
        best: tuple[int, int, str] | None = None
        for order, (role, rx) in enumerate(self._role_res):
            if rx is None:
                continue
            if role.side in ("left", "both"):
                left = _SENT_END.split(text[max(0, start - role.window) : start])[-1]
                left = _OTHER_MEASURE.split(left)[-1]  # a keyword beyond another length is its
                hits = list(rx.finditer(left))
                if hits:
                    cand = (len(left) - hits[-1].end(), order, role.role)
                    best = min(best, cand) if best else cand
            if role.side in ("right", "both"):
                right = _SENT_END.split(text[end : end + role.window], maxsplit=1)[0]
                right = _OTHER_MEASURE.split(right, maxsplit=1)[0]
                hit = rx.search(right)
                if hit:
                    cand = (hit.start(), order, role.role)
                    best = min(best, cand) if best else cand
        return best[2] if best else "lesion"

    def __call__(self, doc: Doc) -> Doc:
        text = _extensions.note_text(doc)
        low = text.lower()
        meta: dict = {}
        taken: list[tuple[int, int]] = []
        spans: list[Span] = []
        for comp in self.rules:
            req = comp.rule.requires
            if req and not any(w in low for w in req):
                continue
            for m in comp.regex.finditer(text):
                s, e = m.span()
                if s == e or any(s < te and ts < e for ts, te in taken):
                    continue
                taken.append((s, e))
                value = self._value(comp.rule, m, text)
                if value is None:
                    continue
                span = doc.char_span(s, e, label=comp.rule.kind, alignment_mode="expand")
                if span is None:
                    continue
                meta[(span.start, span.end, "m")] = (comp.rule.id, value)
                spans.append(span)
        spans.sort(key=lambda sp: sp.start_char)
        doc.spans["dc_measure"] = spans
        doc.user_data["dc_meas"] = [(sp.start, sp.end) for sp in spans]
        table = doc._.dc_span_meta
        if table is None:
            table = doc._.dc_span_meta = {}
        # measurement spans may share offsets with an entity; they are read by (start, end, "m")
        table.update(meta)
        return doc

    def _value(self, rule: MeasureRule, m: re.Match[str], text: str) -> dict | None:
        kind = rule.kind
        gd = m.groupdict()
        if kind == "suture":
            return None
        a = to_number(gd.get("a") or "")
        if a is None:
            return None
        if kind == "size":
            unit = gd.get("unit")
            dims = [to_cm(a, gd.get("ua") or unit)]
            for k in ("b", "c"):
                if gd.get(k):
                    dims.append(to_cm(float(gd[k]), unit))
            role = self.role_of(text, *m.span())
            if role in ("margin", "tool"):
                role = "lesion"
            return {"kind": "size", "cm": max(dims), "dims": dims, "role": role}
        if kind == "margin":
            unit = gd.get("unit")
            vals = [a] + ([float(gd["b"])] if gd.get("b") else [])
            return {"kind": "margin", "cm": to_cm(min(vals), unit), "role": "margin"}
        if kind == "single":
            cm = to_cm(a, gd.get("unit"))
            role = self.role_of(text, *m.span())
            if role == "tool":
                return {"kind": "tool", "cm": cm, "role": "tool"}
            if role == "margin":
                return {"kind": "margin", "cm": cm, "role": "margin"}
            return {"kind": "size", "cm": cm, "dims": [cm], "role": role}
        if kind == "area":
            return {"kind": "area", "sqcm": a}
        if kind in ("count", "blocks", "stages", "stage_no", "sticks"):
            return {"kind": kind, "n": int(a)}
        return {"kind": kind, "value": a}


@Language.factory("dermcode_measurements", assigns=["doc.spans", "span._.dc_value"])
def make_measurements(nlp: Language, name: str) -> DermMeasurements:
    """Factory for measurement extraction from ``patterns/measurements.jsonl``."""
    return DermMeasurements(nlp, name)
