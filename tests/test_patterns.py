"""Rule files are validated at load time and errors name the file and line."""

from __future__ import annotations

import json

import pytest

from extractor.errors import PatternFileError
from extractor.patterns import load_family, patterns_dir
from extractor.schemas import ContextRuleRow, SectionRuleRow, TargetRule


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_shipped_rule_files_all_load():
    assert len(load_family("entities", TargetRule)) > 1000
    assert load_family("context.jsonl", ContextRuleRow)
    assert load_family("sections.jsonl", SectionRuleRow)


def test_bad_json_names_file_and_line(tmp_path):
    good = json.dumps({"id": "a", "literal": "x", "category": "SITE"})
    write(tmp_path, "r.jsonl", [good, "{not json"])
    with pytest.raises(PatternFileError) as exc:
        load_family("r.jsonl", TargetRule, base=tmp_path)
    assert "r.jsonl:2" in str(exc.value)


def test_unknown_label_is_rejected(tmp_path):
    write(tmp_path, "r.jsonl", [json.dumps({"id": "a", "literal": "x", "category": "NOPE"})])
    with pytest.raises(PatternFileError) as exc:
        load_family("r.jsonl", TargetRule, base=tmp_path)
    assert "r.jsonl:1" in str(exc.value) and "category" in str(exc.value)


def test_bad_token_pattern_and_regex_are_rejected(tmp_path):
    write(
        tmp_path,
        "t.jsonl",
        [json.dumps({"id": "a", "literal": "x", "category": "SITE", "pattern": [{"LOWRE": "x"}]})],
    )
    with pytest.raises(PatternFileError, match="t.jsonl:1"):
        load_family("t.jsonl", TargetRule, base=tmp_path)
    write(
        tmp_path,
        "x.jsonl",
        [json.dumps({"id": "a", "literal": "x", "category": "SITE", "pattern": "(unclosed"})],
    )
    with pytest.raises(PatternFileError, match="bad regex"):
        load_family("x.jsonl", TargetRule, base=tmp_path)


def test_duplicate_ids_across_files(tmp_path):
    d = tmp_path / "fam"
    d.mkdir()
    row = json.dumps({"id": "dup", "literal": "x", "category": "SITE"})
    write(d, "a.jsonl", [row])
    write(d, "b.jsonl", [row])
    with pytest.raises(PatternFileError, match="duplicate id"):
        load_family("fam", TargetRule, base=tmp_path)


def test_extra_fields_are_typos(tmp_path):
    write(
        tmp_path,
        "r.jsonl",
        [json.dumps({"id": "a", "literal": "x", "category": "SITE", "atrs": {}})],
    )
    with pytest.raises(PatternFileError, match="atrs"):
        load_family("r.jsonl", TargetRule, base=tmp_path)


def test_patterns_folder_is_found():
    assert (patterns_dir() / "sections.jsonl").exists()
