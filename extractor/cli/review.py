"""``dermcode review OUT.jsonl``: the flagged notes of a batch result, for CDI teams.

A thin shell over :mod:`extractor.review`: a rich summary in the terminal (counts by
flag, by site, worst notes first) and, on request, a CSV work list and a
self-contained HTML page. It never runs the NLP pipeline, so it starts instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from extractor.cli import app

_HELP = """Review the documentation flags of a batch result (OUT.jsonl from `dermcode batch`).

Lines that are NoteError are skipped and counted. Filters (--flag, --severity,
--min-flags) apply to the terminal summary, the CSV and the HTML page alike.
--notes DIR (the batch input folder) lets the HTML page show each note's text with
the evidence highlighted; without it the page shows the evidence snippets.
Exit status: 0, or 2 when OUT.jsonl cannot be read.
"""


def _text_lookup(notes_dir: Path):
    """note_id -> note text, refusing ids that would escape the folder."""
    from extractor.errors import NoteReadError
    from extractor.io import read_note

    root = notes_dir.resolve()

    def lookup(note_id: str) -> str | None:
        p = (root / note_id).resolve()
        if not p.is_relative_to(root):
            return None
        try:
            return read_note(p)
        except NoteReadError:
            return None

    return lookup


@app.command("review", help=_HELP)
def review_command(
    batch_file: Annotated[Path, typer.Argument(metavar="OUT.jsonl", help="Batch result file.")],
    *,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write one row per flag to this CSV file.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML review page.")
    ] = None,
    notes: Annotated[
        Path | None,
        typer.Option("--notes", help="The batch input folder, to show note text in the HTML."),
    ] = None,
    flag: Annotated[
        list[str] | None, typer.Option("--flag", help="Only this flag id (repeatable).")
    ] = None,
    severity: Annotated[
        Literal["info", "warning", "error"] | None,
        typer.Option("--severity", help="Only flags of this severity or worse."),
    ] = None,
    min_flags: Annotated[
        int, typer.Option("--min-flags", min=1, help="Only notes with at least N flags.")
    ] = 1,
    top: Annotated[int, typer.Option(min=0, help="Worst notes listed in the terminal.")] = 20,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from extractor.review import counts_by_flag, counts_by_site, read_batch, select

    console = Console()
    err = Console(stderr=True)
    try:
        batch = read_batch(batch_file)
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read {batch_file}: {exc}[/red]")
        raise typer.Exit(2) from None
    if notes is not None and not notes.is_dir():
        err.print(f"[red]--notes {notes}: not a folder[/red]")
        raise typer.Exit(2)
    flagged = select(batch.results, flag or (), severity, min_flags)

    console.print(
        f"[bold]{len(batch.results)}[/bold] notes coded, [bold]{len(flagged)}[/bold] flagged"
        f" (after filters), [bold]{len(batch.errors)}[/bold] failed notes skipped"
        + (f", {len(batch.malformed)} unreadable lines skipped" if batch.malformed else "")
    )
    t = Table(title="Flags")
    for col in ("flag", "severity", "notes", "occurrences"):
        t.add_column(col, justify="right" if col in ("notes", "occurrences") else "left")
    for fid, (n_notes, n_occ, sev) in counts_by_flag(flagged).items():
        t.add_row(fid, sev, str(n_notes), str(n_occ))
    console.print(t)
    s = Table(title="Flags by site")
    s.add_column("site")
    s.add_column("flags", justify="right")
    for site, n in counts_by_site(flagged).most_common():
        s.add_row(site, str(n))
    console.print(s)
    w = Table(title=f"Worst notes (top {min(top, len(flagged))})")
    w.add_column("note")
    w.add_column("flags", justify="right")
    w.add_column("worst")
    w.add_column("ids")
    for n in flagged[:top]:
        w.add_row(
            n.note_id,
            str(len(n.flags)),
            n.flags[0].severity,
            ", ".join(sorted({f.id for f in n.flags})),
        )
    console.print(w)

    if csv is not None:
        from extractor.review.csv_out import write_csv

        write_csv(flagged, csv)
        console.print(f"CSV: {csv}")
    if html is not None:
        from extractor.review.html_out import write_html

        write_html(
            flagged,
            html,
            total_notes=len(batch.results),
            errors=len(batch.errors),
            source=str(batch_file.name),
            text_of=_text_lookup(notes) if notes is not None else None,
        )
        console.print(f"HTML: {html}")
