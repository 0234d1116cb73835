"""Benchmarks: BEIR SciFact (nDCG@10) and STARD on LawRefBook (Recall@k, MRR@10), through the real pipeline."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kb import config
from kb.backends import build_index, open_searcher
from kb.errors import CorpusError
from kb.search.contract import Backend
from kb.search.fusion import depth

log = logging.getLogger(__name__)

SHARED = config.SHARED
BENCH_DIR = config.BENCH_DIR
BENCH_CORPORA = config.BENCH_CORPORA


def _benchmark_dir(name: str) -> Path:
    path = SHARED / "benchmarks" / name
    if not path.is_dir():
        raise CorpusError(f"benchmark data {path} not found: it ships in ../shared beside the checkout")
    return path


def scifact_corpus(out: Path) -> Path:
    """Write SciFact abstracts as one text file each (title line, blank line, abstract), once."""
    src = _benchmark_dir("scifact") / "corpus.jsonl"
    marker = out / ".complete"
    if marker.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            (out / f"{row['_id']}.txt").write_text(f"{row['title']}\n\n{row['text']}\n", encoding="utf-8")
    marker.write_text("ok")
    return out


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    """nDCG@10 with graded relevance, as BEIR computes it."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@dataclass(frozen=True)
class Target:
    """Which index a benchmark builds and searches (kb.backends): the FAISS folder, or Milvus at a URI."""

    name: str = "faiss"
    uri: str | None = None  # milvus: default a milvus-lite file under BENCH_DIR
    collection: str | None = None
    fusion: str | None = None
    tuned: bool | None = None  # the question tower (kb.embed.tower); None: config.TUNED
    rerank: bool | None = None  # the trained reranker (kb.search.rerank); None: config.RERANK


def _index_for(name: str, corpus: Path, model: str, index: Path | None, backend: Target = Target()) -> Backend:
    """Build (or update) the benchmark's index and open it."""
    from kb.embed.models import build_embedders

    index = index or BENCH_DIR / f"{name}-{model.replace('/', '_')}" / "index"
    uri = backend.uri or str(BENCH_DIR / f"{name}-{model.replace('/', '_')}.db")
    embedders = build_embedders(model, "none")
    milvus = backend.name == "milvus"
    report = build_index(
        backend.name,
        corpus,
        embedders,
        index=None if milvus else index,
        uri=uri if milvus else None,
        collection=backend.collection,
        progress=_log_progress,
    )
    log.info(
        "benchmark index %s: %d passages (%d embedded) in %.0fs",
        uri if milvus else index,
        report.chunks,
        report.embedded,
        report.seconds,
    )
    return open_searcher(
        backend.name,
        None if milvus else index,
        uri if milvus else None,
        backend.collection,
        fusion=backend.fusion,
        tuned=backend.tuned,
        rerank=backend.rerank,
    )


def _latency(times: list[float]) -> dict[str, float]:
    """Per-query latency percentiles in milliseconds (nearest rank)."""
    ordered = sorted(times) or [0.0]
    pick = lambda q: ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
    return {"latency_ms_p50": round(1000 * pick(0.50), 1), "latency_ms_p95": round(1000 * pick(0.95), 1)}


def _log_progress(stage: str, done: int, total: int) -> None:
    if total and (done == total or done % 2000 == 0):
        log.info("%s %d/%d", stage, done, total)


def scifact_queries(split: str) -> list[tuple[str, dict[str, int]]]:
    """The SciFact queries judged in one split ('test' or 'train'), in queries.jsonl order: the text and each judged
    abstract's grade (qrels/SPLIT.tsv)."""
    data = _benchmark_dir("scifact")
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, did, grade = line.rstrip("\n").split("\t")[:3]
            qrels.setdefault(qid, {})[did] = int(grade)
    queries = [json.loads(x) for x in (data / "queries.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    return [(q["text"], qrels[q["_id"]]) for q in queries if q["_id"] in qrels]


def run_scifact(
    limit: int | None, index: Path | None, model: str, mode: str, backend: Target = Target()
) -> dict[str, object]:
    """nDCG@10 over the SciFact test queries; a document's rank is that of its best passage."""
    corpus = scifact_corpus(BENCH_DIR / "scifact-corpus")
    searcher = _index_for("scifact", corpus, model, index, backend)
    queries = scifact_queries("test")[:limit]
    scores, t0 = [], time.time()
    for text, grades in queries:
        hits = searcher.search(text, 100, mode=mode, xrefs=False)
        ranked = list(dict.fromkeys(Path(h.chunk.doc_id).stem for h in hits))
        scores.append(ndcg_at_10(ranked, grades))
    return {
        "benchmark": "scifact",
        "model": model,
        "mode": mode,
        "tuned": searcher.tuned,
        "rerank": searcher.rerank,
        "queries": len(queries),
        "ndcg@10": round(sum(scores) / len(scores), 4),
        "seconds_per_query": round((time.time() - t0) / len(queries), 3),
    }


_WS = re.compile(r"\s+")


def _stard_rows(limit: int | None) -> list[dict]:
    path = _benchmark_dir("stard") / "train.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]


def _stard_judge(texts: list[str], row: dict) -> tuple[dict[int, float], float]:
    """Per-question Recall@5/10/100 and reciprocal rank within 10, by the STARD README's 30-character rule."""
    golds = [_WS.sub("", g["text"])[:30] for g in row["gold"]]
    flat = [_WS.sub("", t) for t in texts]
    recall = {k: sum(1 for g in golds if any(g in t for t in flat[:k])) / len(golds) for k in (5, 10, 100)}
    first = next((rank for rank, t in enumerate(flat[:10], start=1) if any(g in t for g in golds)), None)
    return recall, (1 / first if first else 0.0)


def _stard_scores(rows: list[dict], shown: list[list[str]]) -> dict[str, float]:
    """Recall@5/10/100 and MRR@10 averaged over questions, given the passages shown for each."""
    total = {5: 0.0, 10: 0.0, 100: 0.0}
    mrr = 0.0
    for row, texts in zip(rows, shown):
        got, rr = _stard_judge(texts, row)
        for k in total:
            total[k] += got[k]
        mrr += rr
    n = max(len(rows), 1)
    return {**{f"recall@{k}": round(v / n, 4) for k, v in total.items()}, "mrr@10": round(mrr / n, 4)}


def _stard_index(
    corpus: Path | None, model: str, index: Path | None, backend: Target = Target()
) -> tuple[Path, Backend]:
    corpus = corpus or BENCH_CORPORA / "lawrefbook-national"
    if not corpus.is_dir():
        raise CorpusError(
            f"{corpus} not found: import it with `python scripts/import_lawrefbook.py "
            f"../shared/corpora/lawrefbook/laws.tar.xz {corpus} --national-only`"
        )
    return corpus, _index_for(f"stard-{corpus.name}", corpus, model, index, backend)


# What `kb eval stard` says beside figures measured with the tower on: STARD train is what it was trained on.
IN_SAMPLE = (
    "the question tower, its passage adapter, the reranker and the question memory were trained on these questions "
    "(the memory holds each of them with its gold articles), so these figures are not held out: "
    "`python scripts/train.py rerank-cv --folds 3` gives the cross-validated ones (docs/BENCHMARKS.md)"
)


def run_stard(
    limit: int | None, index: Path | None, corpus: Path | None, model: str, mode: str, backend: Target = Target()
) -> dict[str, object]:
    """Recall@5/10/100 and MRR@10 on STARD train against a LawRefBook corpus folder, with latency percentiles."""
    corpus, searcher = _stard_index(corpus, model, index, backend)
    rows = _stard_rows(limit)
    searcher.search(rows[0]["query"], 100, mode=mode, xrefs=False)  # loads the model: not a query's latency
    lengths: list[int] = []
    shown: list[list[str]] = []
    times: list[float] = []
    t0 = time.time()
    for row in rows:
        start = time.perf_counter()
        hits = searcher.search(row["query"], 100, mode=mode, xrefs=False)
        times.append(time.perf_counter() - start)
        lengths.extend(len(h.chunk.text) for h in hits[:10])
        shown.append([h.chunk.text for h in hits])
    n = len(rows)
    return {
        "benchmark": "stard",
        "corpus": str(corpus),
        "model": model,
        "mode": mode,
        "tuned": searcher.tuned,
        "rerank": searcher.rerank,
        **({"in_sample": IN_SAMPLE} if searcher.tuned else {}),
        "backend": backend.name,
        **({"fusion": backend.fusion or "client"} if backend.name == "milvus" else {}),
        "queries": n,
        **_stard_scores(rows, shown),
        "mean_passage_chars": round(sum(lengths) / max(len(lengths), 1), 1),
        "seconds_per_query": round((time.time() - t0) / n, 3),
        **_latency(times),
    }


def tune_stard(
    grid: list[dict[str, float]],
    limit: int | None = None,
    corpus: Path | None = None,
    model: str = config.DEFAULT_MODEL,
) -> list[dict[str, object]]:
    """Recall for each channel-weight setting, ranking every question once and fusing it many times."""
    _, searcher = _stard_index(corpus, model, None)
    rows = _stard_rows(limit)
    ranked = [searcher.rankings(row["query"], depth(100)) for row in rows]
    out = []
    for weights in grid:
        searcher.weights = dict(weights)
        shown = [[h.chunk.text for h in searcher.fuse(r, row["query"], 100)] for row, r in zip(rows, ranked)]
        out.append({"weights": weights, **_stard_scores(rows, shown)})
    return out


def run(
    benchmark: str,
    limit: int | None = None,
    index: Path | None = None,
    corpus: Path | None = None,
    model: str = config.DEFAULT_MODEL,
    mode: str = "hybrid",
    backend: str = "faiss",
    uri: str | None = None,
    collection: str | None = None,
    fusion: str | None = None,
    tuned: bool | None = None,
    rerank: bool | None = None,
) -> dict[str, object]:
    """Run one benchmark and return its figures (backend, uri, collection, fusion, tuned: see kb.backends)."""
    where = Target(backend, uri, collection, fusion, tuned, rerank)
    if benchmark == "scifact":
        return run_scifact(limit, index, model, mode, where)
    return run_stard(limit, index, corpus, model, mode, where)
