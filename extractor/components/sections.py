"""dermcode_sections: note sections from medspaCy section rules and our title list.

A title counts only when it is followed by a colon, a dash or a line break, so the
word "plan" inside a sentence does not open a plan section while "PLAN:," in an
MTSamples export and "Assessment and Plan" alone on a line do.

The titles are medspaCy ``SectionRule`` objects matched by ``MedspacyMatcher`` (the
Sectionizer's own matcher, longest match wins), and the result is a list of
medspaCy ``Section`` objects on ``doc._.sections``, as the Sectionizer would set.
We do not call ``Sectionizer.__call__`` itself: after matching it writes section
attributes onto every token of the note, which cost more than the rest of the
stage and which nothing in dermcode reads. Sections are also stored as plain
(category, start_char, end_char) triples on ``doc._.dc_section_spans``.
"""

from medspacy.common.medspacy_matcher import MedspacyMatcher
from medspacy.section_detection import Section, SectionRule
from spacy.language import Language
from spacy.tokens import Doc

from extractor import _extensions
from extractor.patterns import cached_family
from extractor.schemas import SectionRuleRow

_FOLLOWERS = {":", "-", "–", "—"}


def build_rules() -> list[SectionRule]:
    """Phrase rules for every title; what must follow a title is checked afterwards.

    Literal rules go to spaCy's PhraseMatcher, which is several times faster than
    token patterns with a trailing punctuation predicate.
    """
    return [
        SectionRule(literal=row.literal, category=row.category)
        for row in cached_family("sections.jsonl", SectionRuleRow)
    ]


class DermSections:
    """Finds section titles and keeps medspaCy Sections and plain triples on the Doc."""

    def __init__(self, nlp: Language, name: str) -> None:
        _extensions.register()
        if not Doc.has_extension("sections"):
            Doc.set_extension("sections", default=None)
        self.name = name
        self.matcher = MedspacyMatcher(nlp, name=f"{name}_inner", phrase_matcher_attr="LOWER")
        self.matcher.add(build_rules())

    def _sections(self, doc: Doc) -> list[Section]:
        """Title matches → Section objects: each body runs to the next title."""
        rule_map = self.matcher.rule_map
        strings = doc.vocab.strings
        matches = sorted(self.matcher(doc), key=lambda m: m[1])
        out: list[Section] = []
        if not matches or matches[0][1] != 0:
            out.append(Section(None, 0, 0, 0, matches[0][1] if matches else len(doc)))
        for i, (match_id, start, end) in enumerate(matches):
            rule = rule_map[strings[match_id]]
            body_end = matches[i + 1][1] if i + 1 < len(matches) else len(doc)
            out.append(Section(rule.category, start, end, end, body_end, None, rule))
        return out

    def __call__(self, doc: Doc) -> Doc:
        kept: list[Section] = []
        for sec in self._sections(doc):
            if sec.category is None or _valid_title(doc, sec):
                kept.append(sec)
            elif kept:  # not a title after all: its text belongs to the section before
                prev = kept[-1]
                kept[-1] = Section(
                    prev.category,
                    prev.title_start,
                    prev.title_end,
                    prev.body_start,
                    sec.body_end,
                    prev.parent,
                    prev.rule,
                )
            else:
                kept.append(Section(None, 0, 0, 0, sec.body_end))
        doc._.sections = kept
        out = []
        for sec in kept:
            if sec.body_end <= sec.title_start:
                continue
            start = doc[sec.title_start].idx
            last = doc[sec.body_end - 1]
            out.append((sec.category or "none", start, last.idx + len(last.text)))
        doc._.dc_section_spans = out
        return doc


def _starts_line(doc: Doc, i: int) -> bool:
    return i == 0 or (doc[i - 1].is_space and "\n" in doc[i - 1].text) or doc[i - 1].text == "\n"


def _valid_title(doc: Doc, sec: Section) -> bool:
    """A title is followed by a colon or dash, or stands alone on its line.

    Titles of one or two letters ("A:", "P:") must also open a line, so "a:" in
    running text never starts an assessment.
    """
    end = sec.title_end
    if end >= len(doc):
        return False
    if sec.title_start > 0 and doc[sec.title_start - 1].text in ("(", "["):
        return False  # "(path: SCCIS ...)" is an aside, not a section
    nxt = doc[end]
    short = len(doc[sec.title_start : end].text) <= 2
    if nxt.text in _FOLLOWERS:
        return not short or _starts_line(doc, sec.title_start)
    if nxt.text == "(" or (nxt.like_num and not short):
        # "PATHOLOGY ADDENDUM (received 06/14):", "ADDENDUM 03/02/2026 (Dr. X):"
        toks = doc[end : min(len(doc), end + 12)]
        for k, tok in enumerate(toks):
            if tok.text.endswith(":"):  # ":" or "):" as the tokenizer keeps it
                return True
            if tok.text == ")" and _starts_line(doc, sec.title_start):
                # "Assessment & Plan (est patient)" alone on its line
                nxt_tok = toks[k + 1] if k + 1 < len(toks) else None
                return nxt_tok is None or (nxt_tok.is_space and "\n" in nxt_tok.text)
            if "\n" in tok.text:
                break
        return False
    if nxt.is_space and "\n" in nxt.text:
        return _starts_line(doc, sec.title_start)
    return False


@Language.factory("dermcode_sections", assigns=["doc._.sections", "doc._.dc_section_spans"])
def make_sections(nlp: Language, name: str) -> DermSections:
    """Factory for section detection with the rules in ``patterns/sections.jsonl``."""
    return DermSections(nlp, name)
