"""Reading notes safely and writing outputs atomically.

A note is protected health information and the coder's only copy may be the file
we are given: nothing here logs text, and a bad file becomes a typed
:class:`~extractor.errors.NoteReadError` (CONTRACT.md's error types) instead of a
crash or a silently mangled note.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path

from extractor.errors import NoteReadError

#: Notes above this many bytes get ``too_large``. Real notes are a few KB; 2 MB is
#: far above any clinical note and keeps one worker's memory bounded.
MAX_NOTE_BYTES = 2_000_000

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes that never occur in text in any encoding we accept (C0 controls but \t \n \f \r, ESC).
_BINARY_BYTES = set(range(0, 9)) | {11} | set(range(14, 27)) | set(range(28, 32))


def decode_note(data: bytes, source: str = "note") -> str:
    """Bytes → text: UTF-8 (with or without BOM), UTF-16/32 with BOM, else Windows-1252.

    Binary data (NUL bytes, control characters, undecodable in every candidate) is
    refused with ``not_text``; an empty or whitespace-only note with ``empty``.
    """
    if len(data) > MAX_NOTE_BYTES:
        raise NoteReadError(
            "too_large", f"{source}: {len(data)} bytes, above the {MAX_NOTE_BYTES}-byte limit"
        )
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(enc)
            except UnicodeDecodeError as exc:
                raise NoteReadError(
                    "decode_error", f"{source}: invalid {enc}: {exc.reason}"
                ) from None
            return _check_text(text, source)
    sample = data[:4096]
    if b"\x00" in sample or sum(b in _BINARY_BYTES for b in sample) > max(2, len(sample) // 100):
        raise NoteReadError("not_text", f"{source}: binary data, not a text note")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            try:
                text = data.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                raise NoteReadError("decode_error", f"{source}: not decodable as text") from None
    return _check_text(text, source)


def _check_text(text: str, source: str) -> str:
    if not text.strip():
        raise NoteReadError("empty", f"{source}: the note is empty")
    if "\x00" in text:
        raise NoteReadError("not_text", f"{source}: contains NUL characters")
    return text


def read_note(path: str | Path) -> str:
    """Read one note file; every failure is a NoteReadError with a CONTRACT.md type."""
    p = Path(path)
    try:
        if p.is_dir():
            raise NoteReadError("io_error", f"{p}: is a directory, not a note file")
        size = p.stat().st_size
        if size > MAX_NOTE_BYTES:
            raise NoteReadError(
                "too_large", f"{p}: {size} bytes, above the {MAX_NOTE_BYTES}-byte limit"
            )
        data = p.read_bytes()
    except FileNotFoundError:
        raise NoteReadError("not_found", f"{p}: no such file") from None
    except NoteReadError:
        raise
    except OSError as exc:
        raise NoteReadError("io_error", f"{p}: {exc.strerror or exc}") from None
    return decode_note(data, str(p))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
