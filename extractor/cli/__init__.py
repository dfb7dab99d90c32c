"""The ``dermcode`` command line: one module per command, each a thin shell over library code."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dermcode",
    help="Suggest CPT and ICD-10-CM codes for dermatology notes, with evidence and flags.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from extractor.cli import batch as _batch  # noqa: E402,F401
from extractor.cli import code as _code  # noqa: E402,F401  (registers `dermcode code`)
from extractor.cli import evaluate as _evaluate  # noqa: E402,F401
from extractor.cli import review as _review  # noqa: E402,F401
from extractor.cli import spark as _spark  # noqa: E402,F401
from extractor.cli import train as _train  # noqa: E402,F401
