"""The CPT/HCPCS code set the engine may emit, and the guard against deleted codes.

Every code the engine puts on a claim must be a row of ``patterns/coding/cpt_codes.jsonl``
with ``emit`` true, and no row of that table may be a deleted code
(``patterns/coding/cpt_deleted.jsonl``: 11100, 11101, 99201, 17100-17105, ...). The
check runs when the tables load, so a bad row stops the program at start-up with its
file and line; ``assert_emittable`` is the last gate before a line leaves the engine.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from extractor.errors import CodeSetError, PatternFileError
from extractor.patterns import load_family, patterns_dir, read_rows

DELETED_FILE = "coding/cpt_deleted.jsonl"
_CODE_SHAPE = re.compile(r"^(\d{4}[0-9FTU]|[A-V]\d{4})$")


class DeletedRow(BaseModel):
    """A CPT code that no longer exists and must never be emitted."""

    model_config = ConfigDict(extra="forbid")

    code: str
    replaced_by: list[str] = []
    comment: str | None = None


@cache
def deleted_codes(base: Path | None = None) -> frozenset[str]:
    return frozenset(r.code for r in load_family(DELETED_FILE, DeletedRow, base=base))


def well_formed(code: str) -> bool:
    """Five characters: a CPT Category I/II/III code or a HCPCS Level II code."""
    return bool(_CODE_SHAPE.match(code))


def check_table(relative: str, model: type[BaseModel], base: Path | None = None) -> None:
    """Reject a code table that holds a malformed or deleted code, naming file and line."""
    root = base or patterns_dir()
    dead = deleted_codes(base)
    for lineno, row in read_rows(root / relative, model):
        code = getattr(row, "code", "")
        if not well_formed(code):
            raise PatternFileError(str(root / relative), lineno, f"malformed code {code!r}", "code")
        if code in dead:
            raise PatternFileError(
                str(root / relative), lineno, f"{code} is a deleted code and may not be listed",
                "code",
            )


def assert_emittable(code: str, emittable: frozenset[str] | set[str]) -> None:
    """The last gate: a code leaving the engine is current and in our code table."""
    if code in deleted_codes() or code not in emittable:
        raise CodeSetError(f"engine tried to emit {code!r}, which is not in the CPT code table")
