"""``dermcode batch``: one line per note whatever the file, resumable, crash-isolated.

Most runs use ``--workers 1`` (coded in-process) so that monkeypatches reach the
coding code; one test runs the real process pool and checks it writes the same lines.
"""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from extractor import batch
from extractor.cli import app
from extractor.io import MAX_NOTE_BYTES
from extractor.schemas import NoteError, NoteResult

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "corpus" / "dev"
runner = CliRunner()

GOOD = sorted(DEV.glob("*.txt"))[:4]
EXPECTED_ERRORS = {
    "bad/binary.txt": "not_text",
    "bad/empty.txt": "empty",
    "bad/huge.txt": "too_large",
    "bad/folder.txt": "io_error",
    "bad/bad-utf16.txt": "decode_error",
}


def _make_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    (d / "nested" / "deeper").mkdir(parents=True)
    (d / "bad" / "folder.txt").mkdir(parents=True)
    for i, p in enumerate(GOOD):
        target = d / ("nested/deeper" if i % 2 else "nested") / p.name
        target.write_bytes(p.read_bytes())
    text = "Shave biopsy of the left forearm — café-au-lait macule, actinic keratosis.\n"
    (d / "cp1252.txt").write_bytes(text.encode("cp1252"))
    (d / "utf16.txt").write_bytes(text.encode("utf-16"))
    (d / "bom8.txt").write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    (d / "bad" / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (d / "bad" / "empty.txt").write_bytes(b"")
    (d / "bad" / "bad-utf16.txt").write_bytes(codecs.BOM_UTF16_LE + b"\x00\xd8")
    with (d / "bad" / "huge.txt").open("wb") as fh:
        fh.truncate(MAX_NOTE_BYTES + 1)
    (d / "ignored.json").write_text("{}")
    return d


def _note_ids(d: Path) -> set[str]:
    ids = {p.relative_to(d).as_posix() for p in d.rglob("*.txt") if p.is_file()}
    return ids | {"bad/folder.txt"}


def _lines(out: Path) -> list[dict]:
    raw = out.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    return [json.loads(line) for line in raw.split("\n")[:-1]]


def _run(*args: str) -> object:
    return runner.invoke(app, ["batch", *args], catch_exceptions=False)


def test_one_valid_line_per_note_including_bad_files(tmp_path: Path) -> None:
    d = _make_dir(tmp_path)
    out = tmp_path / "out.jsonl"
    res = _run(str(d), "--out", str(out), "--workers", "1")
    assert res.exit_code == 0, res.output
    lines = _lines(out)
    ids = [x["note_id"] for x in lines]
    assert sorted(ids) == sorted(_note_ids(d)), "every note exactly once, nothing else"
    for x in lines:
        if "error" in x:
            NoteError.model_validate(x)
            assert EXPECTED_ERRORS.get(x["note_id"]) == x["error"]["type"], x
        else:
            NoteResult.model_validate(x)
    errored = {x["note_id"] for x in lines if "error" in x}
    assert errored == set(EXPECTED_ERRORS)
    # the summary goes to stderr (mixed into output by CliRunner), never note text
    assert "errors" in res.output and "notes/s" in res.output
    assert "café" not in res.output


def test_encodings_give_the_same_result(tmp_path: Path) -> None:
    d = _make_dir(tmp_path)
    out = tmp_path / "out.jsonl"
    assert _run(str(d), "--out", str(out), "--workers", "1").exit_code == 0
    by_id = {x["note_id"]: x for x in _lines(out)}
    strip = [
        {k: v for k, v in by_id[n].items() if k != "note_id"}
        for n in ("cp1252.txt", "utf16.txt", "bom8.txt")
    ]
    assert strip[0] == strip[1] == strip[2]


def test_glob_selects_other_files(tmp_path: Path) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "a.note").write_text("Cryotherapy of 3 actinic keratoses on the scalp.\n")
    (d / "b.txt").write_text("not picked\n")
    out = tmp_path / "o.jsonl"
    assert _run(str(d), "--out", str(out), "--workers", "1", "--glob", "*.note").exit_code == 0
    assert [x["note_id"] for x in _lines(out)] == ["a.note"]


def test_output_inside_input_folder_is_not_read_as_a_note(tmp_path: Path) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "a.txt").write_text("Cryotherapy of 3 actinic keratoses on the scalp.\n")
    out = d / "out.txt"
    assert _run(str(d), "--out", str(out), "--workers", "1").exit_code == 0
    assert [x["note_id"] for x in _lines(out)] == ["a.txt"]


def test_resume_after_a_truncated_last_line(tmp_path: Path, monkeypatch) -> None:
    d = _make_dir(tmp_path)
    out = tmp_path / "out.jsonl"
    assert _run(str(d), "--out", str(out), "--workers", "1").exit_code == 0
    full = {x["note_id"]: x for x in _lines(out)}
    raw = out.read_text(encoding="utf-8").split("\n")
    kept, cut = raw[:3], raw[3]
    out.write_text(
        "\n".join(kept) + "\n" + cut[: len(cut) // 2], encoding="utf-8"
    )  # killed mid-line

    import extractor.engine as engine

    real = engine.code_text
    calls: list[str] = []

    def counting(text: str, note_id: str = "stdin"):
        calls.append(note_id)
        return real(text, note_id)

    monkeypatch.setattr(engine, "code_text", counting)
    res = _run(str(d), "--out", str(out), "--workers", "1", "--resume")
    assert res.exit_code == 0, res.output
    lines = _lines(out)
    ids = [x["note_id"] for x in lines]
    assert sorted(ids) == sorted(full), "each note once: kept lines skipped, cut one redone"
    done_before = {json.loads(k)["note_id"] for k in kept}
    assert not done_before & set(calls), "notes complete in OUT are not coded again"
    assert {x["note_id"]: x for x in lines} == full, "resumed output equals a clean run"
    assert "3 already done" in res.output


def test_resume_with_no_out_yet_starts_fresh(tmp_path: Path) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "a.txt").write_text("Punch biopsy of the right cheek.\n")
    out = tmp_path / "o.jsonl"
    assert _run(str(d), "--out", str(out), "--workers", "1", "--resume").exit_code == 0
    assert len(_lines(out)) == 1


def test_without_resume_out_is_replaced(tmp_path: Path) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "a.txt").write_text("Punch biopsy of the right cheek.\n")
    out = tmp_path / "o.jsonl"
    out.write_text('{"note_id": "old.txt", "cpt": []}\n')
    assert _run(str(d), "--out", str(out), "--workers", "1").exit_code == 0
    assert [x["note_id"] for x in _lines(out)] == ["a.txt"]


def test_an_internal_error_is_that_notes_error_only(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "n"
    d.mkdir()
    secret = "Jane Roe DOB 1961 shave biopsy of left forearm"
    (d / "a.txt").write_text("Punch biopsy of the right cheek, actinic keratosis.\n")
    (d / "b.txt").write_text(secret + "\n")
    (d / "c.txt").write_text("Cryotherapy of 3 actinic keratoses on the scalp.\n")

    import extractor.engine as engine

    real = engine.code_text

    def flaky(text: str, note_id: str = "stdin"):
        if note_id == "b.txt":
            raise ValueError(f"cannot parse {text!r}")
        return real(text, note_id)

    monkeypatch.setattr(engine, "code_text", flaky)
    out = tmp_path / "o.jsonl"
    res = _run(str(d), "--out", str(out), "--workers", "1")
    assert res.exit_code == 0, res.output
    by_id = {x["note_id"]: x for x in _lines(out)}
    assert set(by_id) == {"a.txt", "b.txt", "c.txt"}
    assert by_id["b.txt"]["error"]["type"] == "internal"
    assert "ValueError" in by_id["b.txt"]["error"]["message"]
    assert "Jane" not in out.read_text() and "Jane" not in res.output, "no note text leaks"
    assert "cpt" in by_id["a.txt"] and "cpt" in by_id["c.txt"]


def test_csv_has_one_row_per_cpt_line(tmp_path: Path) -> None:
    d = _make_dir(tmp_path)
    out = tmp_path / "out.jsonl"
    csv_path = tmp_path / "reports" / "lines.csv"
    (tmp_path / "reports").mkdir()
    assert _run(str(d), "--out", str(out), "--workers", "1", "--csv", str(csv_path)).exit_code == 0
    lines = _lines(out)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = [(x["note_id"], c["code"]) for x in lines for c in x.get("cpt", [])]
    assert [(r["note_id"], r["code"]) for r in rows] == expected
    with csv_path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == ["note_id", "code", "units", "modifiers", "icd10", "confidence", "rationale"]
    assert all(int(r["units"]) >= 1 for r in rows)
    assert [p.name for p in csv_path.parent.iterdir()] == ["lines.csv"], "written atomically"


def test_summary_json(tmp_path: Path) -> None:
    d = _make_dir(tmp_path)
    out = tmp_path / "out.jsonl"
    sj = tmp_path / "summary.json"
    assert (
        _run(str(d), "--out", str(out), "--workers", "1", "--summary-json", str(sj)).exit_code == 0
    )
    s = json.loads(sj.read_text())
    assert s["found"] == s["processed"] == len(_note_ids(d))
    assert s["errors"] == len(EXPECTED_ERRORS)
    assert s["errors_by_type"] == {
        "decode_error": 1,
        "empty": 1,
        "io_error": 1,
        "not_text": 1,
        "too_large": 1,
    }


@pytest.mark.parametrize(
    "case", ["missing-dir", "dir-is-file", "out-folder-missing", "out-is-dir", "csv-folder-missing"]
)
def test_exit_non_zero_only_when_the_run_cannot_proceed(tmp_path: Path, case: str) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "a.txt").write_text("Punch biopsy of the right cheek.\n")
    args = [str(d), "--out", str(tmp_path / "o.jsonl"), "--workers", "1"]
    if case == "missing-dir":
        args[0] = str(tmp_path / "nope")
    elif case == "dir-is-file":
        args[0] = str(d / "a.txt")
    elif case == "out-folder-missing":
        args[2] = str(tmp_path / "no" / "o.jsonl")
    elif case == "out-is-dir":
        args[2] = str(d)
    else:
        args += ["--csv", str(tmp_path / "no" / "x.csv")]
    res = _run(*args)
    assert res.exit_code == 2
    assert "dermcode:" in res.output


def test_empty_folder_is_a_successful_empty_run(tmp_path: Path) -> None:
    d = tmp_path / "n"
    d.mkdir()
    out = tmp_path / "o.jsonl"
    res = _run(str(d), "--out", str(out))
    assert res.exit_code == 0
    assert out.read_text() == ""


def test_process_pool_writes_the_same_lines(tmp_path: Path) -> None:
    d = _make_dir(tmp_path)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert _run(str(d), "--out", str(one), "--workers", "1").exit_code == 0
    res = _run(str(d), "--out", str(two), "--workers", "2")
    assert res.exit_code == 0, res.output
    assert sorted(one.read_text().splitlines()) == sorted(two.read_text().splitlines())


def test_a_worker_that_dies_costs_only_its_note(tmp_path: Path, monkeypatch) -> None:
    import _batch_crash

    monkeypatch.setattr(batch, "_work_chunk", _batch_crash.crash_on_boom)
    monkeypatch.setattr(batch, "_init_worker", _batch_crash.no_init)
    d = tmp_path / "n"
    d.mkdir()
    names = [f"n{i:02d}.txt" for i in range(12)] + ["boom.txt"]
    for n in names:
        (d / n).write_text("x\n")
    out = tmp_path / "o.jsonl"
    summary = batch.run_batch(d, out, workers=2)
    by_id = {x["note_id"]: x for x in _lines(out)}
    assert sorted(by_id) == sorted(names)
    assert by_id["boom.txt"]["error"]["type"] == "internal"
    assert "died" in by_id["boom.txt"]["error"]["message"]
    assert all("cpt" in by_id[n] for n in names if n != "boom.txt")
    assert summary.errors == 1 and summary.processed == len(names)
