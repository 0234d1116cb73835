"""Training the passage adapter (kb.embed.tower.adapt_passages): a residual network over the stored passage
vectors, fitted against a trained tower's question vectors.

The tower moves questions; the adapter moves the Chinese passages they should land on, from the packaged vector
alone (no encoder pass), so training costs a minute and a search applies it to the index's vectors at load. The
loss is the tower's (kb.train.tower.train): softmax over the gold passages, the tower's own best non-gold passages
and random ones. The network starts as the identity (its last layer at zero).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kb.embed.tower import ADAPTER_TENSORS
from kb.train.tower import Prepared, batch_pool, listwise_loss

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterConfig:
    """Hyperparameters; the defaults are what scripts/train.py ships (docs/BENCHMARKS.md, session 16, has the grid)."""

    hidden: int = 512
    epochs: int = 4
    lr: float = 3e-4
    batch: int = 32
    temperature: float = 0.02
    hard: int = 64  # the tower's best non-gold passages per question
    random: int = 2048  # random allowed passages shared by a batch
    seed: int = 0


class Adapter:
    """x + b(gelu(a(x))), L2-normalised; `b` starts at zero, so an untrained adapter changes nothing."""

    def __init__(self, dim: int, hidden: int) -> None:
        import torch

        self.a = torch.nn.Linear(dim, hidden)
        self.b = torch.nn.Linear(hidden, dim)
        torch.nn.init.zeros_(self.b.weight)
        torch.nn.init.zeros_(self.b.bias)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.a.parameters(), *self.b.parameters()]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        f = torch.nn.functional
        return f.normalize(x + self.b(f.gelu(self.a(x), approximate="tanh")), dim=-1)

    def tensors(self) -> dict[str, np.ndarray]:
        """Named as kb.embed.tower.ADAPTER_TENSORS, float32 (the shipped file stores float16)."""
        params = (self.a.weight, self.a.bias, self.b.weight, self.b.bias)
        return {name: p.detach().numpy().copy() for name, p in zip(ADAPTER_TENSORS, params)}


def question_ids(prep: Prepared, held: set[int]) -> list[int]:
    """The questions the adapter trains on: STARD's Chinese questions and their English translations, but not
    those of the held-out STARD questions."""
    return [i for i, kind in enumerate(prep.kind) if kind in ("zh", "en") and prep.group[i] not in held]


def _top(passages: np.ndarray, vector: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    scores = passages @ vector
    scores[~allowed] = -np.inf
    best = np.argpartition(-scores, n)[:n]
    return best[np.lexsort((best, -scores[best]))]


def fit(
    prep: Prepared,
    ids: Sequence[int],
    vectors: np.ndarray,
    cfg: AdapterConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Train on questions `ids` of a prepared set (their tower vectors in `vectors`, in the same order) against
    the set's passages; returns the adapter's tensors (float32)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    allowed_rows = np.flatnonzero(prep.allowed)
    passages = torch.from_numpy(prep.passages)
    questions = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    usable = [n for n, i in enumerate(ids) if len(prep.gold[i])]
    hard = {n: np.setdiff1d(_top(prep.passages, vectors[n], prep.allowed, cfg.hard), prep.gold[ids[n]]) for n in usable}
    adapter = Adapter(prep.passages.shape[1], cfg.hidden)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.01)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = rng.permutation(usable)
        total = 0.0
        for b in range(0, len(order), cfg.batch):
            batch = [int(n) for n in order[b : b + cfg.batch]]
            golds = [prep.gold[ids[n]] for n in batch]
            pool, positive = batch_pool(rng, allowed_rows, cfg.random, golds, [hard[n] for n in batch])
            loss = listwise_loss(questions[batch] @ adapter(passages[pool]).T / cfg.temperature, positive)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        if progress:
            progress(
                f"passage adapter epoch {epoch + 1}/{cfg.epochs}: loss {total / max(len(usable), 1):.4f} "
                f"({time.perf_counter() - t0:.0f}s)"
            )
    return adapter.tensors()
