"""Scoring trained models through the product's own fusion (Searcher.fuse), from channel rankings as rows.

A trained question tower only changes the dense channels' rankings; these are recomputed from its question
vectors (`dense_rankings`) and fused with the current system's other channels exactly as a search would.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from kb.bench.evaluate import _stard_judge, _stard_rows, ndcg_at_10
from kb.catalog.filters import Filters
from kb.index.vectors import Index, nearest
from kb.ingest.read import detect_lang
from kb.search.fusion import depth
from kb.search.hits import Hit
from kb.search.rerank import Reranker
from kb.search.searcher import Searcher, _top, allowed_rows, similarities, translated_rows
from kb.text.bilingual import Glossary
from kb.text.lexical import tokenize
from kb.train.bridges import Bridges, learn
from kb.train.tower import Prepared

METRICS = ("recall@5", "recall@10", "recall@100", "mrr@10")


def dense_rankings(
    searcher: Searcher, prep: Prepared, i: int, vector: np.ndarray, passages: Index | None = None
) -> dict[str, list[int]]:
    """The dense channels of question i (passages in its language, and in the other) ranked for a question vector,
    split by language as kb.search.searcher does; passages: the index's vectors through a passage adapter
    (kb.search.searcher.adapted_passages), which a search reads for Chinese questions only, else the stored ones."""
    loaded, out = searcher.index, {}
    chinese = detect_lang(prep.queries[i]) == "zh"
    stored = passages if passages is not None and chinese else loaded.vectors["dense"]
    same = loaded.columns.zh if chinese else ~loaded.columns.zh
    for name, part in (("dense", same), ("dense_x", ~same)):
        mask = prep.allowed & part
        if mask.any():
            out[name] = nearest(stored, vector, mask, depth(100), loaded.row_order)
    return out


def tuned_rankings(
    searcher: Searcher, prep: Prepared, ids: list[int], vectors: np.ndarray, passages: Index | None = None
) -> dict[int, dict[str, list[int]]]:
    """Each question's channel rankings with its dense channels from the given question vectors (and passage
    vectors, as dense_rankings)."""
    return {i: {**prep.ranked[i], **dense_rankings(searcher, prep, i, v, passages)} for i, v in zip(ids, vectors)}


def bridge_rankings(searcher: Searcher, prep: Prepared, bridges: Bridges, i: int, n: int) -> dict[str, list[int]]:
    """The bridge channel for question i: BM25 over the legal terms its words point to."""
    terms = bridges.expand(tokenize(prep.queries[i]), n)
    scores = searcher.index.bm25.scores(terms) if terms else None
    if scores is None:
        return {}
    return {"bridge": _top(scores, prep.allowed, depth(100), searcher.index.row_order)}


def translated_rankings(searcher: Searcher, prep: Prepared, glossary: Glossary, i: int) -> dict[str, list[int]]:
    """The `bm25_x` channel of English question i with another glossary than the product's (kb.train.senses), as
    kb.search.searcher ranks it: BM25 over the Chinese passages for the question's translation."""
    loaded = searcher.index
    rows = translated_rows(loaded, prep.queries[i], prep.allowed & loaded.columns.zh, depth(100), glossary)
    return {} if rows is None else {"bm25_x": rows}


def learn_bridges(prep: Prepared, ids: list[int]) -> Bridges:
    """Bridges from STARD questions `ids` and their gold articles."""
    rows = _stard_rows(None)
    return learn(
        [tokenize(prep.queries[i]) for i in ids],
        [[t for g in rows[prep.group[i]]["gold"] for t in tokenize(g["text"])] for i in ids],
    )


def fused(
    searcher: Searcher, prep: Prepared, ranked: dict[int, dict[str, list[int]]], k: int = 100, tuned: bool = False
) -> dict[int, list[Hit]]:
    """Each question's first k fused hits (the product's fusion) from channel rankings as rows; tuned: their dense
    channels come from a tower's question vectors (tuned_rankings), so they are fused with the tower's weights."""
    return {
        i: searcher.fuse({c: searcher.index.chunk_ids(rows) for c, rows in r.items()}, prep.queries[i], k, tuned=tuned)
        for i, r in ranked.items()
    }


def judged(
    prep: Prepared, hits_by_q: dict[int, list[Hit]], ids: list[int], per: dict[int, float] | None = None
) -> dict[str, float]:
    """STARD figures of questions `ids` (any language: each is judged against its STARD question's gold articles).

    per: filled with each question's Recall@10.
    """
    rows = _stard_rows(None)
    total = dict.fromkeys(METRICS, 0.0)
    chars: list[int] = []
    for i in ids:
        recall, rr = _stard_judge([h.chunk.text for h in hits_by_q[i]], rows[prep.group[i]])
        for k in (5, 10, 100):
            total[f"recall@{k}"] += recall[k]
        total["mrr@10"] += rr
        chars.extend(len(h.chunk.text) for h in hits_by_q[i][:10])
        if per is not None:
            per[i] = recall[10]
    out = {k: v / max(len(ids), 1) for k, v in total.items()}
    out["mean_passage_chars"] = sum(chars) / max(len(chars), 1)
    return out


def score(
    searcher: Searcher,
    prep: Prepared,
    ranked: dict[int, dict[str, list[int]]],
    weights: dict[str, float] | None = None,
    per: dict[int, float] | None = None,
    tuned: bool = False,
) -> dict[str, float]:
    """STARD figures of the questions in `ranked` through the product's fusion, given their channel rankings
    (tuned: from a tower's question vectors, as `fused`)."""
    saved = searcher.weights
    searcher.weights = {**saved, **(weights or {})}
    try:
        return judged(prep, fused(searcher, prep, ranked, tuned=tuned), list(ranked), per)
    finally:
        searcher.weights = saved


def scifact_ndcg(
    searcher: Searcher,
    queries: list[tuple[str, dict[str, int]]],
    vectors: np.ndarray | None,
    scorer: Reranker | None = None,
) -> float:
    """SciFact nDCG@10 (a document ranks at its best passage) with the question vectors given, or the packaged e5's
    when None; the other channels as the current system ranks them; the fused hits re-ordered by `scorer` if any."""
    total = 0.0
    loaded = searcher.index
    for n, (text, relevant) in enumerate(queries):
        ranked = searcher.rankings(text, depth(100), tuned=False)
        if vectors is not None:
            allowed = allowed_rows(loaded, Filters())
            same = ~loaded.columns.zh
            for name, part in (("dense", same), ("dense_x", ~same)):
                ranked.pop(name, None)
                if (allowed & part).any():
                    rows = nearest(loaded.vectors["dense"], vectors[n], allowed & part, depth(100), loaded.row_order)
                    ranked[name] = loaded.chunk_ids(rows)
        hits = searcher.fuse(ranked, text, 100, tuned=vectors is not None)
        if scorer is not None:  # the sim feature reads the question vector the dense channels used, as a search does
            vector = vectors[n] if vectors is not None else searcher.question_vector(text, False)
            hits = scorer.rerank(text, hits, "en", partial(similarities, loaded, vector))
        total += ndcg_at_10(list(dict.fromkeys(Path(h.chunk.doc_id).stem for h in hits)), relevant)
    return total / max(len(queries), 1)


def mean(results: list[dict[str, float]]) -> dict[str, float]:
    """Fold average of each figure, rounded to 4 places."""
    return {k: round(float(np.mean([r[k] for r in results])), 4) for k in results[0]}


def ratio(english: float, chinese: float) -> float:
    return round(english / chinese, 3) if chinese > 0 and not math.isnan(chinese) else float("nan")
