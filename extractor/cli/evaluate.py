"""``dermcode evaluate DIR``: score the pipeline against a gold folder.

A thin shell over :mod:`extractor.evaluate`; the pipeline is built once and every note
goes through the same ``code_text`` the other commands use, so the figures describe
what a coder would get.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from extractor.cli import app

if TYPE_CHECKING:
    from rich.table import Table


class EvalFormat(str, Enum):
    table = "table"
    json = "json"


def _prf_table(title: str, first: str, scores: dict) -> Table:
    """Precision / recall / F1 rows with their gold and predicted counts."""
    from rich.table import Table

    t = Table(title=title)
    for col in (first, "P", "R", "F1", "gold", "pred"):
        t.add_column(col, justify="left" if col == first else "right")
    for name, sc in scores.items():
        t.add_row(name, _pct(sc.precision), _pct(sc.recall), _pct(sc.f1), str(sc.support),
                  str(sc.predicted))
    return t


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def render_report(rep: object, verbose: bool = False) -> None:
    """Rich tables: the headline scores, per-flag scores, then (verbose) each note's misses."""
    from rich.console import Console
    from rich.table import Table

    from extractor.evaluate import Report

    assert isinstance(rep, Report)
    console = Console()
    title = f"{rep.directory}: {rep.notes} notes" + (" (confidence model)" if
                                                      rep.with_confidence else "")
    console.print(_prf_table(title, "measure", rep.scores))
    t = Table(title="accuracy / rates")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("dermoscopy status accuracy", _pct(rep.dermoscopy_accuracy))
    t.add_row(f"E/M level accuracy ({rep.em_notes} notes)", _pct(rep.em_accuracy))
    t.add_row("exact claim (codes+units)", _pct(rep.exact_claim_rate))
    t.add_row("exact claim (+modifiers)", _pct(rep.exact_claim_modifiers_rate))
    t.add_row(f"confidence Brier ({rep.confidence_lines} lines)", _pct(rep.confidence_brier))
    console.print(t)
    console.print(_prf_table("flags", "flag", rep.flags))
    for nid, err in rep.errors.items():
        console.print(f"[red]error[/red] {nid}: {err}", markup=True, highlight=False)
    if not verbose:
        return
    for ne in rep.per_note:
        if not ne.misses:
            continue
        console.print(f"\n[bold]{ne.note_id}[/bold]  exact claim: {ne.exact_claim}",
                      highlight=False)
        for m in ne.misses:
            ev = f"  ← {m.evidence}" if m.evidence else ""
            console.print(f"  {m.kind} {m.what:<10} {m.item}{ev}", markup=False,
                          highlight=False)


@app.command("evaluate")
def evaluate_command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Gold folder (NAME.txt + NAME.json).")
    ],
    *,
    fmt: Annotated[
        EvalFormat, typer.Option("--format", "-f", help="table (default) or json.")
    ] = EvalFormat.table,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List each note's misses with the evidence.")
    ] = False,
    confidence: Annotated[
        bool,
        typer.Option("--confidence/--no-confidence",
                     help="Score the trained model's confidences (default) or, with "
                          "--no-confidence, the engines' own heuristic ones."),
    ] = True,
) -> None:
    """Score the pipeline against a gold folder: P/R/F1 for codes, modifiers, ICD-10-CM and
    flags, dermoscopy and E/M accuracy, exact-claim rate."""
    from extractor.errors import DermcodeError
    from extractor.evaluate import dumps, evaluate_dir

    try:
        rep = evaluate_dir(directory, with_confidence=confidence)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"dermcode: {exc}", err=True)
        raise typer.Exit(2) from None
    except DermcodeError as exc:
        typer.echo(f"dermcode: {exc.message}", err=True)
        raise typer.Exit(3) from None
    if fmt is EvalFormat.json:
        sys.stdout.write(dumps(rep, verbose) + "\n")
    else:
        render_report(rep, verbose)
