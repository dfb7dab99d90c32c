"""Each entity family, with the attributes the coding engines rely on."""

from __future__ import annotations

import pytest


def ents(nlp, text):
    return [(e.text, e.label_, dict(e._.dc_attrs or {})) for e in nlp(text).ents]


@pytest.mark.parametrize(
    ("text", "kind", "method"),
    [
        ("shave bx of the lesion", "biopsy", "tangential"),
        ("saucerization of the papule", "biopsy", "tangential"),
        ("4 mm punch biopsy", "biopsy", "punch"),
        ("incisional biopsy of the plaque", "biopsy", "incisional"),
        ("ED&C x3 cycles", "destruction", "electrosurgery"),
        ("cryotherapy with LN2", "destruction", "cryo"),
        ("Mohs micrographic surgery", "mohs", None),
        ("layered closure", "repair", "intermediate"),
        ("I&D of abscess", "incision_drainage", None),
        ("intralesional kenalog", "injection", None),
        ("narrowband UVB", "phototherapy", "uv"),
        ("PUVA", "phototherapy", "puva"),
        ("phenol matrixectomy", "nail_matrixectomy", None),
        ("total body photography", "photography", None),
    ],
)
def test_procedures_by_technique(nlp, text, kind, method):
    procs = [a for _t, label, a in ents(nlp, text) if label == "PROCEDURE"]
    assert procs, text
    assert procs[0]["kind"] == kind
    assert procs[0].get("method") == method


def test_longest_match_wins(nlp):
    # "biopsy-proven" is a cue, not a biopsy done today
    labels = [(t, lab) for t, lab, _a in ents(nlp, "Excision of biopsy-proven BCC")]
    assert ("biopsy-proven", "MODIFIER_CUE") in labels
    assert not any(t.lower() == "biopsy" for t, _lab in labels)


@pytest.mark.parametrize(
    ("text", "site", "extra"),
    [
        ("R nasal ala", "nose", {}),
        ("left upper eyelid", "eyelid", {"eyelid": "upper"}),
        ("right index finger", "finger", {"digit_number": 2}),
        ("L great toe", "toe", {"digit_number": 1}),
        ("posterior neck", "neck", {}),
        ("helical rim", "ear", {}),
    ],
)
def test_sites(nlp, text, site, extra):
    sites = [a for _t, label, a in ents(nlp, text) if label == "SITE"]
    assert sites and sites[0]["site"] == site
    for k, v in extra.items():
        assert sites[0][k] == v


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("L forearm", "left"),
        ("rt cheek", "right"),
        ("(R) ear", "right"),
        ("bilateral shins", "bilateral"),
    ],
)
def test_laterality(nlp, text, side):
    lats = [a["side"] for _t, label, a in ents(nlp, text) if label == "LATERALITY"]
    assert lats == [side]


def test_lowercase_l_is_not_laterality(nlp):
    assert not [1 for _t, label, _a in ents(nlp, "inject 1 l of saline") if label == "LATERALITY"]


def test_dermoscopy_mentions_and_findings(nlp):
    labels = [
        lab
        for _t, lab, _a in ents(nlp, "Dermoscopy: atypical pigment network and blue-white veil.")
    ]
    assert labels.count("DERMOSCOPY") == 1
    assert labels.count("DERMOSCOPY_FINDING") == 2


def test_dermoscopy_image_category_regex(nlp):
    found = [
        a
        for _t, lab, a in ents(
            nlp, "Compared with baseline dermoscopic images from 2023: unchanged."
        )
        if lab == "DERMOSCOPY_IMAGE"
    ]
    assert found and found[0]["category_number"] == 1
