"""`dermcode code`: contract JSON on stdout, clear errors on stderr, nothing lost."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from extractor.cli import app

runner = CliRunner()
NOTE = (
    "Established pt. Shave biopsy of 6 mm pink papule R forearm, suspicious for BCC. "
    "Cryo LN2 to 3 AKs on scalp. Dermoscopy performed."
)


def run(args, input=None):
    return runner.invoke(app, args, input=input)


def test_json_from_stdin_matches_the_contract():
    res = run(["code", "-", "--format", "json"], input=NOTE)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("note_id", "cpt", "icd10", "flags", "considered", "dermoscopy", "entities"):
        assert key in out
    assert out["note_id"] == "stdin"
    for line in out["cpt"]:
        for key in ("code", "units", "modifiers", "icd10", "confidence", "rationale", "evidence"):
            assert key in line
    # every evidence span slices the note to its text
    spans = [e for line in out["cpt"] + out["icd10"] + out["flags"] for e in line["evidence"]]
    spans += out["entities"]
    assert spans
    for e in spans:
        assert NOTE[e["start"] : e["end"]] == e["text"]


def test_json_suggests_the_obvious_codes():
    out = json.loads(run(["code", "-", "--format", "json"], input=NOTE).stdout)
    codes = {line["code"] for line in out["cpt"]}
    assert {"11102", "17000", "17003"} <= codes
    assert not codes & {"11100", "11101", "96904", "0400T"}  # deleted / dermoscopy codes
    assert out["dermoscopy"]["status"] == "without_findings"


def test_file_argument_and_note_id(tmp_path):
    p = tmp_path / "visit.txt"
    p.write_text(NOTE, encoding="utf-8")
    out = json.loads(run(["code", str(p), "--format", "json"]).stdout)
    assert out["note_id"] == "visit.txt"


def test_table_format_shows_codes_and_evidence():
    res = run(["code", "-", "--format", "table"], input=NOTE)
    assert res.exit_code == 0
    assert "11102" in res.stdout and "CPT" in res.stdout


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: p, "directory"),
        (lambda p: (p / "b.bin").write_bytes(b"\x00\x01\x02binary\x00") and p / "b.bin", "binary"),
        (lambda p: (p / "e.txt").write_bytes(b"   \n") and p / "e.txt", "empty"),
    ],
)
def test_bad_input_is_a_clear_error_with_nothing_on_stdout(tmp_path, make, word):
    path = make(tmp_path)
    res = run(["code", str(path), "--format", "json"])
    assert res.exit_code != 0
    assert res.stdout == ""
    assert word in res.stderr


def test_windows_1252_note_is_decoded(tmp_path):
    p = tmp_path / "cp1252.txt"
    p.write_bytes(
        "Shave biopsy of 6 mm papule R forearm \u2013 r/o BCC. Pt\u2019s wife present.".encode(
            "cp1252"
        )
    )
    res = run(["code", str(p), "--format", "json"])
    assert res.exit_code == 0
    assert "11102" in {line["code"] for line in json.loads(res.stdout)["cpt"]}
