"""ConText: negation, history, family history, uncertainty, hypotheticals and plans."""

from __future__ import annotations

import pytest


def flags_of(nlp, text, target):
    for e in nlp(text).ents:
        if e.text.lower() == target.lower():
            return {
                a
                for a in (
                    "is_negated",
                    "is_uncertain",
                    "is_historical",
                    "is_hypothetical",
                    "is_family",
                    "is_planned",
                )
                if getattr(e._, a)
            }
    raise AssertionError(f"{target!r} not found in {text!r}")


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("No biopsy today.", "biopsy", {"is_negated"}),
        ("Denies history of melanoma.", "melanoma", {"is_negated"}),
        ("LN2 not performed.", "LN2", {"is_negated"}),
        ("Hx of BCC on the nose.", "BCC", {"is_historical"}),
        ("s/p Mohs 2019.", "Mohs", {"is_historical"}),
        ("Mother had melanoma.", "melanoma", {"is_family"}),
        ("Papule, r/o BCC.", "BCC", {"is_uncertain"}),
        ("Suspicious for SCC.", "SCC", {"is_uncertain"}),
        ("Will bx if it grows.", "bx", {"is_hypothetical", "is_planned"}),
        ("Bx if it changes.", "Bx", {"is_hypothetical"}),
        ("Schedule excision next month.", "excision", {"is_planned"}),
        ("Shave biopsy performed.", "Shave biopsy", set()),
    ],
)
def test_context(nlp, text, target, expected):
    got = flags_of(nlp, text, target)
    assert expected <= got, (text, got)
    if not expected:
        assert not got


def test_context_does_not_cross_sentences(nlp):
    text = "Hx of SCC L ear s/p Mohs 2019. Pink papule R arm, shave bx done."
    assert flags_of(nlp, text, "shave bx") == set()
