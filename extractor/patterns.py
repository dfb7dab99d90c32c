"""The single reader of ``patterns/``: finds the folder and validates every rule row.

Rule files are JSONL, one rule per line, so an error can name ``file:line``. Each
line is checked with the pydantic row model of its family; token patterns go
through spaCy's own validator and regexes are compiled here, so a broken rule fails
at start-up with its location rather than matching nothing at run time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from extractor.errors import PatternFileError

R = TypeVar("R", bound=BaseModel)


def patterns_dir() -> Path:
    """Locate the rule folder: an override, the copy inside the wheel, or the source tree."""
    override = os.environ.get("DERMCODE_PATTERNS")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here / "_patterns", here.parent / "patterns"):
        if candidate.is_dir():
            return candidate
    raise PatternFileError("patterns/", 0, "rule folder not found (set DERMCODE_PATTERNS)")


def _iter_lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PatternFileError(str(path), 0, f"cannot read: {exc}") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PatternFileError(str(path), lineno, f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise PatternFileError(str(path), lineno, "each line must be a JSON object")
        yield lineno, obj


def _check_pattern(path: Path, lineno: int, pattern: object) -> None:
    if pattern is None:
        return
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PatternFileError(str(path), lineno, f"bad regex: {exc}", "pattern") from None
        return
    from spacy.schemas import validate_token_pattern

    errors = validate_token_pattern(pattern)
    if errors:
        raise PatternFileError(str(path), lineno, "; ".join(map(str, errors)), "pattern")


def read_rows(path: Path, model: type[R]) -> list[tuple[int, R]]:
    """Read and validate one JSONL file; returns (line number, row) pairs."""
    rows: list[tuple[int, R]] = []
    seen: dict[str, int] = {}
    for lineno, obj in _iter_lines(path):
        try:
            row = model.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise PatternFileError(str(path), lineno, err["msg"], field) from None
        if "pattern" in type(row).model_fields:
            _check_pattern(path, lineno, row.pattern)
        if "regex" in type(row).model_fields:
            _check_pattern(path, lineno, str(row.regex))
        rid = getattr(row, "id", None)
        if rid is not None:
            if rid in seen:
                raise PatternFileError(
                    str(path), lineno, f"duplicate id {rid!r} (first on line {seen[rid]})", "id"
                )
            seen[rid] = lineno
        rows.append((lineno, row))
    return rows


def load_family(relative: str, model: type[R], base: Path | None = None) -> list[R]:
    """Rows of ``patterns/<relative>``: one file, or every ``*.jsonl`` in a folder."""
    root = base or patterns_dir()
    target = root / relative
    files = sorted(target.glob("*.jsonl")) if target.is_dir() else [target]
    if not files or not all(f.exists() for f in files):
        raise PatternFileError(str(target), 0, "rule file not found")
    out: list[R] = []
    ids: dict[str, str] = {}
    for f in files:
        for lineno, row in read_rows(f, model):
            rid = getattr(row, "id", None)
            if rid is not None:
                if rid in ids:
                    raise PatternFileError(
                        str(f), lineno, f"duplicate id {rid!r} (also in {ids[rid]})", "id"
                    )
                ids[rid] = f"{f.name}:{lineno}"
            out.append(row)
    return out


@cache
def cached_family(relative: str, model: type[R]) -> tuple[R, ...]:
    """``load_family`` once per process for the default folder."""
    return tuple(load_family(relative, model))
