"""Every error dermcode raises on purpose, with a stable ``type`` string.

The ``type`` strings double as the NoteError codes of the batch output
(CONTRACT.md), so a batch operator can group failures without parsing messages.
"""

from __future__ import annotations


class DermcodeError(Exception):
    """Base class; ``type`` is the stable machine-readable code."""

    type = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PatternFileError(DermcodeError):
    """A rule file under ``patterns/`` is malformed; names the file and line."""

    type = "pattern_file"

    def __init__(self, file: str, line: int, message: str, field: str | None = None) -> None:
        where = f"{file}:{line}" if line else file
        what = f" (field {field!r})" if field else ""
        super().__init__(f"{where}{what}: {message}")
        self.file = file
        self.line = line
        self.field = field


class CodeSetError(DermcodeError):
    """A code table names a code that is not valid/billable in the shipped code set."""

    type = "code_set"


class ModelError(DermcodeError):
    """The shipped confidence model is missing or unreadable."""

    type = "model"


class NoteReadError(DermcodeError):
    """A note could not be read as text. ``type`` is one of CONTRACT.md's error types."""

    TYPES = ("not_text", "decode_error", "too_large", "empty", "io_error", "not_found")

    def __init__(self, type_: str, message: str) -> None:
        if type_ not in self.TYPES:
            raise ValueError(f"unknown note error type {type_!r}")
        super().__init__(message)
        self.type = type_
