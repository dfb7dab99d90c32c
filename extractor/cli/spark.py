"""``dermcode spark IN --out OUT``: code notes with Apache Spark (needs ``dermcode[spark]``).

A thin shell over :mod:`extractor.spark`. pyspark is imported inside the command,
so the rest of the CLI works without the extra installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extractor.cli import app

_HELP = (
    "Code notes with Spark: IN is a folder of note files (recursive) or a Parquet file/folder"
    " with note_id and text columns.\n\n"
    "OUT ending in .jsonl gets one line per note, the same lines `dermcode batch` writes; any"
    " other OUT is written as a Parquet folder with columns note_id, result_json, error_type,"
    " cpt_codes, icd10_codes, flag_ids. Files above MAX_NOTE_BYTES (2,000,000 bytes) get "
    "too_large. Needs: pip install 'dermcode\\[spark]' and Java 17+."
)


@app.command("spark", help=_HELP)
def spark_command(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="Folder of notes, or Parquet (note_id, text).")
    ],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="OUT.jsonl, or a Parquet folder.")],
    glob: Annotated[str, typer.Option(help="Which files are notes (folder input).")] = "*.txt",
    master: Annotated[
        str, typer.Option(help="Spark master URL; local[N] runs N workers on this machine.")
    ] = "local[*]",
) -> None:
    from extractor import spark as dspark

    try:
        import pyspark  # noqa: F401
    except ImportError:
        typer.echo(
            "dermcode: the spark command needs pyspark: pip install 'dermcode[spark]'", err=True
        )
        raise typer.Exit(2) from None
    if not source.exists():
        typer.echo(f"dermcode: {source}: no such file or folder", err=True)
        raise typer.Exit(2)
    from pyspark.sql import SparkSession

    # Stop the session at the end only if this command started it (not inside a notebook
    # or a test that already has one).
    owned = SparkSession.getActiveSession() is None
    session = dspark.get_session(master)
    try:
        session.sparkContext.setLogLevel("ERROR")
        if dspark.is_parquet(source):
            result = dspark.code_dataframe(dspark.read_notes(session, source))
        else:
            result = dspark.code_folder(session, source, glob)
        result = result.cache()
        written = dspark.write_results(result, out)
        counts = dspark.summarize(result)
    except ValueError as exc:
        typer.echo(f"dermcode: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if owned:
            session.stop()
    where = f"{written} lines to {out}" if written >= 0 else f"Parquet to {out}"
    typer.echo(
        f"{counts['notes']} notes: {counts['coded']} coded, {counts['flagged']} flagged, "
        f"{counts['errors']} errors; {where}",
        err=True,
    )
