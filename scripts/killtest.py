"""Crash safety: SIGKILL `python -m kb build` at random moments, over and over, while searches keep running.

After every kill the index must still load and answer from the last complete build, and the next build must
complete. Meanwhile searcher threads and processes query the index nonstop and check every hit against its
document: a half-written index would show up as an error or a passage that is not where it claims to be.

    .venv/bin/python scripts/killtest.py --kills 50 [--docs 150] [--seed 1] [--workdir DIR]

Prints one JSON object with the counts; exits non-zero if anything went wrong.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["第二条 适用范围", "海关 便利", "cross-border returns", "village pick-up points", "电子商务 平台 责任"]


def write_corpus(corpus: Path, n_docs: int, round_no: int) -> None:
    """A corpus that changes a little each round, so every build has real work to do."""
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        path = corpus / f"doc{i:04d}.txt"
        if i % 7 == round_no % 7 or not path.exists():
            articles = "\n".join(
                f"第{n}条 第{i}号规定第{n}条：跨境电商企业、平台和海关在第{round_no}轮修订中的义务，"
                f"包括便利通关、村级取货点和退货安排。"
                for n in range(1, 12)
            )
            path.write_text(f"规定{i}\n\n{articles}\n", encoding="utf-8")
    (corpus / "notes.txt").write_text(
        f"Round {round_no}: cross-border returns and village pick-up points.\n" * 20, encoding="utf-8"
    )


def check_index(index: Path) -> int:
    """Open the index fresh and run every query; return the number of hits checked."""
    from kb.search.searcher import Searcher

    searcher = Searcher(index)
    return sum(_check_hits(searcher, q) for q in QUERIES)


def _check_hits(searcher: object, query: str) -> int:
    hits = searcher.search(query, 5)  # type: ignore[attr-defined]
    for hit in hits:
        doc, _ = searcher.source(hit.chunk.doc_id)  # type: ignore[attr-defined]
        if doc.text[hit.chunk.char_start : hit.chunk.char_end] != hit.chunk.text:
            raise AssertionError(f"{hit.chunk.chunk_id}: passage text does not match its document")
    return len(hits)


def _search_loop(index: str, stop: object, counts: object, errors: object) -> None:
    """Query nonstop, reloading whenever a build publishes (used by threads and by processes)."""
    from kb.search.searcher import Searcher

    searcher = Searcher(Path(index))
    n = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        try:
            searcher.refresh()
            _check_hits(searcher, QUERIES[n % len(QUERIES)])
            with counts.get_lock():  # type: ignore[attr-defined]
                counts.value += 1  # type: ignore[attr-defined]
        except Exception as exc:  # every failure is a finding: record it, keep going
            with errors.get_lock():  # type: ignore[attr-defined]
                errors.value += 1  # type: ignore[attr-defined]
            print(f"search error: {type(exc).__name__}: {exc}", file=sys.stderr)
        n += 1


def run_build(corpus: Path, index: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kb",
            "build",
            "--corpus",
            str(corpus),
            "--index",
            str(index),
            "--model",
            "hashing",
            "--xling",
            "none",
            "--no-progress",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--docs", type=int, default=150)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="searcher threads during the rebuilds")
    p.add_argument("--processes", type=int, default=1, help="searcher processes during the rebuilds")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kb-killtest-"))
    corpus, index = work / "corpus", work / "index"
    write_corpus(corpus, args.docs, 0)
    first = run_build(corpus, index)
    if first.wait() != 0:
        print(first.stderr.read().decode() if first.stderr else "", file=sys.stderr)
        return 1
    # A first timed build tells how long a build runs, so kills land across all of its stages.
    t0 = time.time()
    write_corpus(corpus, args.docs, 1)
    if run_build(corpus, index).wait() != 0:
        return 1
    build_s = time.time() - t0

    ctx = mp.get_context("spawn")
    stop, counts, errors = ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
    workers: list[threading.Thread | mp.process.BaseProcess] = [
        threading.Thread(target=_search_loop, args=(str(index), stop, counts, errors)) for _ in range(args.threads)
    ]
    workers += [
        ctx.Process(target=_search_loop, args=(str(index), stop, counts, errors)) for _ in range(args.processes)
    ]
    for w in workers:
        w.start()
    kills = survived = completed = 0
    problems: list[str] = []
    for round_no in range(2, args.kills + 2):
        write_corpus(corpus, args.docs, round_no)
        proc = run_build(corpus, index)
        time.sleep(rng.uniform(0.05, build_s * 1.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        elif proc.returncode == 0:
            completed += 1
        proc.wait()
        try:
            check_index(index)
            survived += 1
        except Exception as exc:
            problems.append(f"after round {round_no}: {type(exc).__name__}: {exc}")
    final = run_build(corpus, index)
    final_ok = final.wait() == 0
    if not final_ok:
        problems.append("final build failed: " + (final.stderr.read().decode()[-500:] if final.stderr else ""))
    stop.set()
    for w in workers:
        w.join(timeout=60)
    leftovers = sorted(p.name for p in index.iterdir() if ".tmp" in p.name)
    report = {
        "rounds": args.kills,
        "kills": kills,
        "builds_completed_before_kill": completed,
        "index_usable_after_round": survived,
        "final_build_ok": final_ok,
        "searches_served_during_rebuilds": counts.value,
        "search_errors": errors.value,
        "temporary_folders_left": leftovers,
        "build_seconds": round(build_s, 2),
        "problems": problems,
    }
    print(json.dumps(report, ensure_ascii=False))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    ok = final_ok and not problems and errors.value == 0 and survived == args.kills
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
