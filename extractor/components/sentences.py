"""dermcode_sentences: a rule-based sentence splitter built for clinical notes.

medspaCy's default PyRuSH splitter manages ~20-35 notes/s here; this one is a
single pass over token texts. It knows the shapes dermatology notes come in: one
fact per line in EHR templates (while wrapped dictation lines continue), lesion
lists ("#1 L forearm: ...", "2. AK scalp"), MTSamples-style inline headers
("...well.,HISTORY:, ..."), abbreviations with periods ("Dr.", "approx.", "vs.")
and decimals ("0.6 cm", which the tokenizer keeps whole).
"""

from spacy.language import Language
from spacy.tokens import Doc

# Tokens after which a period does not end a sentence (the period is its own token).
# Clinical shorthand that often ends a sentence ("heavy sun hx.", "mom wants tx.",
# "Established pt.") is deliberately absent.
_ABBREV = {
    "dr",
    "mr",
    "mrs",
    "ms",
    "vs",
    "approx",
    "e.g",
    "i.e",
    "etc",
    "st",
    "no",
    "fig",
    "q",
    "b.i.d",
    "t.i.d",
    "q.d",
    "p.o",
    "cf",
    "ca",
    "ext",
    "lat",
    "med",
    "ant",
    "sup",
    "inf",
    "prox",
    "dist",
    "sq",
    "mt",
    "ft",
}
_ENDERS = {".", "!", "?"}
_OPENERS = set("#-*•·–—([\"'")


def _opens(text: str) -> bool:
    """Whether a token can open a new sentence after a period or a line break."""
    c = text[0]
    return c.isupper() or c.isdigit() or c in _OPENERS


def _glued_period(text: str) -> bool:
    """A token the tokenizer kept whole with its final period ("IV.", "ACCUTANE.")."""
    if len(text) < 3 or text[-1] != ".":
        return False
    stem = text[:-1].lower()
    return stem not in _ABBREV and stem.isalpha()


def _caps_word(text: str) -> bool:
    return len(text) > 1 and text.isalpha() and text.isupper()


class DermSentencizer:
    """Marks sentence starts; only the starts are written, which keeps it cheap."""

    def __init__(self, nlp: Language, name: str, split_on_single_newline: bool) -> None:
        self.name = name
        self.split_on_single_newline = split_on_single_newline

    def starts(self, texts: list[str]) -> list[int]:
        """Indices of the tokens that open a sentence, from token texts alone."""
        n = len(texts)
        out = [0]
        prev = prev2 = ""  # last two non-space tokens
        line_start_prev2 = False  # prev2 opened its line (for "2." list markers)
        newlines = 0
        last_start = 0
        header_colon = 0
        tok_line_start = True
        for i in range(n):
            t = texts[i]
            if t.isspace():
                newlines += t.count("\n")
                continue
            start = False
            if i != 0:
                if newlines >= 2:
                    start = True
                elif newlines == 1:
                    start = (
                        self.split_on_single_newline
                        or _opens(t)
                        or prev in _ENDERS
                        or prev == ":"
                        or _glued_period(prev)
                    )
                elif prev in _ENDERS:
                    if prev == "." and (
                        prev2.lower() in _ABBREV
                        or (len(prev2) == 1 and prev2.isalpha())
                        or (line_start_prev2 and prev2.isdigit() and len(prev2) <= 2)
                    ):
                        start = False
                    else:
                        start = _opens(t)
                elif _glued_period(prev):
                    start = _opens(t)
                elif header_colon == 2 and t != ",":
                    start = True
                elif prev in {",", ";"} and _caps_word(t) and self._header_ahead(texts, i):
                    start = True
            if start and i != last_start:
                out.append(i)
                last_start = i
            line_start_now = newlines > 0 or i == 0 or start
            # MTSamples writes "HEADER:," - the text after the comma opens a sentence
            header_colon = (
                1 if (t == ":" and _caps_word(prev)) else (2 if (header_colon and t == ",") else 0)
            )
            prev2, prev = prev, t
            line_start_prev2, tok_line_start = tok_line_start, line_start_now
            newlines = 0
        return out

    @staticmethod
    def _header_ahead(texts: list[str], i: int) -> bool:
        """An ALL-CAPS run of up to 6 words ending in a colon starts at ``i``."""
        j, words = i, 0
        while j < len(texts) and words < 7:
            t = texts[j]
            if t == ":":
                return words > 0
            if _caps_word(t) or (words and t in {"&", "/", "AND", "OF"}):
                words += 1
            elif not t.isspace():
                return False
            j += 1
        return False

    def __call__(self, doc: Doc) -> Doc:
        if len(doc) == 0:
            return doc
        texts = [t.text for t in doc]
        starts = self.starts(texts)
        doc.user_data["dc_sent_starts"] = starts  # read by dermcode_lesions without doc.sents
        for i in starts:
            doc[i].is_sent_start = True
        # Unset tokens read as "inside a sentence", but spaCy only counts the Doc as
        # sentence-annotated when some token after the first is set: mark the last.
        last = len(doc) - 1
        if last > 0 and starts[-1] != last:
            doc[last].is_sent_start = False
        return doc


@Language.factory(
    "dermcode_sentences",
    assigns=["token.is_sent_start"],
    default_config={"split_on_single_newline": False},
)
def make_sentences(nlp: Language, name: str, split_on_single_newline: bool) -> DermSentencizer:
    """Factory for the fast clinical sentence splitter."""
    return DermSentencizer(nlp, name, split_on_single_newline)
