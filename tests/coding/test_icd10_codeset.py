"""The code-set snapshot the engine reads agrees with the official code set package."""

from __future__ import annotations

import json

import simple_icd_10_cm as icd

from extractor.coding import icd10_codeset as codeset
from extractor.patterns import patterns_dir


def snapshot_rows():
    path = patterns_dir() / codeset.SNAPSHOT
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_every_snapshot_code_is_a_billable_leaf_with_its_official_description():
    rows = snapshot_rows()
    assert len(rows) > 300
    for row in rows:
        assert icd.is_valid_item(row["code"]) and icd.is_leaf(row["code"]), row["code"]
        assert icd.get_description(row["code"]) == row["description"], row["code"]


def test_snapshot_covers_every_code_the_tables_can_emit():
    assert codeset.build_rows(codeset.table_codes()) == snapshot_rows()


def test_non_billable_codes_are_refused():
    assert not codeset.is_billable("C44.61")  # a category with children
    assert not codeset.is_billable("C44611")  # no dot
    assert codeset.is_billable("C44.611")
