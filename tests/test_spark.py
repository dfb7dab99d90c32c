"""Spark local mode codes notes exactly as ``dermcode batch`` does.

Skipped when pyspark (the optional ``[spark]`` extra) or Java is missing; CI runs it
when installed with ``pip install -e '.[dev,spark]'``.
"""

from __future__ import annotations

import codecs
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip(
    "pyspark", reason="pyspark not installed (optional extra: pip install -e '.[dev,spark]')"
)
pytest.importorskip("pyarrow", reason="pyarrow not installed (comes with the [spark] extra)")
if shutil.which("java") is None:  # pragma: no cover
    pytest.skip("no Java runtime for Spark (needs Java 17+)", allow_module_level=True)

from extractor.cli import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def spark():
    from extractor.spark import get_session

    session = get_session("local[2]", "dermcode-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def notes(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("spark_notes")
    (d / "sub dir").mkdir()
    for i, p in enumerate(sorted((ROOT / "corpus" / "dev").glob("*.txt"))[:12]):
        (d / ("sub dir" if i % 3 == 0 else ".") / p.name).write_bytes(p.read_bytes())
    text = "Shave biopsy of the left forearm — café-au-lait macule, actinic keratosis.\n"
    (d / "cp1252.txt").write_bytes(text.encode("cp1252"))
    (d / "utf16.txt").write_bytes(text.encode("utf-16"))
    (d / "bom.txt").write_bytes(codecs.BOM_UTF8 + text.encode())
    (d / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (d / "empty.txt").write_bytes(b"")
    return d


def _batch_lines(notes: Path, tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "batch.jsonl"
    res = runner.invoke(app, ["batch", str(notes), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    return {json.loads(x)["note_id"]: x for x in out.read_text(encoding="utf-8").splitlines()}


def test_code_folder_equals_batch(spark, notes: Path, tmp_path: Path) -> None:
    from extractor.spark import code_folder

    rows = code_folder(spark, notes).collect()
    expected = _batch_lines(notes, tmp_path)
    got = {r["note_id"]: r for r in rows}
    assert set(got) == set(expected)
    for note_id, line in expected.items():
        r = got[note_id]
        assert r["result_json"] == line, note_id
        obj = json.loads(line)
        if "error" in obj:
            assert r["error_type"] == obj["error"]["type"]
            assert r["cpt_codes"] == r["icd10_codes"] == r["flag_ids"] == []
        else:
            assert r["error_type"] is None
            assert r["cpt_codes"] == [c["code"] for c in obj["cpt"]]
            assert r["icd10_codes"] == [c["code"] for c in obj["icd10"]]
            assert r["flag_ids"] == [f["id"] for f in obj["flags"]]
    assert got["binary.txt"]["error_type"] == "not_text"
    assert got["empty.txt"]["error_type"] == "empty"


def test_text_column_dataframe(spark) -> None:
    from extractor.engine import code_text
    from extractor.spark import code_dataframe

    text = "Punch biopsy 4 mm of the right cheek, actinic keratosis.\n"
    df = spark.createDataFrame(
        [("a", text), ("b", "   "), ("c", None), ("d", "\ufeff" + text)],
        "note_id string, text string",
    )
    got = {r["note_id"]: r for r in code_dataframe(df).collect()}
    assert got["a"]["result_json"] == code_text(text, "a").model_dump_json()
    assert got["b"]["error_type"] == "empty" and got["c"]["error_type"] == "empty"
    assert json.loads(got["d"]["result_json"])["note_id"] == "d", "U+FEFF is text, not a BOM here"


def test_cli_folder_to_jsonl_and_parquet_round_trip(spark, notes: Path, tmp_path: Path) -> None:
    expected = _batch_lines(notes, tmp_path)
    out = tmp_path / "spark.jsonl"
    res = runner.invoke(app, ["spark", str(notes), "--out", str(out), "--master", "local[2]"])
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted(expected.values())

    pq_in = tmp_path / "in.parquet"
    spark.createDataFrame(
        [(k, json.loads(v)["note_id"]) for k, v in list(expected.items())[:3]],
        "note_id string, text string",
    ).write.parquet(str(pq_in))
    pq_out = tmp_path / "out_parquet"
    res = runner.invoke(app, ["spark", str(pq_in), "--out", str(pq_out), "--master", "local[2]"])
    assert res.exit_code == 0, res.output
    back = spark.read.parquet(str(pq_out))
    assert set(back.columns) == {
        "note_id",
        "result_json",
        "error_type",
        "cpt_codes",
        "icd10_codes",
        "flag_ids",
    }
    assert back.count() == 3


def test_cli_missing_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["spark", str(tmp_path / "nope"), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2
