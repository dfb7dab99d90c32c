"""Coding notes at cluster scale with Apache Spark (optional extra ``dermcode[spark]``).

:func:`code_dataframe` turns a DataFrame of ``(note_id, text)`` into result
columns with ``mapInPandas``: each Python worker builds the pipeline once (it is
cached per process, and Spark reuses Python workers), codes its partitions batch
by batch and hands back plain strings and arrays. Each note goes through the very
same functions as ``dermcode batch`` (:func:`extractor.batch.code_one_text` /
:func:`~extractor.batch.code_one_bytes`), so a note's ``result_json`` is
byte-for-byte the line ``dermcode batch`` writes for it, errors included.

pyspark is imported only inside functions: importing this module never needs it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractor.batch import NoteOutcome

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

#: The columns :func:`code_dataframe` returns, as a Spark DDL schema.
RESULT_SCHEMA = (
    "note_id string, result_json string, error_type string, "
    "cpt_codes array<string>, icd10_codes array<string>, flag_ids array<string>"
)
#: Notes per Arrow batch handed to a Python worker: small batches keep worker memory
#: flat (results are JSON strings of a few KB) and let Spark spread short jobs.
ARROW_BATCH = 256


def _row(o: NoteOutcome) -> tuple[str, str, str | None, list[str], list[str], list[str]]:
    if o.error_type:
        return o.note_id, o.line, o.error_type, [], [], []
    obj = json.loads(o.line)
    return (
        o.note_id,
        o.line,
        None,
        [c["code"] for c in obj.get("cpt", [])],
        [c["code"] for c in obj.get("icd10", [])],
        [f["id"] for f in obj.get("flags", [])],
    )


def _code_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The mapInPandas function: runs in a Python worker, pipeline built on first use."""
    import pandas as pd

    from extractor.batch import code_one_bytes, load_pipeline

    load_pipeline()  # once per worker process (lru_cache); a no-op after the first batch
    cols = ["note_id", "result_json", "error_type", "cpt_codes", "icd10_codes", "flag_ids"]
    for pdf in batches:
        rows = []
        for note_id, text in zip(pdf["note_id"], pdf["text"], strict=True):
            nid = str(note_id)
            if text is None or isinstance(text, bytes | bytearray | memoryview):
                outcome = code_one_bytes(nid, None if text is None else bytes(text))
            else:
                outcome = _code_str(nid, str(text))
            rows.append(_row(outcome))
        yield pd.DataFrame(rows, columns=cols)


def _code_paths(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas over ``(note_id, path)``: read each file as ``dermcode batch`` does."""
    import pandas as pd

    from extractor.batch import NoteTask, code_one_file, load_pipeline

    load_pipeline()
    cols = ["note_id", "result_json", "error_type", "cpt_codes", "icd10_codes", "flag_ids"]
    for pdf in batches:
        rows = [
            _row(code_one_file(NoteTask(str(nid), str(path))))
            for nid, path in zip(pdf["note_id"], pdf["path"], strict=True)
        ]
        yield pd.DataFrame(rows, columns=cols)


def _code_str(note_id: str, text: str) -> NoteOutcome:
    """Text already decoded (a Parquet column): the reader's checks, then code it as given.

    The text is not re-decoded (a leading U+FEFF would be eaten as a BOM and shift
    every offset), but it gets the checks a file gets after decoding: too large (in
    UTF-8 bytes), empty, NUL characters. Unlike a file, it is not sniffed for binary
    data: a string column is text by construction.
    """
    from extractor.batch import code_one_text, error_outcome
    from extractor.io import MAX_NOTE_BYTES

    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_NOTE_BYTES:
        return error_outcome(
            note_id,
            "too_large",
            f"{note_id}: {size} bytes, above the {MAX_NOTE_BYTES}-byte limit",
        )
    if not text.strip():
        return error_outcome(note_id, "empty", f"{note_id}: the note is empty")
    if "\x00" in text:
        return error_outcome(note_id, "not_text", f"{note_id}: contains NUL characters")
    return code_one_text(note_id, text)


def code_dataframe(df: DataFrame, *, text_col: str = "text", id_col: str = "note_id") -> DataFrame:
    """``(note_id, text)`` → result columns (:data:`RESULT_SCHEMA`), one row per input row.

    ``text`` may be a string column (coded as given) or a binary column of raw file
    bytes (decoded exactly as ``dermcode batch`` decodes files: BOMs, UTF-16,
    Windows-1252, binary refused). ``error_type`` is null for a NoteResult; the code
    arrays are empty for a NoteError. Rows are never dropped.
    """
    src = df.select(df[id_col].cast("string").alias("note_id"), df[text_col].alias("text"))
    return src.mapInPandas(_code_batches, schema=RESULT_SCHEMA)


def get_session(master: str = "local[*]", app_name: str = "dermcode") -> SparkSession:
    """A SparkSession for local runs: loopback only, no web UI, workers on this Python.

    On a real cluster, build the session the cluster's way and call
    :func:`code_dataframe`; this helper is for ``dermcode spark`` and tests.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH))
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )


def read_notes(spark: SparkSession, source: str | Path, glob: str = "*.txt") -> DataFrame:
    """A Parquet file/folder with ``note_id`` and ``text`` columns → ``(note_id, text)``."""
    src = Path(source)
    df = spark.read.parquet(str(src))
    missing = {"note_id", "text"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{src}: Parquet input needs columns note_id and text (missing {sorted(missing)})"
        )
    return df.select("note_id", "text")


def code_folder(spark: SparkSession, folder: str | Path, glob: str = "*.txt") -> DataFrame:
    """Every note file under ``folder`` → result columns, exactly as ``dermcode batch``.

    The driver lists the folder with :func:`extractor.batch.iter_notes` (so the same
    files, including unreadable folders, get a row) and the Python workers read the
    files with dermcode's reader (so encodings, ``too_large`` and ``empty`` come out
    the same: Spark's ``binaryFile`` source silently drops empty files). The folder
    must be readable at the same path by every executor: local mode, or a shared
    file system.
    """
    from extractor.batch import iter_notes

    tasks = [(t.note_id, t.path) for t in iter_notes(Path(folder).resolve(), glob)]
    slices = max(spark.sparkContext.defaultParallelism, len(tasks) // 2000 + 1)
    df = spark.createDataFrame(tasks, "note_id string, path string").repartition(slices)
    return df.mapInPandas(_code_paths, schema=RESULT_SCHEMA)


def is_parquet(p: Path) -> bool:
    """A Parquet file, or a folder Spark wrote (``part-*.parquet`` / ``_SUCCESS``)."""
    return p.suffix == ".parquet" or (p.is_dir() and _is_parquet_dir(p))


def _is_parquet_dir(p: Path) -> bool:
    return any(p.glob("*.parquet")) or (p / "_SUCCESS").exists()


def write_results(df: DataFrame, out: str | Path) -> int:
    """``*.jsonl`` → one local JSONL file of ``result_json`` lines (as ``dermcode batch``
    writes, written atomically); anything else → a Parquet folder. Returns rows written
    for JSONL, -1 for Parquet (counting would run the job twice)."""
    target = Path(out)
    if target.suffix == ".jsonl":
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        n = 0
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                for row in df.select("result_json").toLocalIterator():
                    fh.write(row[0] + "\n")
                    n += 1
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return n
    df.write.mode("overwrite").parquet(str(target))
    return -1


def summarize(df: DataFrame) -> dict[str, Any]:
    """Counts like ``dermcode batch``'s summary, computed by Spark."""
    from pyspark.sql import functions as F

    row = df.agg(
        F.count("*").alias("notes"),
        F.sum(F.when(F.col("error_type").isNotNull(), 1).otherwise(0)).alias("errors"),
        F.sum(
            F.when(
                F.col("error_type").isNull()
                & ((F.size("cpt_codes") > 0) | (F.size("icd10_codes") > 0)),
                1,
            ).otherwise(0)
        ).alias("coded"),
        F.sum(F.when(F.size("flag_ids") > 0, 1).otherwise(0)).alias("flagged"),
    ).collect()[0]
    return {k: int(row[k] or 0) for k in ("notes", "coded", "flagged", "errors")}
