"""``dermcode code FILE|-``: one note → suggestions, as rich tables or NoteResult JSON."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from extractor.cli import app
from extractor.errors import DermcodeError, NoteReadError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def _read_input(file: str) -> tuple[str, str]:
    from extractor.io import decode_note, read_note

    if file == "-":
        data = sys.stdin.buffer.read()
        return decode_note(data, "standard input"), "stdin"
    return read_note(file), Path(file).name


@app.command("code")
def code_command(
    file: Annotated[
        str, typer.Argument(help="Note file, or - to read the note from standard input.")
    ],
    *,
    fmt: Annotated[
        OutputFormat | None,
        typer.Option("--format", "-f", help="table (default on a terminal) or json (NoteResult)."),
    ] = None,
    note_id: Annotated[
        str | None, typer.Option(help="note_id to report (default: file name).")
    ] = None,
    descriptors: Annotated[
        Path | None,
        typer.Option(
            help="CSV of licensed CPT descriptors (code,descriptor) to show instead of our labels.",
            envvar="DERMCODE_CPT_DESCRIPTORS",
        ),
    ] = None,
) -> None:
    """Code one dermatology note: CPT and ICD-10-CM suggestions with evidence, and flags."""
    try:
        text, default_id = _read_input(file)
        from extractor.engine import code_text

        result = code_text(text, note_id or default_id)
    except NoteReadError as exc:
        typer.echo(f"dermcode: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except DermcodeError as exc:
        typer.echo(f"dermcode: {exc.message}", err=True)
        raise typer.Exit(3) from None
    chosen = fmt or (OutputFormat.table if sys.stdout.isatty() else OutputFormat.json)
    if chosen is OutputFormat.json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    from extractor.cli.render import render_result

    labels = None
    if descriptors is not None:
        from extractor.coding.descriptors import load_descriptors

        try:
            labels = load_descriptors(descriptors)
        except DermcodeError as exc:
            typer.echo(f"dermcode: {exc.message}", err=True)
            raise typer.Exit(2) from None
    render_result(result, text, labels)
