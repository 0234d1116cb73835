"""Rank fusion: weighted reciprocal rank for the head of a result list, a structure-aware order for its tail.

The first `config.HEAD` results are the channels' weighted reciprocal-rank fusion, the most precise order measured
(docs/BENCHMARKS.md). Below them a reader is looking for what else the law says, and gold articles of real
questions sit near the ones found: in the same law (a question about a lease touches several articles of the
contract chapter) and next to them. So the tail re-scores the fused candidates by how strongly their document
stands among the best candidates, and lifts the articles adjacent to the best passages. On STARD this raised
Recall@100 from 0.779 to 0.810 without moving anything in the top 10.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from kb import config

Scores = dict[int, float]


def depth(k: int) -> int:
    """How many rows each channel ranks for a list of k results."""
    return max(k, config.CANDIDATES if k <= config.HEAD else config.TAIL_CANDIDATES)


def rrf(ranked: Mapping[str, Sequence[int]], weights: Mapping[str, float], prior: np.ndarray, depth: int) -> Scores:
    """Weighted reciprocal-rank fusion of each channel's first `depth` rows, times the row's level prior.

    The prior is a soft preference for higher-level texts (法律 over 行政法规 over rules): about five places at the
    head of the list, never enough to lift an unrelated article over a relevant one.
    """
    fused: Scores = {}
    for channel, rows in ranked.items():
        weight = weights.get(channel, 1.0)
        for rank, row in enumerate(rows[:depth], start=1):
            fused[row] = fused.get(row, 0.0) + weight / (config.RRF_K + rank)
    return {r: v * float(prior[r]) for r, v in fused.items()}


def ordered(scores: Scores, tie: np.ndarray) -> list[int]:
    """Rows best first; equal scores fall to the lower `tie` (reading order of the corpus)."""
    return sorted(scores, key=lambda r: (-scores[r], int(tie[r])))


def document_boost(scores: Scores, row_doc: np.ndarray, tie: np.ndarray, top: int = config.TAIL_BOOST_TOP,
                   strength: float = config.TAIL_DOC_BOOST) -> Scores:
    """Each row's score times 1 + strength * (its document's share of the best `top` rows' score mass)."""
    mass: dict[int, float] = {}
    for r in ordered(scores, tie)[:top]:
        doc = int(row_doc[r])
        mass[doc] = mass.get(doc, 0.0) + scores[r]
    most = max(mass.values(), default=0.0) or 1.0
    return {r: v * (1.0 + strength * mass.get(int(row_doc[r]), 0.0) / most) for r, v in scores.items()}


def with_neighbours(scores: Scores, parents: Sequence[int], row_doc: np.ndarray, allowed: np.ndarray,
                    reach: int = config.TAIL_NEIGHBOURS, decay: float = config.TAIL_NEIGHBOUR_DECAY
                    ) -> tuple[Scores, dict[int, int]]:
    """Passages up to `reach` rows before and after each parent, in the same document, scored decay**distance
    times the parent's score (or their own score where that is higher).

    Rows of a document are consecutive and in reading order, so row ± d is the article d places away.
    Returns:
        The new scores, and for each row lifted above its own score the parent that lifted it.
    """
    out = dict(scores)
    lifted: dict[int, int] = {}
    n = row_doc.shape[0]
    for p in parents:
        for d in range(1, reach + 1):
            score = scores[p] * decay ** d
            for r in (p - d, p + d):
                if 0 <= r < n and row_doc[r] == row_doc[p] and allowed[r] and score > out.get(r, 0.0):
                    out[r] = score
                    lifted[r] = p
    return out, lifted


def tail_scores(ranked: Mapping[str, Sequence[int]], weights: Mapping[str, float], prior: np.ndarray,
                row_doc: np.ndarray, allowed: np.ndarray, tie: np.ndarray,
                distinct: Callable[[list[int], int], list[int]]) -> tuple[Scores, dict[int, int]]:
    """Scores for the rows below the head: deeper fusion, document boost, then the best passages' neighbours.

    Args:
        distinct: (rows best first, n) -> the first n rows showing different passages (identical article texts
            in several versions of a law count once), to choose the parents.
    """
    boosted = document_boost(rrf(ranked, weights, prior, config.TAIL_CANDIDATES), row_doc, tie)
    parents = distinct(ordered(boosted, tie), config.TAIL_PARENTS)
    return with_neighbours(boosted, parents, row_doc, allowed)
