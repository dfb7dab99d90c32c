"""``dermcode train``: rebuild the confidence model from corpus/dev, reproducibly.

Writes ``models/confidence/<YYYY-MM-DD>/`` (model.skops + manifest.json) and the model
card ``models/README.md``. Same corpus + same seed → same predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extractor.cli import app


@app.command("train")
def train_command(
    corpus: Annotated[
        Path, typer.Option(help="Gold folder to train on (never corpus/test).")
    ] = Path("corpus/dev"),
    models: Annotated[Path, typer.Option(help="Models folder.")] = Path("models"),
    seed: Annotated[int, typer.Option(help="Random seed (folds, solver).")] = 20261125,
    date: Annotated[
        str | None, typer.Option(help="Folder name (YYYY-MM-DD); default today.")
    ] = None,
) -> None:
    """Train the line-confidence model (calibrated logistic regression) and its model card."""
    from extractor.errors import DermcodeError
    from extractor.training import train

    if corpus.resolve().name == "test":
        typer.echo("dermcode: refusing to train on a held-out test folder", err=True)
        raise typer.Exit(2)
    try:
        out, manifest = train(corpus, models, seed=seed, date=date)
    except FileNotFoundError as exc:
        typer.echo(f"dermcode: {exc}", err=True)
        raise typer.Exit(2) from None
    except DermcodeError as exc:
        typer.echo(f"dermcode: {exc.message}", err=True)
        raise typer.Exit(3) from None
    cv = manifest.metrics["cross_validated"]
    typer.echo(f"model written to {out}")
    typer.echo(f"cross-validated Brier {cv['model']['brier']} "
               f"(rule baseline {cv['rule_confidence_baseline']['brier']}), "
               f"ROC AUC {cv['model'].get('roc_auc')}; model card {models / 'README.md'}")
