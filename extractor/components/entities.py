"""dermcode_entities: procedures, diagnoses, sites, laterality, dermoscopy and cues.

All rules live in ``patterns/entities/*.jsonl``. Literal and token-pattern rules
run through one medspaCy TargetMatcher; two kinds of rule take faster roads with
the same result: case-sensitive single-token rules ("AK", "MIS", "L") are looked
up in a dict of token texts (spaCy's Matcher evaluates an ``IN`` predicate on every
token, which cost more than all literal rules together), and regex rules run once
over the note text (medspaCy's RegexMatcher rebuilds ``doc.text`` per rule).
Overlaps are resolved longest-first ("shave biopsy" beats "shave", "biopsy-proven"
beats "biopsy") and written to ``doc.ents`` in one assignment; each span carries
its rule id and attributes as plain values.
"""

import re
from typing import Any

from medspacy.common.medspacy_matcher import MedspacyMatcher
from medspacy.target_matcher import TargetRule as MsTargetRule
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span

from extractor import _extensions
from extractor.patterns import cached_family
from extractor.schemas import TargetRule


def _exact_texts(pattern: Any) -> list[str] | None:
    """Token texts of a one-token, TEXT-only pattern; None for anything richer."""
    if not isinstance(pattern, list) or len(pattern) != 1:
        return None
    tok = pattern[0]
    if set(tok) != {"TEXT"}:
        return None
    val = tok["TEXT"]
    if isinstance(val, str):
        return [val]
    if isinstance(val, dict) and set(val) == {"IN"}:
        return list(val["IN"])
    return None


class DermEntities:
    """Every entity family, written to ``doc.ents``."""

    def __init__(self, nlp: Language, name: str) -> None:
        _extensions.register()
        self.name = name
        # TargetMatcher's own engine: medspaCy's MedspacyMatcher over TargetRules. Calling
        # it directly returns (rule, start, end) without building a Span per match.
        self.matcher = MedspacyMatcher(nlp, name=f"{name}_inner", phrase_matcher_attr="LOWER")
        self.regexes: list[tuple[re.Pattern[str], TargetRule]] = []
        self.exact: dict[str, TargetRule] = {}
        ms_rules = []
        for row in cached_family("entities", TargetRule):
            texts = _exact_texts(row.pattern)
            if isinstance(row.pattern, str):
                self.regexes.append((re.compile(row.pattern), row))
            elif texts is not None:
                for t in texts:
                    self.exact.setdefault(t, row)
            else:
                ms_rules.append(
                    MsTargetRule(
                        literal=row.literal,
                        category=row.category,
                        pattern=row.pattern,
                        metadata={"id": row.id, "attrs": row.attrs},
                    )
                )
        self.matcher.add(ms_rules)
        self.exact_matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        self._exact_rows = {}
        for t, row in self.exact.items():
            key = f"{row.id}|{t}"
            self._exact_rows[nlp.vocab.strings.add(key)] = row
            self.exact_matcher.add(key, [nlp.make_doc(t)])

    def __call__(self, doc: Doc) -> Doc:
        rule_map = self.matcher.rule_map
        strings = doc.vocab.strings
        # (start, end, label, rule id, attrs): plain tuples until the overlaps are resolved
        found: list[tuple[int, int, str, str, dict]] = []
        for match_id, start, end in self.matcher(doc):
            rule = rule_map[strings[match_id]]
            meta = rule.metadata
            found.append((start, end, rule.category, meta["id"], meta["attrs"]))
        for key, start, end in self.exact_matcher(doc):
            row = self._exact_rows[key]
            found.append((start, end, row.category, row.id, row.attrs))
        if self.regexes:
            text = _extensions.note_text(doc)
            low = text.lower()
            for rx, row in self.regexes:
                if row.requires and not any(w in low for w in row.requires):
                    continue
                for m in rx.finditer(text):
                    sp = doc.char_span(m.start(), m.end(), alignment_mode="expand")
                    if sp is not None:
                        found.append((sp.start, sp.end, row.category, row.id, row.attrs))
        # longest first, then leftmost (spacy.util.filter_spans' order), no token reused
        found.sort(key=lambda f: (f[0] - f[1], f[0]))
        taken = bytearray(len(doc))
        kept = []
        for f in found:
            start, end = f[0], f[1]
            if any(taken[start:end]):
                continue
            taken[start:end] = b"\x01" * (end - start)
            kept.append(f)
        kept.sort()
        table = doc._.dc_span_meta
        if table is None:
            table = doc._.dc_span_meta = {}
        for start, end, _label, rid, attrs in kept:
            table[(start, end)] = (rid, attrs)
        doc.ents = [Span(doc, f[0], f[1], label=f[2]) for f in kept]
        # plain (start, end, label) triples for dermcode_lesions: doc.ents builds a Span per
        # entity on every access
        doc.user_data["dc_ents"] = [(f[0], f[1], f[2]) for f in kept]
        return doc


@Language.factory(
    "dermcode_entities",
    assigns=["doc.ents", "span._.dc_attrs", "span._.dc_rule_id"],
)
def make_entities(nlp: Language, name: str) -> DermEntities:
    """Factory for entity extraction from ``patterns/entities/``."""
    return DermEntities(nlp, name)
