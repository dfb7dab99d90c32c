"""``dermcode batch DIR --out OUT.jsonl``: every note under DIR → one JSON line each.

A thin shell over :func:`extractor.batch.run_batch`: it adds the progress bar and
the summary on stderr and turns setup failures into exit codes. Heavy imports
happen inside the command so that ``dermcode --help`` and ``dermcode code`` do not
pay for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from extractor.cli import app

_HELP = (
    "Code every note file under DIR (recursive) into OUT, one JSON line per note.\n\n"
    "Each line is a NoteResult, or a NoteError whose error.type is not_text, decode_error, "
    "too_large, empty, io_error or internal; no note is ever left out. note_id is the path "
    "relative to DIR. Notes may be UTF-8 (with or without BOM), UTF-16/32 with BOM, or "
    "Windows-1252/latin-1. Files above MAX_NOTE_BYTES (2,000,000 bytes) get too_large.\n\n"
    "Results are appended as they finish, so an interrupted run keeps its work: rerun with "
    "--resume to code only the notes missing from OUT. Exit status is 0 even when some notes "
    "failed; 2 when the run cannot start (DIR missing, OUT unwritable); 130 when interrupted."
    " See docs/batch.md."
)


def _default_workers() -> int:
    import os

    return os.cpu_count() or 1


@app.command("batch", help=_HELP)
def batch_command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of notes (searched recursively).")
    ],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output, one line per note.")],
    glob: Annotated[
        str, typer.Option(help="Which files are notes, matched against the relative path.")
    ] = "*.txt",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Coding processes (default: CPU count).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Skip notes already complete in OUT; append the rest.")
    ] = False,
    csv: Annotated[
        Path | None,
        typer.Option(
            help="Also write one CSV row per CPT line (note_id, code, units, modifiers, "
            "icd10, confidence, rationale), atomically at the end."
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the run summary as JSON to this file.")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Progress bar on stderr (default: when stderr is a terminal).")
    ] = sys.stderr.isatty(),
) -> None:
    from rich.console import Console

    from extractor.batch import BatchSetupError, BatchSummary, run_batch

    console = Console(stderr=True)
    n_workers = workers or _default_workers()
    bar = None
    task_id = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("[bold]coding[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} notes/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def on_start(n: int) -> None:
        nonlocal task_id
        if bar is not None:
            bar.start()
            task_id = bar.add_task("coding", total=n, rate="-")

    def on_result(_outcome: object) -> None:
        if bar is not None and task_id is not None:
            bar.advance(task_id)
            task = bar.tasks[task_id]
            speed = task.speed
            bar.update(task_id, rate=f"{speed:.1f}" if speed else "-")

    try:
        summary: BatchSummary = run_batch(
            directory,
            out,
            glob=glob,
            workers=n_workers,
            resume=resume,
            csv_path=csv,
            on_start=on_start,
            on_result=on_result,
        )
    except BatchSetupError as exc:
        console.print(f"dermcode: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if bar is not None:
            bar.stop()
        console.print(
            f"dermcode: interrupted; {out} holds every finished note: rerun with --resume",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.stop()

    errors = ", ".join(f"{k} {v}" for k, v in summary.errors_by_type.items())
    rss = (
        f", peak RSS/worker {summary.peak_worker_rss_mb:.0f} MB"
        if summary.peak_worker_rss_mb
        else ""
    )
    console.print(
        f"{summary.processed} notes ({summary.skipped} already done) in {summary.seconds:.1f} s: "
        f"{summary.coded} coded, {summary.flagged} flagged, {summary.errors} errors"
        + (f" ({errors})" if errors else "")
        + f"; {summary.notes_per_s:.1f} notes/s with {summary.workers} worker(s){rss}",
        markup=False,
        highlight=False,
    )
    if summary_json is not None:
        from extractor.io import atomic_write_text

        atomic_write_text(summary_json, json.dumps(summary.model_dump(), indent=2) + "\n")
