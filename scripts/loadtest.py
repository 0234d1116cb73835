"""Load test: N concurrent users searching one shared index through the library, as the app's server does.

Each user is a thread with its own question order; all share one Searcher (the app shares one per process).
Reports, per concurrency level, throughput and p50 / p95 / p99 latency and the error count as a Markdown table.

    .venv/bin/python scripts/loadtest.py [--index index] [--users 1 5 10 20] [--per-user 20] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

from kb.search.searcher import Searcher

QUESTIONS = [
    "网购商品无理由退货期限",
    "格式条款规定收货人签收商品即视为认可质量，这个条款有效吗",
    "电子商务平台经营者的责任",
    "直播营销人员应当遵守哪些规定",
    "个人信息保护 平台",
    "跨境电子商务综合试验区",
    "农村电商 物流 县域",
    "what measures address live-stream talent",
    "seven-day no-reason return of goods bought online",
    "cross-border e-commerce pilot zones",
    "platform liability for counterfeit goods",
    "consumer personal information",
    "rural e-commerce logistics",
    "live-streaming censorship",
    "Xiaohongshu community norms on advertising",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_level(searcher: Searcher, users: int, per_user: int, mode: str, k: int, seed: int) -> dict[str, object]:
    """`users` threads each asking `per_user` questions at once; latencies of every question."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(users)

    def user(n: int) -> None:
        order = QUESTIONS[:]
        random.Random(seed + n).shuffle(order)
        start.wait()
        for i in range(per_user):
            t0 = time.perf_counter()
            try:
                hits = searcher.search(order[i % len(order)], k, mode=mode)
                if not hits:
                    raise RuntimeError(f"no hits for {order[i % len(order)]}")
            except Exception as exc:  # every failure counts; the run goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "users": users,
        "searches": len(latencies),
        "errors": len(errors),
        "wall_s": round(wall, 2),
        "throughput_qps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "first_errors": errors[:3],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, default=Path("index"))
    p.add_argument("--users", type=int, nargs="+", default=[1, 5, 10, 20])
    p.add_argument("--per-user", type=int, default=20)
    p.add_argument("--mode", default="hybrid", choices=("hybrid", "keyword", "semantic"))
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a Markdown table")
    args = p.parse_args(argv)
    searcher = Searcher(args.index)
    for q in QUESTIONS:  # warm: models loaded, caches filled, as on a server that has been up a while
        searcher.search(q, args.k, mode=args.mode)
    rows = [run_level(searcher, u, args.per_user, args.mode, args.k, args.seed) for u in args.users]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(
            f"| concurrent users | searches | errors | throughput (q/s) | p50 ms | p95 ms | p99 ms |  ({args.mode}, "
            f"k={args.k}, {os.cpu_count()} CPUs)"
        )
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['users']} | {r['searches']} | {r['errors']} | {r['throughput_qps']} | {r['p50_ms']} | "
                f"{r['p95_ms']} | {r['p99_ms']} |"
            )
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
