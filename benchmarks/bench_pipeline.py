"""Extraction pipeline speed against stock ``medspacy.load()`` on the same notes, in one run.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--repeat N] [DIR ...]

Defaults to the project corpus (corpus/dev, corpus/test) and ../shared/realnotes if
present. Reports notes/s, words/s and peak RSS for each pipeline (single process,
one core). Stock medspaCy's loguru DEBUG logging is silenced first so it is timed
at its best. Not a test: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_notes(dirs: list[Path]) -> list[str]:
    texts = []
    for d in dirs:
        for p in sorted(d.rglob("*.txt")):
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
    return texts


def timed(nlp, texts: list[str]) -> float:
    t0 = time.perf_counter()
    for _ in nlp.pipe(texts, batch_size=64):
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dirs = args.dirs or [
        d
        for d in (
            ROOT / "corpus" / "dev",
            ROOT / "corpus" / "test",
            ROOT.parent / "shared" / "realnotes",
        )
        if d.is_dir()
    ]
    texts = load_notes(dirs) * args.repeat
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts)} notes, {words} words, from {', '.join(str(d) for d in dirs)}")

    from extractor.pipeline import build_pipeline

    t0 = time.perf_counter()
    ours = build_pipeline()
    load_ours = time.perf_counter() - t0
    timed(ours, texts[:20])  # warm-up
    t_ours = timed(ours, texts)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    from loguru import logger

    logger.remove()
    import medspacy

    t0 = time.perf_counter()
    stock = medspacy.load()
    load_stock = time.perf_counter() - t0
    timed(stock, texts[:5])
    t_stock = timed(stock, texts)
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print()
    print("| pipeline | load s | notes/s | words/s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- |")
    ours_row = (load_ours, len(texts) / t_ours, words / t_ours, rss_ours)
    stock_row = (load_stock, len(texts) / t_stock, words / t_stock, rss_all)
    print("| dermcode extraction | {:.2f} | {:.0f} | {:.0f} | {:.0f} |".format(*ours_row))
    print(
        f"| stock medspacy.load() ({', '.join(stock.pipe_names)}) "
        "| {:.2f} | {:.1f} | {:.0f} | {:.0f} (both loaded) |".format(*stock_row)
    )
    print(f"\nspeed-up: {t_stock / t_ours:.1f}x", file=sys.stdout)


if __name__ == "__main__":
    main()
