"""Sentence splitting on the shapes clinical notes come in."""

from __future__ import annotations

import pytest


def sents(nlp, text):
    return [s.text.strip() for s in nlp(text).sents]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # decimals and sizes stay inside their sentence
        (
            "Shave bx of 0.6 cm papule. Sent to path.",
            ["Shave bx of 0.6 cm papule.", "Sent to path."],
        ),
        # abbreviations with periods do not end a sentence
        ("Seen by Dr. Smith today. Stable.", ["Seen by Dr. Smith today.", "Stable."]),
        ("Lesion approx. 5 mm. Bx done.", ["Lesion approx. 5 mm.", "Bx done."]),
        # numbered list items, one per line, keep their number
        (
            "A/P:\n1. AK scalp - LN2 x3.\n2. SK back - reassured.",
            ["A/P:", "1. AK scalp - LN2 x3.", "2. SK back - reassured."],
        ),
        # lesion list with # markers
        (
            "#1 L forearm: 6 mm papule\n#2 R cheek: pink macule",
            ["#1 L forearm: 6 mm papule", "#2 R cheek: pink macule"],
        ),
        # a wrapped dictation line continues its sentence
        (
            "The lesion was anesthetized with\nlidocaine and shaved.",
            ["The lesion was anesthetized with\nlidocaine and shaved."],
        ),
        # MTSamples inline headers: "...well.,HISTORY:, ..."
        (
            "PROCEDURE:,  Punch biopsy.,HISTORY:,  He is well.",
            ["PROCEDURE:,", "Punch biopsy.,", "HISTORY:,", "He is well."],
        ),
        # s/p and x3 do not split
        ("Hx BCC s/p Mohs 2019. AK x3 treated.", ["Hx BCC s/p Mohs 2019.", "AK x3 treated."]),
    ],
)
def test_clinical_sentence_boundaries(nlp, text, expected):
    assert sents(nlp, text) == expected


def test_every_token_belongs_to_a_sentence(nlp):
    doc = nlp("CC: rash\n\n\nExam:  no lesions.  \n")
    assert sum(len(s) for s in doc.sents) == len(doc)


def test_empty_and_whitespace_docs(nlp):
    assert list(nlp("").sents) == []
    assert len(list(nlp("   \n ").sents)) <= 1
