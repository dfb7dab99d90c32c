"""Reading a batch result and shaping it for documentation-improvement review.

``dermcode review`` and the CDI notebook share this module so that "a flagged note",
"the site of a flag" and "worst first" mean the same thing in the terminal, the CSV,
the HTML page and the plots. Nothing here needs the NLP pipeline: a review runs on
a laptop against a batch file produced elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from extractor.schemas import Flag, NoteError, NoteResult

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
NO_SITE = "site not stated"


@dataclass
class BatchFile:
    """A parsed batch result: the coded notes, the notes that failed, unreadable lines."""

    results: list[NoteResult] = field(default_factory=list)
    errors: list[NoteError] = field(default_factory=list)
    malformed: list[int] = field(default_factory=list)  # 1-based line numbers


@dataclass
class FlaggedNote:
    """One note with the flags that passed the filters, worst first."""

    result: NoteResult
    flags: list[Flag]

    @property
    def worst(self) -> int:
        return max((SEVERITY_RANK[f.severity] for f in self.flags), default=-1)

    @property
    def note_id(self) -> str:
        return self.result.note_id


def read_batch(path: str | Path) -> BatchFile:
    """Parse OUT.jsonl; a NoteError line is kept as an error, a broken line is counted,
    never fatal: a review of 10,000 notes should not die on one truncated line."""
    out = BatchFile()
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
                if isinstance(obj, dict) and "error" in obj and "cpt" not in obj:
                    out.errors.append(NoteError.model_validate(obj))
                else:
                    out.results.append(NoteResult.model_validate(obj))
            except (json.JSONDecodeError, ValidationError):
                out.malformed.append(lineno)
    return out


def select(
    results: Iterable[NoteResult],
    flag_ids: Iterable[str] = (),
    severity: str | None = None,
    min_flags: int = 1,
) -> list[FlaggedNote]:
    """Notes with at least ``min_flags`` flags among those matching the filters, worst
    first (highest severity, then most flags, then note id for a stable order)."""
    wanted = set(flag_ids)
    floor = SEVERITY_RANK[severity] if severity else -1
    notes = []
    for r in results:
        kept = [
            f
            for f in r.flags
            if (not wanted or f.id in wanted) and SEVERITY_RANK.get(f.severity, 0) >= floor
        ]
        if kept and len(kept) >= max(1, min_flags):
            kept.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.id))
            notes.append(FlaggedNote(r, kept))
    notes.sort(key=lambda n: (-n.worst, -len(n.flags), n.note_id))
    return notes


def flag_site(result: NoteResult, flag: Flag) -> str:
    """The anatomic site a flag is about: a SITE entity among or next to its evidence."""
    sites = [e for e in result.entities if e.label == "SITE"]
    if not sites or not flag.evidence:
        return NO_SITE
    for ev in flag.evidence:
        for s in sites:
            if s.start < ev.end and ev.start < s.end:
                return str(s.attrs.get("site") or s.text.lower())
    first = flag.evidence[0]
    near = min(sites, key=lambda s: abs(s.start - first.start))
    if abs(near.start - first.start) <= 80:
        return str(near.attrs.get("site") or near.text.lower())
    return NO_SITE


def counts_by_flag(notes: list[FlaggedNote]) -> dict[str, tuple[int, int, str]]:
    """flag id -> (notes raising it, occurrences, severity), most frequent first."""
    per_note: Counter[str] = Counter()
    occ: Counter[str] = Counter()
    sev: dict[str, str] = {}
    for n in notes:
        for fid in {f.id for f in n.flags}:
            per_note[fid] += 1
        for f in n.flags:
            occ[f.id] += 1
            sev[f.id] = f.severity
    return {k: (per_note[k], occ[k], sev[k]) for k, _ in per_note.most_common()}


def counts_by_site(notes: list[FlaggedNote]) -> Counter[str]:
    c: Counter[str] = Counter()
    for n in notes:
        for f in n.flags:
            c[flag_site(n.result, f)] += 1
    return c


def suggested_fix(flag: Flag) -> str:
    """What the CDI reviewer sends: the physician query, else the message."""
    return flag.query or flag.message
