"""Latency of the quote check on a built index: exact, normalised and fuzzy quotes drawn from the index itself.

Quotes are 20-200 character slices of random passages: as they are (exact), in traditional characters with a
line break and half-width commas (normalised), with one character replaced (fuzzy), and with their characters
shuffled (scrambled: found nowhere, so the hybrid search lists the nearest passages). Times are per quote in
one process (the index opened once, as `kb quote --batch` runs); a cold `python -m kb quote` process is timed too.

    .venv/bin/python scripts/bench_quote.py --index .kb-cache/bench/quote-lawrefbook [--n 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kb.errors import KbError
from kb.index.generations import current_generation
from kb.index.quotes import write_quote_index
from kb.quote.check import QuoteChecker
from kb.text.fold import fold

_SWAP = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"


def quotes(checker: QuoteChecker, n: int, seed: int) -> dict[str, list[str]]:
    """n quotes of each kind from random passages of the index."""
    import opencc

    rng = random.Random(seed)
    to_traditional = opencc.OpenCC("s2t")
    store = checker.parts.store
    out: dict[str, list[str]] = {"exact": [], "normalized": [], "fuzzy": [], "scrambled": [], "source": []}
    while len(out["fuzzy"]) < n:
        chunk = store.chunks([rng.randrange(store.n_chunks)])[0]
        text = chunk.text
        if len(text) < 40:
            continue
        start = rng.randrange(0, len(text) - 30)
        quote = text[start : start + rng.randrange(20, 201)].strip()
        if len(fold(quote).text) < 15:
            continue
        mid = len(quote) // 2
        varied = to_traditional.convert(quote[:mid]) + "\n" + " ".join(quote[mid:].replace("，", ",").split())
        i = rng.randrange(len(quote) // 4, 3 * len(quote) // 4)
        swap = rng.choice([c for c in _SWAP if c != quote[i]])
        out["exact"].append(quote)
        out["normalized"].append(varied if fold(varied).text == fold(quote).text else quote)
        out["fuzzy"].append(quote[:i] + swap + quote[i + 1 :])
        out["scrambled"].append("".join(rng.sample(quote, len(quote))))
        out["source"].append(quote)
    return out


def run(index: Path, n: int, seed: int, cold: int) -> dict[str, object]:
    """Medians and verdict counts per kind, the cold-process time, and the quote index build time."""
    t0 = time.perf_counter()
    checker = QuoteChecker(index)
    opened = time.perf_counter() - t0
    fold("warm-up")  # builds the folding tables once
    result: dict[str, object] = {"index": str(index), "documents": checker.parts.quote.n, "open_s": round(opened, 3)}
    for q in quotes(checker, 5, seed + 2)["exact"]:  # untimed: brings the SQLite pages into the OS cache
        checker.check(q)
    drawn = quotes(checker, n, seed)
    t = time.perf_counter()
    checker.check(drawn["scrambled"].pop())  # the first quote found nowhere opens the hybrid search
    result["search_open_s"] = round(time.perf_counter() - t, 2)
    drawn["scrambled"].append(drawn["scrambled"][0])
    for kind in ("exact", "normalized", "fuzzy", "scrambled"):
        times, verdicts, placed = [], {}, 0
        for q, source in zip(drawn[kind], drawn["source"]):
            t = time.perf_counter()
            report = checker.check(q)
            times.append(time.perf_counter() - t)
            verdicts[report.verdict] = verdicts.get(report.verdict, 0) + 1
            # Found where the slice came from (or at an identical passage): the best match holds the source.
            placed += bool(report.matches) and fold(source).text in fold(report.matches[0].context).text
        result[kind] = {
            "median_ms": round(1000 * statistics.median(times), 1),
            "p90_ms": round(1000 * sorted(times)[int(0.9 * (len(times) - 1))], 1),
            "max_ms": round(1000 * max(times), 1),
            "verdicts": verdicts,
            "source_located": placed,
        }
    if cold:
        sample = quotes(checker, 1, seed + 1)["exact"][0]
        walls = []
        for _ in range(cold):
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kb", "quote", "--index", str(index), "--json", sample],
                check=True,
                capture_output=True,
            )
            walls.append(time.perf_counter() - t)
        result["cold_process_s"] = round(statistics.median(walls), 2)
    docs = [d for d in (checker.parts.store.document(doc_id) for doc_id in checker.parts.quote.rows) if d]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ids = [d.doc_id for d in docs]
        write_quote_index(Path(tmp) / "quote.sqlite", ids, docs, None)
        result["index_build_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        write_quote_index(Path(tmp) / "again.sqlite", ids, docs, current_generation(index) / "quote.sqlite")
        result["index_rebuild_unchanged_s"] = round(time.perf_counter() - t, 1)
    result["index_mb"] = round((current_generation(index) / "quote.sqlite").stat().st_size / 2**20, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the figures as text or JSON; exit 1 with one line on a KbError."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--n", type=int, default=60, help="quotes of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold", type=int, default=3, help="cold `python -m kb quote` runs to time (0: skip)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        result = run(args.index, args.n, args.seed, args.cold)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(result, ensure_ascii=False, indent=1)
        if args.json
        else "\n".join(f"{k}: {v}" for k, v in result.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
