"""The same STARD questions through the FAISS + bm25s index and the Milvus index of one corpus: how far apart?

    python scripts/compare_backends.py --index .kb-cache/bench/stard-faiss/index \\
        --uri .kb-cache/bench/stard-milvus.db [--limit 300] [--json]

Per channel (BM25: bm25s over kb.text.lexical tokens vs Milvus's BM25 function over its jieba analyzer; e5: FAISS
float16 vs Milvus float32 vectors) the mean overlap of the two top-10 and top-100 lists, and for the fused
results the share of questions whose first passage is the same and the mean overlap of the top 10. Each
question is then searched (k=100, as `kb eval`) by one backend right after the other, so on a shared machine
both latency columns see the same load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kb.bench.evaluate import _latency, _stard_rows
from kb.errors import KbError
from kb.milvus.search import MilvusSearcher
from kb.milvus.store import target
from kb.search.searcher import Searcher


def overlap(a: list[str], b: list[str], k: int) -> float:
    """|top-k of a ∩ top-k of b| / k (both lists cut at k; an empty pair counts as identical)."""
    a, b = a[:k], b[:k]
    return len(set(a) & set(b)) / max(len(a), len(b)) if (a or b) else 1.0


def compare(faiss: Searcher, milvus: MilvusSearcher, questions: list[str]) -> dict[str, float]:
    """Mean agreement figures over the questions, and both backends' latency percentiles."""
    sums: dict[str, float] = {}
    times: dict[str, list[float]] = {"faiss": [], "milvus": []}

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    for q in questions:
        rows = faiss.rankings(q, 100)
        ours = {ch: [c.chunk_id for c in faiss.index.store.chunks(r)] for ch, r in rows.items()}
        theirs = milvus.rankings(q, 100)
        for ch in ("bm25", "dense"):
            for k in (10, 100):
                add(f"{ch} overlap@{k}", overlap(ours.get(ch, []), theirs.get(ch, []), k))
        hits = {}
        for name, searcher in (("faiss", faiss), ("milvus", milvus)):
            start = time.perf_counter()
            hits[name] = [h.chunk.chunk_id for h in searcher.search(q, 100, xrefs=False)]
            times[name].append(time.perf_counter() - start)
        add("fused same top-1", float(hits["faiss"][:1] == hits["milvus"][:1]))
        add("fused overlap@10", overlap(hits["faiss"], hits["milvus"], 10))
        add("fused overlap@100", overlap(hits["faiss"], hits["milvus"], 100))
    out = {k: round(v / max(len(questions), 1), 4) for k, v in sums.items()}
    for name, values in times.items():
        out.update({f"{name} {k}": v for k, v in _latency(values).items()})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, required=True, help="FAISS index folder of the corpus")
    p.add_argument("--uri", required=True, help="Milvus index of the same corpus")
    p.add_argument("--limit", type=int, default=None, help="first N STARD train questions")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        questions = [row["query"] for row in _stard_rows(args.limit)]
        with MilvusSearcher(target(args.uri)) as milvus:
            faiss = Searcher(args.index)
            for searcher in (faiss, milvus):  # load the model and warm the caches: not a question's latency
                searcher.search(questions[0], 100, xrefs=False)
            result = {"questions": len(questions), **compare(faiss, milvus, questions)}
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
    sys.exit(main())
