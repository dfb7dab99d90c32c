"""Batch throughput, memory and cold start of dermcode against stock medspaCy, in one run.

Usage:
    .venv/bin/python benchmarks/bench_batch.py [--notes DIR] [--count 3000]
        [--stock-count 300] [--json benchmarks/bench_batch.json]

Builds a folder of ``--count`` notes (corpus/dev/*.txt and ../shared/realnotes/
mtsamples/*.txt repeated; or the files under ``--notes DIR``) and measures:

* stock ``medspacy.load()`` notes/s, single process, on ``--stock-count`` of the
  notes (its loguru DEBUG logging is silenced first with ``logger.remove()``, so it
  is timed at its best, not slowed by printing);
* ``dermcode batch`` notes/s as a whole process (start-up, pipeline build, reading,
  coding, writing) with 1 worker and with every core, words/s, and the peak RSS of
  one coding process (``resource.getrusage`` in each worker);
* the cold start of ``dermcode code NOTE --format json`` against a bare
  ``python -c "import spacy; spacy.blank('en')"``, median of ``--runs`` runs, and
  the slowest imports of the CLI (``python -X importtime``).

Prints a Markdown table and writes the numbers as JSON. Not a test: the numbers
depend on the machine; the targets are checked and reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_SOURCES = [ROOT / "corpus" / "dev", ROOT.parent / "shared" / "realnotes" / "mtsamples"]

STOCK_SNIPPET = r"""
import json, resource, sys, time
from pathlib import Path
from loguru import logger
logger.remove()  # stock medspaCy logs every PyRuSH sentence at DEBUG through loguru
import medspacy
paths = [Path(p) for p in sys.argv[1:]]
texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
t0 = time.perf_counter(); nlp = medspacy.load(); load = time.perf_counter() - t0
for _ in nlp.pipe(texts[:5]): pass
t0 = time.perf_counter()
for _ in nlp.pipe(texts, batch_size=64): pass
dt = time.perf_counter() - t0
print(json.dumps({"notes": len(texts), "seconds": dt, "load_s": load, "pipes": nlp.pipe_names,
                  "words": sum(len(t.split()) for t in texts),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_notes(sources: list[Path], count: int, dest: Path) -> list[Path]:
    """Copy the source notes round-robin into ``dest`` until there are ``count``."""
    originals = [p for s in sources if s.is_dir() for p in sorted(s.rglob("*.txt"))]
    if not originals:
        sys.exit("bench_batch: no .txt notes found in " + ", ".join(map(str, sources)))
    made: list[Path] = []
    for i in range(count):
        src = originals[i % len(originals)]
        target = dest / f"r{i // len(originals):03d}" / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        made.append(target)
    return made


def run_batch(notes: Path, workers: int, tmp: Path) -> dict:
    out, summary = tmp / f"out{workers}.jsonl", tmp / f"summary{workers}.json"
    cmd = [str(BIN / "dermcode"), "batch", str(notes), "--out", str(out), "--workers", str(workers)]
    cmd += ["--summary-json", str(summary), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    s = json.loads(summary.read_text())
    return {"workers": workers, "wall_s": wall, "summary": s}


def median_time(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def slowest_imports(note: Path, top: int = 8) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time when ``dermcode code`` runs."""
    code = (
        "import sys; from extractor.cli import app; "
        f"sys.argv=['dermcode','code',{str(note)!r},'--format','json']; app()"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    best: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = (x.strip() for x in line[len("import time:") :].split("|"))
        if not cum.isdigit():
            continue
        # Outermost import of each top-level package (no leading spaces = top level).
        raw_name = line.split("|")[2]
        depth = (len(raw_name) - len(raw_name.lstrip(" "))) // 2
        if depth <= 1:
            key = name.split(".")[0]
            best[key] = max(best.get(key, 0.0), int(cum) / 1e6)
    return sorted(best.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=Path, help="use these notes instead of building a set")
    ap.add_argument("--count", type=int, default=3000, help="notes to build (default 3000)")
    ap.add_argument("--stock-count", type=int, default=300, help="notes timed through medspaCy")
    ap.add_argument("--runs", type=int, default=5, help="cold-start runs (median)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "bench_batch.json")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load_start = list(os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="dermcode-bench-") as tmpname:
        tmp = Path(tmpname)
        if args.notes:
            notes_dir = args.notes
            paths = sorted(p for p in notes_dir.rglob("*.txt") if p.is_file())
        else:
            notes_dir = tmp / "notes"
            paths = build_notes(DEFAULT_SOURCES, args.count, notes_dir)
        words = sum(len(p.read_text(encoding="utf-8", errors="replace").split()) for p in paths)
        print(f"bench_batch: {len(paths)} notes, {words} words, {cores} cores", file=sys.stderr)

        stock_paths = paths[: args.stock_count]
        print("bench_batch: stock medspacy.load() ...", file=sys.stderr)
        stock = json.loads(
            subprocess.run(
                [sys.executable, "-c", STOCK_SNIPPET, *map(str, stock_paths)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        runs = []
        for w in sorted({1, cores}):
            print(f"bench_batch: dermcode batch --workers {w} ...", file=sys.stderr)
            runs.append(run_batch(notes_dir, w, tmp))

        print("bench_batch: cold starts ...", file=sys.stderr)
        note = ROOT / "examples" / "visit_note.txt"
        if not note.exists():
            note = paths[0]
        bare = median_time([sys.executable, "-c", "import spacy; spacy.blank('en')"], args.runs)
        cold = median_time(
            [str(BIN / "dermcode"), "code", str(note), "--format", "json"], args.runs
        )
        imports = slowest_imports(note)

    stock_nps = stock["notes"] / stock["seconds"]
    one = next(r for r in runs if r["workers"] == 1)
    allc = runs[-1]
    rows = []
    for r in runs:
        nps = len(paths) / r["wall_s"]
        rows.append(
            {
                "what": f"dermcode batch, {r['workers']} worker(s), whole process",
                "notes_per_s": nps,
                "words_per_s": words / r["wall_s"],
                "peak_rss_mb_per_worker": r["summary"].get("peak_worker_rss_mb"),
                "vs_stock": nps / stock_nps,
                "errors": r["summary"]["errors"],
            }
        )
    result = {
        "machine": {
            "cores": cores,
            "python": platform.python_version(),
            "platform": sys.platform,
            # Other work on the machine skews every figure: reported, not hidden.
            "load_average_at_start": load_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "notes": len(paths),
        "words": words,
        "stock": {
            "notes_per_s": stock_nps,
            "words_per_s": stock["words"] / stock["seconds"],
            "peak_rss_mb": stock["rss_mb"],
            "load_s": stock["load_s"],
            "pipes": stock["pipes"],
            "notes_timed": stock["notes"],
        },
        "batch": rows,
        "cold_start": {"dermcode_code_s": cold, "bare_spacy_s": bare, "ratio": cold / bare},
        "slowest_imports_s": imports,
    }
    speedup_cores = (len(paths) / allc["wall_s"]) / (len(paths) / one["wall_s"])
    best = max(r["notes_per_s"] for r in rows)
    peak = max((r["peak_rss_mb_per_worker"] or 0) for r in rows)
    result["targets"] = {
        "batch >= 10x stock notes/s": [best / stock_nps >= 10, f"{best / stock_nps:.1f}x"],
        f"{cores} workers >= 1.7x one": [speedup_cores >= 1.7, f"{speedup_cores:.2f}x"],
        "peak RSS < 400 MB per worker": [peak < 400, f"{peak:.0f} MB"],
        "dermcode code cold start <= 2x bare spaCy": [
            cold <= 2 * bare,
            f"{cold:.2f} s vs {bare:.2f} s ({cold / bare:.1f}x)",
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")

    print(f"### dermcode batch benchmark ({len(paths)} notes, {words} words, {cores} cores)\n")
    print(
        f"Load average at start / end: {load_start[0]:.1f} / {os.getloadavg()[0]:.1f} "
        f"(above ~0.5 other work shares the cores and skews the figures).\n"
    )
    print("| pipeline | notes/s | words/s | peak RSS MB / worker | vs stock |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| stock `medspacy.load()` ({', '.join(stock['pipes'])}; loguru silenced), "
        f"{stock['notes']} notes, in-process | {stock_nps:.1f} | "
        f"{result['stock']['words_per_s']:.0f} | {stock['rss_mb']:.0f} | 1.0x |"
    )
    for r in rows:
        print(
            f"| {r['what']} | {r['notes_per_s']:.1f} | {r['words_per_s']:.0f} | "
            f"{r['peak_rss_mb_per_worker'] or 0:.0f} | {r['vs_stock']:.1f}x |"
        )
    print(
        f"\nCold start (median of {args.runs}): `dermcode code NOTE --format json` "
        f"{cold:.2f} s; bare `import spacy; spacy.blank('en')` {bare:.2f} s ({cold / bare:.1f}x)."
    )
    print(
        "\nSlowest imports of `dermcode code` (cumulative s): "
        + ", ".join(f"{name} {sec:.2f}" for name, sec in imports)
    )
    print("\n| target | met | measured |\n| --- | --- | --- |")
    for name, (met, measured) in result["targets"].items():
        print(f"| {name} | {'yes' if met else 'NO'} | {measured} |")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
