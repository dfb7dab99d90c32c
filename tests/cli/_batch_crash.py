"""Stand-ins for the batch worker functions, importable by spawned/forkserver workers.

Used by test_batch.py to kill a worker process on one note without loading the
pipeline (so the test takes seconds, not a pipeline build per replacement pool).
"""

from __future__ import annotations

import os

from extractor.batch import NoteOutcome, NoteTask


def no_init(parent_pid: int | None = None) -> None:
    """Workers skip the pipeline build."""


def crash_on_boom(tasks: list[NoteTask]) -> tuple[list[NoteOutcome], float | None]:
    """Die like a segfault on ``boom.txt``; a fake NoteResult line for any other note."""
    if any(t.note_id == "boom.txt" for t in tasks):
        os._exit(3)
    return [NoteOutcome(t.note_id, f'{{"note_id": "{t.note_id}", "cpt": []}}') for t in tasks], None
