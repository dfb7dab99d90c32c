"""``dermcode review``: terminal summary, CSV, self-contained HTML, filters, and the HTML
page exercised in a real headless Chromium (skipped when Chromium is not installed)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from extractor.cli import app
from extractor.review import read_batch, select
from extractor.schemas import (
    CptLine,
    Entity,
    Evidence,
    Flag,
    Icd10Line,
    NoteError,
    NoteResult,
)

runner = CliRunner()

NOTES = {
    "a/one.txt": "Biopsy of crusted nodule R ear, r/o SCC; specimen to lab.\n",
    "two.txt": "Cryotherapy to actinic keratoses x3.\nDermoscopy performed, =benign.\n",
    "three.txt": "Shave removal of 0.7 cm irritated SK L neck.\n",
}


def _ev(text: str, word: str) -> Evidence:
    i = text.index(word)
    return Evidence(start=i, end=i + len(word), text=word)


def _flag(fid: str, sev: str, ev: Evidence) -> Flag:
    return Flag(
        id=fid, severity=sev, message=f"{fid} message", query=f"Query for {fid}?", evidence=[ev]
    )


def _results() -> list[NoteResult]:
    one, two = NOTES["a/one.txt"], NOTES["two.txt"]
    return [
        NoteResult(
            note_id="a/one.txt",
            cpt=[CptLine(code="11102", units=1, icd10=["D49.2"], confidence=0.8)],
            icd10=[
                Icd10Line(
                    code="D49.2", description="Neoplasm of unspecified behavior", confidence=0.8
                )
            ],
            flags=[_flag("BIOPSY_TECHNIQUE_MISSING", "warning", _ev(one, "Biopsy"))],
            entities=[
                Entity(
                    label="SITE",
                    start=one.index("ear"),
                    end=one.index("ear") + 3,
                    text="ear",
                    attrs={"site": "ear"},
                )
            ],
        ),
        NoteResult(
            note_id="two.txt",
            flags=[
                _flag("SITE_MISSING", "warning", _ev(two, "Cryotherapy")),
                _flag("DERMOSCOPY_WITHOUT_FINDINGS", "info", _ev(two, "Dermoscopy performed")),
            ],
        ),
        NoteResult(note_id="three.txt"),
    ]


def _batch(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "notes"
    for rel, text in NOTES.items():
        (notes / rel).parent.mkdir(parents=True, exist_ok=True)
        (notes / rel).write_text(text, encoding="utf-8")
    lines = [r.model_dump_json() for r in _results()]
    lines.append(
        NoteError.model_validate(
            {"note_id": "bad.bin", "error": {"type": "not_text", "message": "binary"}}
        ).model_dump_json()
    )
    lines.append('{"truncated": ')
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, notes


def test_read_batch_counts_errors_and_bad_lines(tmp_path: Path) -> None:
    out, _ = _batch(tmp_path)
    b = read_batch(out)
    assert len(b.results) == 3 and len(b.errors) == 1 and b.malformed == [5]


def test_select_worst_first_and_filters() -> None:
    res = _results()
    assert [n.note_id for n in select(res)] == ["two.txt", "a/one.txt"]
    assert [n.note_id for n in select(res, min_flags=2)] == ["two.txt"]
    assert [n.note_id for n in select(res, ["BIOPSY_TECHNIQUE_MISSING"])] == ["a/one.txt"]
    only_warn = select(res, severity="warning")
    assert all(f.severity == "warning" for n in only_warn for f in n.flags)


def test_terminal_summary(tmp_path: Path) -> None:
    out, _ = _batch(tmp_path)
    r = runner.invoke(app, ["review", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 notes coded" in r.output and "2 flagged" in r.output
    assert "1 failed notes skipped" in r.output
    assert "SITE_MISSING" in r.output and "ear" in r.output


def test_missing_file_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["review", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 2


def test_csv_one_row_per_flag(tmp_path: Path) -> None:
    out, _ = _batch(tmp_path)
    dest = tmp_path / "r.csv"
    r = runner.invoke(app, ["review", str(out), "--csv", str(dest)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(dest.read_text(encoding="utf-8"))))
    assert len(rows) == 3
    by_flag = {row["flag"]: row for row in rows}
    bx = by_flag["BIOPSY_TECHNIQUE_MISSING"]
    assert bx["note_id"] == "a/one.txt" and bx["severity"] == "warning"
    assert bx["evidence"] == "Biopsy" and bx["site"] == "ear"
    assert bx["suggested_query"] == "Query for BIOPSY_TECHNIQUE_MISSING?"
    assert not list(tmp_path.glob(".r.csv.*.tmp"))


def test_csv_filters(tmp_path: Path) -> None:
    out, _ = _batch(tmp_path)
    dest = tmp_path / "r.csv"
    runner.invoke(app, ["review", str(out), "--csv", str(dest), "--flag", "SITE_MISSING"])
    rows = list(csv.DictReader(io.StringIO(dest.read_text(encoding="utf-8"))))
    assert [r["flag"] for r in rows] == ["SITE_MISSING"]
    runner.invoke(
        app, ["review", str(out), "--csv", str(dest), "--severity", "warning", "--min-flags", "1"]
    )
    rows = list(csv.DictReader(io.StringIO(dest.read_text(encoding="utf-8"))))
    assert {r["flag"] for r in rows} == {"SITE_MISSING", "BIOPSY_TECHNIQUE_MISSING"}


def _html(tmp_path: Path, with_notes: bool = True) -> Path:
    out, notes = _batch(tmp_path)
    dest = tmp_path / "r.html"
    args = ["review", str(out), "--html", str(dest)] + (
        ["--notes", str(notes)] if with_notes else []
    )
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return dest


def test_html_self_contained_with_highlights(tmp_path: Path) -> None:
    page = _html(tmp_path).read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert 'id="count-SITE_MISSING" data-count="1"' in page
    assert 'data-flags="DERMOSCOPY_WITHOUT_FINDINGS SITE_MISSING"' in page
    assert '<mark class="sev-warning" data-flag="BIOPSY_TECHNIQUE_MISSING"' in page
    assert "Query for SITE_MISSING?" in page and "11102" in page and "D49.2" in page
    assert "=benign" in page  # note text shown, escaped, never interpreted


def test_html_without_notes_shows_snippets(tmp_path: Path) -> None:
    page = _html(tmp_path, with_notes=False).read_text(encoding="utf-8")
    assert "run with --notes DIR" in page and ">Biopsy</mark>" in page


def test_html_notes_cannot_escape_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("Biopsy SECRET", encoding="utf-8")
    res = NoteResult(
        note_id="../secret.txt",
        flags=[
            Flag(
                id="SITE_MISSING",
                severity="warning",
                message="m",
                evidence=[Evidence(start=0, end=6, text="Biopsy")],
            )
        ],
    )
    out = tmp_path / "o.jsonl"
    out.write_text(res.model_dump_json() + "\n", encoding="utf-8")
    (tmp_path / "notes").mkdir()
    dest = tmp_path / "r.html"
    r = runner.invoke(
        app, ["review", str(out), "--html", str(dest), "--notes", str(tmp_path / "notes")]
    )
    assert r.exit_code == 0
    assert "SECRET" not in dest.read_text(encoding="utf-8")


# ------------------------------------------------------------------ real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser():
    if not CHROMIUM.exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip("Chromium not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for f in CHROME_FLAGS:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_html_in_headless_chromium(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = _html(tmp_path)
    browser.get(page.as_uri())
    assert browser.title == "dermcode documentation review"
    assert browser.find_element(By.ID, "flagged-notes").text == "2"
    assert browser.find_element(By.ID, "error-notes").text == "1"
    counts = {
        el.get_attribute("id").removeprefix("count-"): int(el.text)
        for el in browser.find_elements(By.CSS_SELECTOR, "td.count")
    }
    assert counts == {
        "BIOPSY_TECHNIQUE_MISSING": 1,
        "SITE_MISSING": 1,
        "DERMOSCOPY_WITHOUT_FINDINGS": 1,
    }
    notes = browser.find_elements(By.CSS_SELECTOR, "section.note")
    assert len(notes) == 2 and all(n.is_displayed() for n in notes)
    marks = browser.find_elements(By.CSS_SELECTOR, "mark[data-flag]")
    assert {m.text for m in marks} >= {"Biopsy", "Cryotherapy", "Dermoscopy performed"}

    sel = Select(browser.find_element(By.ID, "flag-filter"))
    sel.select_by_value("BIOPSY_TECHNIQUE_MISSING")
    shown = [n.get_attribute("data-note-id") for n in notes if n.is_displayed()]
    assert shown == ["a/one.txt"]
    assert browser.find_element(By.ID, "shown-count").text == "1"

    sel.select_by_value("all")
    assert all(n.is_displayed() for n in notes)

    # clicking a row of the count table filters too
    browser.find_element(By.CSS_SELECTOR, 'tr.flagrow[data-flag="SITE_MISSING"]').click()
    shown = [n.get_attribute("data-note-id") for n in notes if n.is_displayed()]
    assert shown == ["two.txt"]
    assert browser.find_element(By.ID, "shown-count").text == "1"


def test_review_json_roundtrip_of_engine_output(tmp_path: Path) -> None:
    """A real engine result goes through review unchanged (shape contract)."""
    from extractor.engine import code_text

    text = NOTES["a/one.txt"]
    res = code_text(text, note_id="a/one.txt")
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps(json.loads(res.model_dump_json())) + "\n", encoding="utf-8")
    (tmp_path / "n" / "a").mkdir(parents=True)
    (tmp_path / "n" / "a" / "one.txt").write_text(text, encoding="utf-8")
    dest = tmp_path / "r.html"
    r = runner.invoke(
        app, ["review", str(out), "--html", str(dest), "--notes", str(tmp_path / "n")]
    )
    assert r.exit_code == 0, r.output
    assert 'data-flag="BIOPSY_TECHNIQUE_MISSING"' in dest.read_text(encoding="utf-8")


def test_cdi_notebook_runs_headless(tmp_path: Path) -> None:
    """notebooks/cdi_review.ipynb top to bottom, as CI runs it (batch from the env)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipykernel")
    out, _ = _batch(tmp_path)
    root = Path(__file__).resolve().parents[2]
    nb = nbformat.read(root / "notebooks" / "cdi_review.ipynb", as_version=4)
    import os

    old = os.environ.get("DERMCODE_BATCH")
    os.environ["DERMCODE_BATCH"] = str(out)
    try:
        nbclient.NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(root / "notebooks")}},
        ).execute()
    finally:
        if old is None:
            os.environ.pop("DERMCODE_BATCH", None)
        else:
            os.environ["DERMCODE_BATCH"] = old
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum(o["output_type"] == "display_data" for o in outputs) >= 2
    assert "3 notes coded, 2 flagged, 1 failed notes skipped" in outputs[0]["text"]
