"""One CSV row per flag, for spreadsheets and work-queue imports."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from extractor.io import atomic_write_text
from extractor.review import FlaggedNote, flag_site, suggested_fix

COLUMNS = [
    "note_id",
    "flag",
    "severity",
    "site",
    "message",
    "evidence",
    "evidence_offsets",
    "suggested_query",
]


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas: note text is untrusted ("=HYPERLINK(...)")."""
    if value[:1] in ("=", "+", "@", "\t", "\r") or (value[:1] == "-" and value[1:2].strip()):
        return "'" + value
    return value


def render_csv(notes: list[FlaggedNote]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for n in notes:
        for f in n.flags:
            w.writerow(
                [
                    _cell(c)
                    for c in [
                        n.note_id,
                        f.id,
                        f.severity,
                        flag_site(n.result, f),
                        f.message,
                        " | ".join(" ".join(e.text.split()) for e in f.evidence),
                        " ".join(f"{e.start}-{e.end}" for e in f.evidence),
                        suggested_fix(f),
                    ]
                ]
            )
    return buf.getvalue()


def write_csv(notes: list[FlaggedNote], path: str | Path) -> None:
    """Atomically, so a spreadsheet watching the file never opens half of it."""
    atomic_write_text(path, render_csv(notes))
