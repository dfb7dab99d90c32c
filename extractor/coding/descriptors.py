"""Official CPT descriptors from a licensed user's own file (we ship only plain labels).

The file is a CSV with a header row naming at least ``code`` and ``descriptor``
(case-insensitive); one row per code. Anything else is a clear ``DermcodeError``
naming the file and line, never a silent empty table.
"""

from __future__ import annotations

import csv
from pathlib import Path

from extractor.coding.codeset import well_formed
from extractor.errors import DermcodeError


class DescriptorFileError(DermcodeError):
    type = "descriptor_file"


def load_descriptors(path: str | Path) -> dict[str, str]:
    """``code -> descriptor`` from the user's CSV (columns ``code``, ``descriptor``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptorFileError(f"{p}: cannot read descriptor file: {exc}") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header:
        raise DescriptorFileError(f"{p}: empty descriptor file (expected header code,descriptor)")
    cols = [h.strip().lower() for h in header]
    if "code" not in cols or "descriptor" not in cols:
        raise DescriptorFileError(
            f"{p}:1: header must name the columns 'code' and 'descriptor', found {header!r}"
        )
    ci, di = cols.index("code"), cols.index("descriptor")
    out: dict[str, str] = {}
    for lineno, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) <= max(ci, di):
            raise DescriptorFileError(f"{p}:{lineno}: expected {len(cols)} columns, got {len(row)}")
        code, desc = row[ci].strip(), row[di].strip()
        if not well_formed(code):
            raise DescriptorFileError(f"{p}:{lineno}: {code!r} is not a CPT/HCPCS code")
        if not desc:
            raise DescriptorFileError(f"{p}:{lineno}: empty descriptor for {code}")
        if code in out and out[code] != desc:
            raise DescriptorFileError(f"{p}:{lineno}: {code} listed twice with different text")
        out[code] = desc
    if not out:
        raise DescriptorFileError(f"{p}: no descriptor rows")
    return out
