"""Training the reranker (kb.search.rerank): a linear scorer over the fused candidates' features, fitted with a
listwise loss (softmax over each question's candidates, every gold passage a positive) on STARD train.

A question's candidates are the product's own fused hits (`Searcher.fuse`), so the features seen in training
are the ones a search computes. Questions without a gold passage among their candidates teach nothing and are
skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kb.search.hits import Hit
from kb.search.rerank import FEATURES, Reranker, Similarity, features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One question's candidates: feature rows and which of them hold a gold article."""

    x: np.ndarray  # (n, len(FEATURES)) float32
    gold: np.ndarray  # (n,) bool


def sample(
    query: str, hits: Sequence[Hit], gold_ids: set[str], pool: int, similarity: Similarity | None = None
) -> Sample:
    """The first `pool` fused hits of a question as a training sample (similarity: as a search computes it)."""
    head = list(hits[:pool])
    sims = similarity(head) if similarity else None
    return Sample(features(query, head, sims), np.array([h.chunk.chunk_id in gold_ids for h in head], dtype=bool))


@dataclass(frozen=True)
class RerankConfig:
    """Hyperparameters; the defaults are what scripts/train.py ships (docs/BENCHMARKS.md has the grid)."""

    pool: int = 100  # fused candidates it re-orders: all the fusion keeps (30, 50, 70 scored lower: BENCHMARKS.md)
    # the English scorer's: at 100 it lost the bundled live-stream seed passage from the top 5 (a golden question)
    english_pool: int = 30
    l2: float = 1e-3
    steps: int = 400
    lr: float = 0.05
    # corpus definition pairs ("什么是X？" -> its defining article) added to the Chinese scorer's training
    # (scripts/train.py prepare-definitions); 0 fits on STARD alone
    definitions: int = 300
    # 1: fit the Chinese scorer on the tower's candidates of the STARD questions too, not only the untrained
    # system's. The tower was trained on those questions, so its ranks and similarities there are better than on
    # new ones and the scorer learns to over-trust them: held out, R@10 0.6753 with them, 0.6811 without
    # (docs/BENCHMARKS.md, session 17). The definition pairs keep both.
    tower_candidates: int = 0
    # 1: fit the cross-language scorer ("en>zh": an English question's Chinese candidates, kb.search.rerank) on our
    # English translations of STARD train, read with their glossary translation and the passage adapter's
    # similarity. Held out, it lifted the en100 questions' R@10 from 0.5545 to 0.6043 (docs/BENCHMARKS.md,
    # session 18); 0 leaves English questions' Chinese candidates in fused order.
    across: int = 1
    seed: int = 0


def fit(samples: Sequence[Sample], cfg: RerankConfig) -> Reranker:
    """Listwise logistic fit of the linear scorer (full batch, Adam; deterministic for a given input)."""
    import torch

    torch.manual_seed(cfg.seed)
    usable = [s for s in samples if s.gold.any() and not s.gold.all()]
    if not usable:
        raise ValueError("no question has both a gold and a non-gold candidate to learn from")
    stacked = np.concatenate([s.x for s in usable])
    mean = stacked.mean(0)
    scale = stacked.std(0)
    scale[scale < 1e-6] = 1.0
    n = max(len(s.gold) for s in usable)
    x = torch.zeros(len(usable), n, len(FEATURES))
    valid = torch.zeros(len(usable), n, dtype=torch.bool)
    pos = torch.zeros(len(usable), n, dtype=torch.bool)
    for i, s in enumerate(usable):
        x[i, : len(s.gold)] = torch.from_numpy((s.x - mean) / scale)
        valid[i, : len(s.gold)] = True
        pos[i, : len(s.gold)] = torch.from_numpy(s.gold)
    w = torch.zeros(len(FEATURES), requires_grad=True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    for _ in range(cfg.steps):
        scores = (x @ w).masked_fill(~valid, -1e9)
        listwise = torch.logsumexp(scores, 1) - torch.logsumexp(scores.masked_fill(~pos, -1e9), 1)
        loss = listwise.mean() + cfg.l2 * (w * w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    log.info("reranker fitted on %d questions: loss %.4f", len(usable), float(loss.detach()))
    return Reranker(mean.astype(np.float32), scale.astype(np.float32), w.detach().numpy().astype(np.float32), cfg.pool)
