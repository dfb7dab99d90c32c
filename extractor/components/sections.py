"""dermcode_sections: note sections with medspaCy's Sectionizer and our title list.

A title counts only when it is followed by a colon, a dash or a line break, so the
word "plan" inside a sentence does not open a plan section while "PLAN:," in an
MTSamples export and "Assessment and Plan" alone on a line do. The resulting
sections are also stored as plain (category, start_char, end_char) triples.
"""


from medspacy.section_detection import Section, Sectionizer, SectionRule
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
    """Runs the Sectionizer and keeps plain section triples on the Doc."""

    def __init__(self, nlp: Language, name: str) -> None:
        _extensions.register()
        self.name = name
        self.sectionizer = Sectionizer(nlp, name=f"{name}_inner", rules=None, span_attrs=None)
        self.sectionizer.add(build_rules())

    def __call__(self, doc: Doc) -> Doc:
        doc = self.sectionizer(doc)
        kept: list[Section] = []
        for sec in doc._.sections:
            if sec.category is None or _valid_title(doc, sec):
                kept.append(sec)
            elif kept:  # not a title after all: its text belongs to the section before
                prev = kept[-1]
                kept[-1] = Section(
                    prev.category, prev.title_start, prev.title_end, prev.body_start,
                    sec.body_end, prev.parent, prev.rule,
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
    nxt = doc[end]
    short = len(doc[sec.title_start : end].text) <= 2
    if nxt.text in _FOLLOWERS:
        return not short or _starts_line(doc, sec.title_start)
    if nxt.is_space and "\n" in nxt.text:
        return _starts_line(doc, sec.title_start)
    return False


@Language.factory("dermcode_sections", assigns=["doc._.sections", "doc._.dc_section_spans"])
def make_sections(nlp: Language, name: str) -> DermSections:
    """Factory for section detection with the rules in ``patterns/sections.jsonl``."""
    return DermSections(nlp, name)
