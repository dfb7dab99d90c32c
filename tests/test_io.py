"""Safe note reading: every encoding a practice's export produces, and every bad file
becoming a typed NoteReadError (CONTRACT.md's NoteError types) instead of a crash."""

from __future__ import annotations

import codecs
import os
import sys

import pytest

from extractor.errors import NoteReadError
from extractor.io import MAX_NOTE_BYTES, atomic_write_text, decode_note, read_note

NOTE = "Shave biopsy of the left forearm — café-au-lait macule, “dermoscopy” ½ cm.\n"
ASCII_NOTE = "Shave biopsy of the left forearm, actinic keratosis.\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(NOTE.encode("utf-8"), NOTE, id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + NOTE.encode("utf-8"), NOTE, id="utf-8-bom"),
        pytest.param(NOTE.encode("utf-16"), NOTE, id="utf-16-bom-native"),
        pytest.param(codecs.BOM_UTF16_LE + NOTE.encode("utf-16-le"), NOTE, id="utf-16-le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + NOTE.encode("utf-16-be"), NOTE, id="utf-16-be-bom"),
        pytest.param(NOTE.encode("utf-32"), NOTE, id="utf-32-bom"),
        pytest.param(NOTE.encode("cp1252"), NOTE, id="windows-1252"),
        pytest.param(
            "Naevus of the café region, 5 mm ± 1.\n".encode("latin-1"),
            "Naevus of the café region, 5 mm ± 1.\n",
            id="latin-1",
        ),
        pytest.param(ASCII_NOTE.encode("ascii"), ASCII_NOTE, id="ascii"),
    ],
)
def test_decodes_every_supported_encoding(data: bytes, expected: str) -> None:
    text = decode_note(data)
    assert text == expected
    assert not text.startswith("\ufeff"), "a BOM must not shift every offset by one"


def test_crlf_is_kept_as_read_so_offsets_match_the_file() -> None:
    assert decode_note(b"line one\r\nline two\r\n") == "line one\r\nline two\r\n"


@pytest.mark.parametrize(
    ("data", "etype"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"  \n\t\r\n ", "empty", id="whitespace-only"),
        pytest.param(codecs.BOM_UTF8, "empty", id="bom-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "not_text", id="png"),
        pytest.param(b"%PDF-1.7\n\x00\x01\x02\x03" * 10, "not_text", id="pdf-ish"),
        pytest.param(bytes(range(256)) * 4, "not_text", id="all-bytes"),
        pytest.param(codecs.BOM_UTF16_LE + b"\x00\xd8", "decode_error", id="utf-16-lone-surrogate"),
        pytest.param(codecs.BOM_UTF8 + b"abc\xff\xfe", "decode_error", id="utf-8-bom-bad-bytes"),
        pytest.param(b"x" * (MAX_NOTE_BYTES + 1), "too_large", id="huge"),
    ],
)
def test_bad_bytes_get_their_contract_type(data: bytes, etype: str) -> None:
    with pytest.raises(NoteReadError) as info:
        decode_note(data, "n.txt")
    assert info.value.type == etype
    assert info.value.message.startswith("n.txt")


def test_exactly_max_bytes_is_accepted() -> None:
    assert len(decode_note(b"a" * MAX_NOTE_BYTES)) == MAX_NOTE_BYTES


def test_read_note_files(tmp_path) -> None:
    p = tmp_path / "n.txt"
    p.write_bytes(codecs.BOM_UTF16_LE + NOTE.encode("utf-16-le"))
    assert read_note(p) == NOTE


def test_read_note_huge_file_is_refused_before_reading(tmp_path) -> None:
    p = tmp_path / "big.txt"
    with p.open("wb") as fh:  # sparse: the size check must come from stat, not a read
        fh.truncate(MAX_NOTE_BYTES + 10)
    with pytest.raises(NoteReadError) as info:
        read_note(p)
    assert info.value.type == "too_large"


def test_read_note_directory(tmp_path) -> None:
    with pytest.raises(NoteReadError) as info:
        read_note(tmp_path)
    assert info.value.type == "io_error"


def test_read_note_missing(tmp_path) -> None:
    with pytest.raises(NoteReadError) as info:
        read_note(tmp_path / "nope.txt")
    assert info.value.type in ("not_found", "io_error")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads unreadable files"
)
def test_read_note_unreadable(tmp_path) -> None:  # pragma: no cover - CI runs as root
    p = tmp_path / "locked.txt"
    p.write_text(NOTE)
    p.chmod(0)
    with pytest.raises(NoteReadError) as info:
        read_note(p)
    assert info.value.type == "io_error"


def test_messages_never_quote_the_note() -> None:
    secret = "Jane Q Patient 1962 melanoma"
    for data in (secret.encode() + b"\x00" * 20, codecs.BOM_UTF8 + secret.encode() + b"\xff"):
        with pytest.raises(NoteReadError) as info:
            decode_note(data, "n.txt")
        assert "Jane" not in info.value.message


def test_atomic_write_text_replaces_whole_file(tmp_path) -> None:
    p = tmp_path / "sub" / "out.csv"
    atomic_write_text(p, "a,b\n")
    atomic_write_text(p, "c,d\n")
    assert p.read_text() == "c,d\n"
    assert [x.name for x in p.parent.iterdir()] == ["out.csv"], "no temp file left behind"
