"""Coding a folder of notes into one JSON line per note, crash-safe and resumable.

A batch run is how a practice codes a day's (or a year's) notes, so it must not
lose work: every result is appended and flushed the moment it is ready, a killed
run leaves ``OUT`` valid up to its last complete line, and ``resume=True`` picks up
where it stopped. Every note found gets exactly one line (CONTRACT.md): a
NoteResult, or a NoteError whose ``type`` says why it could not be coded. One bad
note never stops the run, not even one that crashes the Python process coding it.

Workers are separate processes (``spawn``/``forkserver``-safe: nothing here relies
on inherited state), each building the pipeline once in its initializer and
returning finished JSON strings, never spaCy objects, so the parent stays small and
only writes. This module imports nothing heavy at module level: a spawned worker,
and ``dermcode --help``, pay only for what they use.

Nothing here logs note text: messages name note ids, error types and exception
classes only.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

log = logging.getLogger("dermcode")

DEFAULT_GLOB = "*.txt"
#: Notes sent to a worker at a time: large enough to amortise the round trip (a note
#: takes a few ms), small enough to keep the progress bar live and to lose little
#: work when a worker dies.
CHUNK_SIZE = 16
#: Characters that ``str.splitlines`` (and many JSONL readers) treat as line breaks
#: but JSON leaves unescaped. Escaping them keeps "one line per note" true for any reader.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ERROR_TYPES = ("not_text", "decode_error", "too_large", "empty", "io_error", "internal")


class BatchSetupError(Exception):
    """The run cannot proceed at all (input folder missing, output unwritable)."""


class BatchSummary(BaseModel):
    """What one :func:`run_batch` call did; counts cover this run's notes only."""

    found: int = Field(description="note files found under the input folder")
    skipped: int = Field(0, description="notes already complete in OUT (resume)")
    processed: int = Field(0, description="notes coded or failed in this run")
    coded: int = Field(0, description="NoteResults with at least one CPT or ICD-10-CM code")
    flagged: int = Field(0, description="NoteResults with at least one documentation flag")
    errors: int = Field(0, description="NoteErrors written in this run")
    errors_by_type: dict[str, int] = Field(default_factory=dict)
    workers: int = 1
    seconds: float = 0.0
    notes_per_s: float = 0.0
    peak_worker_rss_mb: float | None = Field(
        None, description="largest peak resident memory of one coding process"
    )
    interrupted: bool = False


@dataclass(frozen=True)
class NoteTask:
    """One note to code: its id (path relative to the input folder) and where it is."""

    note_id: str
    path: str


@dataclass(frozen=True)
class NoteOutcome:
    """A finished note: the JSON line for OUT and the few facts the summary counts."""

    note_id: str
    line: str
    error_type: str | None = None
    coded: bool = False
    flagged: bool = False


# --------------------------------------------------------------------------- finding notes


def iter_notes(
    root: str | Path, glob: str = DEFAULT_GLOB, exclude: Sequence[str | Path] = ()
) -> Iterator[NoteTask]:
    """Every file under ``root`` whose relative path matches ``glob``, in sorted order.

    ``glob`` matches like :meth:`PurePath.match` (from the right, so ``*.txt`` matches
    at any depth). Symlinked folders are not followed, so a link loop cannot make the
    walk endless; symlinked files are. A folder that cannot be listed is yielded as
    one task with a trailing ``/`` so that it surfaces as an ``io_error`` line
    instead of silently hiding the notes in it. Paths in ``exclude`` (our own output
    files, when they lie inside ``root``) are skipped.
    """
    base = Path(root)
    skip = {os.path.realpath(p) for p in exclude}
    unreadable: list[str] = []

    def onerror(err: OSError) -> None:
        if err.filename and os.path.realpath(err.filename) != os.path.realpath(base):
            unreadable.append(str(err.filename))

    found: list[NoteTask] = []
    for dirpath, dirnames, filenames in os.walk(base, onerror=onerror, followlinks=False):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = PurePosixPath(Path(os.path.relpath(full, base)).as_posix())
            if not rel.match(glob) or os.path.realpath(full) in skip:
                continue
            found.append(NoteTask(str(rel), full))
        # A folder whose name matches the glob (``old.txt/``) is reported, not walked past
        # silently: the user's pattern says it is a note.
        for name in dirnames:
            full = os.path.join(dirpath, name)
            rel = PurePosixPath(Path(os.path.relpath(full, base)).as_posix())
            if rel.match(glob) and not os.path.islink(full):
                found.append(NoteTask(str(rel), full))
    for d in unreadable:
        rel = Path(os.path.relpath(d, base)).as_posix().rstrip("/") + "/"
        found.append(NoteTask(rel, d))
    found.sort(key=lambda t: t.note_id)
    yield from found


# --------------------------------------------------------------------------- coding one note


def _json_line(model: BaseModel) -> str:
    line = model.model_dump_json()
    for ch, esc in _LINE_BREAKS.items():
        if ch in line:
            line = line.replace(ch, esc)
    return line


def error_outcome(note_id: str, error_type: str, message: str) -> NoteOutcome:
    """A NoteError line; unknown types (e.g. the reader's ``not_found``) become ``io_error``."""
    from extractor.schemas import ErrorInfo, NoteError

    etype = error_type if error_type in _ERROR_TYPES else "io_error"
    err = NoteError(note_id=note_id, error=ErrorInfo(type=etype, message=message))  # type: ignore[arg-type]
    return NoteOutcome(note_id, _json_line(err), error_type=etype)


def _internal_message(exc: BaseException) -> str:
    """Exception class and where it was raised: enough to find the bug, no note text.

    The exception's own message is left out on purpose: it may quote the note.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno} in {last.name}"
    return f"internal error while coding this note: {type(exc).__name__}{where}"


def code_one_text(note_id: str, text: str) -> NoteOutcome:
    """Code decoded text; any exception becomes this note's ``internal`` NoteError."""
    from extractor.engine import code_text

    try:
        result = code_text(text, note_id)
        line = _json_line(result)
    except Exception as exc:  # noqa: BLE001 - one note must never stop the batch
        log.error("note %s: %s", note_id, _internal_message(exc))
        return error_outcome(note_id, "internal", _internal_message(exc))
    return NoteOutcome(
        note_id,
        line,
        coded=bool(result.cpt or result.icd10),
        flagged=bool(result.flags),
    )


def code_one_bytes(note_id: str, data: bytes | None, source: str | None = None) -> NoteOutcome:
    """Decode raw note bytes as :func:`extractor.io.decode_note` does, then code them."""
    from extractor.errors import NoteReadError
    from extractor.io import decode_note

    if data is None:
        return error_outcome(note_id, "empty", f"{note_id}: no note content")
    try:
        text = decode_note(bytes(data), source or note_id)
    except NoteReadError as exc:
        return error_outcome(note_id, exc.type, exc.message)
    return code_one_text(note_id, text)


def code_one_file(task: NoteTask) -> NoteOutcome:
    """Read (safely, see :mod:`extractor.io`) and code one note file."""
    from extractor.errors import NoteReadError
    from extractor.io import read_note

    try:
        text = read_note(task.path)
    except NoteReadError as exc:
        # The reader names the absolute path; the id relative to DIR is what OUT uses.
        return error_outcome(task.note_id, exc.type, exc.message.replace(task.path, task.note_id))
    except Exception as exc:  # noqa: BLE001
        return error_outcome(task.note_id, "internal", _internal_message(exc))
    return code_one_text(task.note_id, text)


# --------------------------------------------------------------------------- worker processes


class PipelineLoadError(Exception):
    """The pipeline or the coding engines failed to load: no note can be coded.

    Raised in a worker, it crosses the process boundary (a plain message, picklable)
    and ends the run as a :class:`BatchSetupError` instead of one ``internal`` error
    per note, which would hide a broken install behind thousands of lines.
    """


_LOAD_ERROR: str | None = None


def load_pipeline() -> None:
    """Build the pipeline and import the coding engines, once per process."""
    try:
        from extractor.coding import cpt, dermoscopy, flags, icd10  # noqa: F401
        from extractor.pipeline import get_pipeline

        get_pipeline()
    except Exception as exc:  # noqa: BLE001 - reported once, as a setup failure
        raise PipelineLoadError(
            f"the coding pipeline could not be loaded: {type(exc).__name__}: {exc}"
        ) from None


def _watch_parent(parent_pid: int) -> None:
    """Exit when the batch process is gone (killed with SIGKILL, say).

    Under ``forkserver`` a worker's parent is the fork server, not the batch process,
    so nothing else would stop orphaned workers from sitting on ~400 MB each.
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - pid reused by another user
                os._exit(1)

    threading.Thread(target=watch, name="dermcode-parent-watch", daemon=True).start()


def _init_worker(parent_pid: int | None = None) -> None:
    import signal

    if parent_pid is not None:
        _watch_parent(parent_pid)

    # Ctrl-C is the parent's to handle (flush OUT, stop the pool); a worker that took it
    # too would print a traceback per process. Workers write nothing to the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("dermcode").setLevel(logging.CRITICAL)
    global _LOAD_ERROR
    try:
        load_pipeline()
    except PipelineLoadError as exc:  # an initializer that raises breaks the whole pool
        _LOAD_ERROR = str(exc)


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _work_chunk(tasks: list[NoteTask]) -> tuple[list[NoteOutcome], float | None]:
    if _LOAD_ERROR is not None:
        raise PipelineLoadError(_LOAD_ERROR)
    return [code_one_file(t) for t in tasks], _peak_rss_mb()


def _ping() -> int:
    """A no-op task: proves a fresh worker can start and load the pipeline."""
    if _LOAD_ERROR is not None:
        raise PipelineLoadError(_LOAD_ERROR)
    return os.getpid()


def _mp_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where it exists (fast, no inherited threads or locks), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# --------------------------------------------------------------------------- OUT handling


def completed_ids(out: Path) -> set[str]:
    """note_ids with a complete line in ``out``, repairing the file for appending.

    A killed run can leave a last line without its newline, or half a JSON object:
    that line is cut off (its note is redone). Should a damaged line ever sit in the
    middle, the file is rewritten atomically without it, so OUT stays valid JSONL.
    """
    from extractor.io import atomic_write_text

    if not out.exists():
        return set()
    data = out.read_bytes()
    done: set[str] = set()
    good: list[bytes] = []
    bad = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:  # truncated tail: no newline, so never a complete line
            bad += 1
            break
        raw = data[pos:nl]
        pos = nl + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            note_id = obj["note_id"]
            if not isinstance(note_id, str) or not ("error" in obj or "cpt" in obj):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        done.add(note_id)
        good.append(raw)
    if bad:
        log.warning("%s: dropped %d incomplete line(s) from an interrupted run", out, bad)
        text = b"".join(g + b"\n" for g in good).decode("utf-8")
        atomic_write_text(out, text)
    return done


class _Writer:
    """Appends lines to OUT, line-buffered; ``close`` fsyncs so a finished run is on disk."""

    def __init__(self, path: Path, append: bool) -> None:
        self.fh = open(path, "a" if append else "w", encoding="utf-8", buffering=1, newline="\n")  # noqa: SIM115

    def write(self, line: str) -> None:
        self.fh.write(line + "\n")

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def write_csv(jsonl: Path, csv_path: Path) -> int:
    """One row per CPT line of every NoteResult in ``jsonl``, written atomically; row count."""
    import csv
    import io

    from extractor.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["note_id", "code", "units", "modifiers", "icd10", "confidence", "rationale"])
    rows = 0
    with jsonl.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            for line in obj.get("cpt") or []:
                w.writerow(
                    [
                        obj["note_id"],
                        line["code"],
                        line["units"],
                        " ".join(line.get("modifiers") or []),
                        " ".join(line.get("icd10") or []),
                        line.get("confidence"),
                        line.get("rationale", ""),
                    ]
                )
                rows += 1
    atomic_write_text(csv_path, buf.getvalue())
    return rows


def _check_writable(path: Path) -> None:
    if path.exists() and path.is_dir():
        raise BatchSetupError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BatchSetupError(f"{parent}: no such folder for the output")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BatchSetupError(f"{path}: not writable")


# --------------------------------------------------------------------------- the run


def run_batch(
    root: str | Path,
    out: str | Path,
    *,
    glob: str = DEFAULT_GLOB,
    workers: int | None = None,
    resume: bool = False,
    csv_path: str | Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[NoteOutcome], None] | None = None,
) -> BatchSummary:
    """Code every note under ``root`` into ``out`` (JSONL), one line per note.

    ``workers`` defaults to ``os.cpu_count()``; with 1 the notes are coded in this
    process (no pool to start, and easy to debug). Lines are written in completion
    order, not path order. ``on_start(n)`` is told how many notes will be coded and
    ``on_result`` each outcome as it is written (the CLI's progress bar). Raises
    :class:`BatchSetupError` only when the run cannot proceed; on ``KeyboardInterrupt``
    OUT is flushed and closed with every finished note in it, then the interrupt
    propagates.
    """
    root = Path(root)
    out = Path(out)
    if not root.is_dir():
        raise BatchSetupError(
            f"{root}: no such folder" if not root.exists() else f"{root}: not a folder"
        )
    _check_writable(out)
    if csv_path is not None:
        _check_writable(Path(csv_path))
    n_workers = max(1, workers or os.cpu_count() or 1)

    excluded = [out] + ([Path(csv_path)] if csv_path is not None else [])
    tasks = list(iter_notes(root, glob, exclude=excluded))
    done = completed_ids(out) if resume else set()
    todo = [t for t in tasks if t.note_id not in done]
    summary = BatchSummary(found=len(tasks), skipped=len(tasks) - len(todo), workers=n_workers)
    if on_start:
        on_start(len(todo))

    try:
        writer = _Writer(out, append=resume)
    except OSError as exc:
        raise BatchSetupError(f"{out}: {exc.strerror or exc}") from None
    by_type: Counter[str] = Counter()
    peak: list[float] = []

    def emit(o: NoteOutcome) -> None:
        writer.write(o.line)
        summary.processed += 1
        if o.error_type:
            summary.errors += 1
            by_type[o.error_type] += 1
        else:
            summary.coded += o.coded
            summary.flagged += o.flagged
        if on_result:
            on_result(o)

    t0 = time.perf_counter()
    try:
        if n_workers == 1 or len(todo) <= 1:
            if todo:
                load_pipeline()
            for t in todo:
                emit(code_one_file(t))
            rss = _peak_rss_mb()
            if rss is not None and todo:
                peak.append(rss)
        else:
            _run_pool(todo, n_workers, emit, peak)
    except PipelineLoadError as exc:
        raise BatchSetupError(str(exc)) from None
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        writer.close()
        summary.seconds = round(time.perf_counter() - t0, 3)
        summary.notes_per_s = (
            round(summary.processed / summary.seconds, 2) if summary.seconds else 0.0
        )
        summary.errors_by_type = dict(sorted(by_type.items()))
        summary.peak_worker_rss_mb = round(max(peak), 1) if peak else None
    if csv_path is not None:
        write_csv(out, Path(csv_path))
    return summary


def _chunks(tasks: list[NoteTask], size: int) -> Iterator[list[NoteTask]]:
    for i in range(0, len(tasks), size):
        yield tasks[i : i + size]


def _run_pool(
    todo: list[NoteTask],
    n_workers: int,
    emit: Callable[[NoteOutcome], None],
    peak: list[float],
) -> None:
    """Code ``todo`` in a process pool, surviving workers that die.

    A worker killed mid-note (segfault, out of memory) breaks a ProcessPoolExecutor.
    The chunks that were in flight are then redone one note at a time, each in a
    fresh single-worker pool, so only a note that kills its process on its own gets
    an ``internal`` error; the rest of the run continues in a new pool.
    """
    pending = list(_chunks(todo, CHUNK_SIZE))
    pending.reverse()  # pop() from the end keeps path order
    window = n_workers * 3
    while pending:
        suspects: list[NoteTask] = []
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=_mp_context(),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        ) as pool:
            inflight: dict[Future[tuple[list[NoteOutcome], float | None]], list[NoteTask]] = {}
            try:
                while pending or inflight:
                    while pending and len(inflight) < window:
                        chunk = pending.pop()
                        inflight[pool.submit(_work_chunk, chunk)] = chunk
                    finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        outcomes, rss = _chunk_result(fut, inflight[fut])
                        del inflight[fut]
                        if rss is not None:
                            peak.append(rss)
                        for o in outcomes:
                            emit(o)
            except BrokenProcessPool:
                for fut, chunk in inflight.items():
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        outcomes, _ = fut.result()
                        for o in outcomes:
                            emit(o)
                    else:
                        suspects.extend(chunk)
                log.warning("a coding process died; redoing %d note(s) one by one", len(suspects))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        if suspects:
            _one_by_one(suspects, emit, peak)


def _chunk_result(
    fut: Future[tuple[list[NoteOutcome], float | None]], chunk: list[NoteTask]
) -> tuple[list[NoteOutcome], float | None]:
    """A chunk's outcomes; an error outside the per-note guard fails only that chunk's notes."""
    try:
        return fut.result()
    except (BrokenProcessPool, PipelineLoadError):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a result that would not unpickle
        return [error_outcome(t.note_id, "internal", _internal_message(exc)) for t in chunk], None


def _one_by_one(
    suspects: list[NoteTask], emit: Callable[[NoteOutcome], None], peak: list[float]
) -> None:
    """Redo notes alone in a single-worker pool, replaced only when a note kills it."""
    pool: ProcessPoolExecutor | None = None
    try:
        for task in suspects:
            if pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=_mp_context(),
                    initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
                try:
                    pool.submit(_ping).result()
                except BrokenProcessPool:
                    # Dies before seeing any note: the environment, not a note, is at fault.
                    raise BatchSetupError("coding worker processes cannot start") from None
            try:
                outcomes, rss = _chunk_result(pool.submit(_work_chunk, [task]), [task])
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                pool = None
                log.error("note %s: the coding process died on it", task.note_id)
                emit(
                    error_outcome(
                        task.note_id,
                        "internal",
                        "internal error: the coding process died while coding this note",
                    )
                )
                continue
            if rss is not None:
                peak.append(rss)
            for o in outcomes:
                emit(o)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
