"""The billable ICD-10-CM codes dermcode can emit, with their official descriptions.

`simple-icd-10-cm` ships the FY2026 code set; importing it parses the whole set (about
1.2 s and 185 MB per process). The engine only ever emits the few hundred codes of
its own tables, so it reads this snapshot of them instead, built from the package by
``python -m extractor.coding.icd10_codeset`` and checked against the package by
``tests/coding/test_icd10_codeset.py`` on every CI run: a code absent from the
package, or no longer a billable leaf, or with a changed description, fails there.
A table row whose code is not in the snapshot fails at load (CodeSetError).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from extractor.patterns import patterns_dir

SNAPSHOT = "coding/icd10_codeset.jsonl"
# Codes the engine emits without a table row (icd10.py constants).
FIXED_CODES = ("D49.2", "L98.9", "R21")
_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


@lru_cache(maxsize=1)
def _snapshot() -> dict[str, str]:
    path = patterns_dir() / SNAPSHOT
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["code"]] = row["description"]
    return out


def is_billable(code: str) -> bool:
    """A dotted code of the shipped code set that has no children (snapshot lookup)."""
    return bool(_CODE_SHAPE.match(code)) and code in _snapshot()


def description(code: str) -> str:
    """The code set's own description of a code in the snapshot."""
    return _snapshot()[code]


def build_rows(codes: list[str]) -> list[dict[str, str]]:
    """Snapshot rows for the billable codes among ``codes``, straight from the package."""
    import simple_icd_10_cm as icd

    rows = []
    for code in sorted(set(codes)):
        if _CODE_SHAPE.match(code) and icd.is_valid_item(code) and icd.is_leaf(code):
            rows.append({"code": code, "description": icd.get_description(code)})
    return rows


def table_codes(base: Path | None = None) -> list[str]:
    """Every code the ICD-10-CM tables can emit."""
    root = base or patterns_dir()
    codes = list(FIXED_CODES)
    for line in (root / "coding" / "icd10_map.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            codes.append(json.loads(line)["code"])
    for line in (root / "coding" / "diagnoses.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            codes += [c for c in (row.get("history_code"), row.get("family_history_code")) if c]
    return codes


def main() -> None:
    """Rewrite the snapshot from simple-icd-10-cm (run after editing the tables)."""
    rows = build_rows(table_codes())
    path = patterns_dir() / SNAPSHOT
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} billable codes written to {path}")


if __name__ == "__main__":
    main()
