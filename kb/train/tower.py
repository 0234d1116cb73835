"""Training the question tower (kb.embed.tower): questions against the packaged passage vectors of an index.

Everything the training reads is prepared once (kb.train.data): each question's hidden states below the layers that
are trained, its gold rows (the STARD README's 30-character rule over the passages the search may return) and
the current system's channel rankings, from which hard negatives are mined. Passages are never re-embedded, so
a fold costs a minute or two and k-fold cross-validation stays cheap.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


# The kinds of self-supervised pairs (kb.train.pairs mines them; `TrainConfig.pairs` trains on them).
PAIR_KINDS = ("heading", "citation", "version", "commentary")


@dataclass(frozen=True)
class Prepared:
    """Training inputs for n questions over one index of N rows.

    Positions 0..n_stard-1 are STARD's Chinese questions in train.jsonl's order; after them come the questions
    of other kinds (`kind`): "en" (our English translation of STARD question `group[i]`, same gold articles),
    "definition" (corpus definition pairs), "scifact" (SciFact train queries, on the SciFact index) and the
    mined pairs' kinds (PAIR_KINDS, on the index they were mined from).
    """

    queries: list[str]
    hidden: list[np.ndarray]  # per question: (tokens, 384) float32 states entering layer `start`
    start: int  # first trained layer
    gold: list[np.ndarray]  # per question: allowed rows holding a gold article
    ranked: list[dict[str, list[int]]]  # per question: the current system's channel rankings
    passages: np.ndarray  # (N, 384) float32 packaged passage vectors
    allowed: np.ndarray  # (N,) bool: rows the default search may return
    n_stard: int
    kind: list[str]  # per question: "zh" (STARD), "en", "definition" or "scifact"
    group: list[int]  # per question: the STARD question (position < n_stard) it asks, -1 for none

    def positions(self, kind: str, groups: set[int] | None = None) -> list[int]:
        """Positions of the questions of one kind, optionally only those asking the STARD questions `groups`."""
        return [i for i, k in enumerate(self.kind) if k == kind and (groups is None or self.group[i] in groups)]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults are what scripts/train.py ships (docs/BENCHMARKS.md has the grid)."""

    layers: int = 4  # the last `layers` of e5's 12 are trained (two: docs/BENCHMARKS.md, sessions 7-8)
    epochs: int = 4
    lr: float = 5e-5
    batch: int = 32
    temperature: float = 0.02
    hard: int = 64  # hard negatives per question from each channel's top of the current system
    random: int = 2048  # random allowed passages shared by a batch
    definitions: int = 0  # 1: also train on the corpus's definition pairs ("什么是X？" -> the defining article)
    # 1: also train on the English versions of the training STARD questions / on SciFact train queries (their own
    # index's passages). Both on in the shipped file (docs/BENCHMARKS.md has the cross-validated figures).
    english: int = 1
    scifact: int = 1
    # 1: also train on the self-supervised pairs (kb.train.pairs: headings, citations, versions, commentary),
    # prepared apart by `scripts/train.py prepare-pairs`. Measured in docs/BENCHMARKS.md; off in the shipped file.
    pairs: int = 0
    seed: int = 0


def query_states(model: object, queries: Sequence[str], start: int) -> list[np.ndarray]:
    """Hidden states of each "query: " text entering encoder layer `start` (fp32 kb.embed.e5torch.TorchE5)."""
    import torch

    from kb.embed.e5torch import _dequant_q4

    enc, tok, out = model._enc, model._tok, []  # type: ignore[attr-defined]
    with torch.inference_mode():
        for text in queries:
            ids = [tok.bos, *tok.content_ids("query: " + text)[: model._window], tok.eos]  # type: ignore[attr-defined]
            emb = torch.from_numpy(_dequant_q4(model._word[np.array([ids])]))  # type: ignore[attr-defined]
            x = enc.eln(emb + enc.pos[: len(ids)])
            mask = torch.ones(1, 1, 1, len(ids), dtype=torch.bool)
            for layer in enc.layers[:start]:
                x = layer(x, mask)
            out.append(x[0].float().numpy().copy())
    return out


class Head:
    """Trainable copies of the encoder's last layers, then mean pooling and L2 normalisation."""

    def __init__(self, model: object, start: int) -> None:
        import torch

        enc = model._enc  # type: ignore[attr-defined]
        self.start = start
        self.layers = torch.nn.ModuleList(copy.deepcopy(layer).float() for layer in enc.layers[start:])
        for p in self.layers.parameters():
            p.data = p.data.float().clone()
            p.requires_grad_(True)

    def __call__(self, states: list[np.ndarray]) -> torch.Tensor:
        import torch

        n = max(s.shape[0] for s in states)
        x = torch.zeros(len(states), n, states[0].shape[1])
        mask = torch.zeros(len(states), n, dtype=torch.bool)
        for i, s in enumerate(states):
            x[i, : s.shape[0]] = torch.from_numpy(s)
            mask[i, : s.shape[0]] = True
        for layer in self.layers:
            x = layer(x, mask[:, None, None, :])
        m = mask.unsqueeze(-1).float()
        pooled = (x * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def tensors(self) -> dict[str, np.ndarray]:
        """Weights as shipped: name as in the encoder, float16 (the packaged weights were 4-bit to begin with)."""
        return {
            f"layers.{self.start + i}.{name}": p.detach().numpy().astype(np.float16)
            for i, layer in enumerate(self.layers)
            for name, p in layer.named_parameters()
        }

    def state(self) -> dict[str, np.ndarray]:
        """The trained layers in float32 (a fold's model kept between runs)."""
        return {name: p.detach().numpy().copy() for name, p in self.layers.named_parameters()}

    @classmethod
    def from_state(cls, model: object, start: int, state: dict[str, np.ndarray]) -> Head:
        import torch

        head = cls(model, start)
        for name, p in head.layers.named_parameters():
            p.data = torch.from_numpy(state[name].copy())
        return head

    def encode(self, states: list[np.ndarray], batch: int = 64) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate([self(states[i : i + batch]).numpy() for i in range(0, len(states), batch)])


def hard_negatives(prep: Prepared, i: int, n: int) -> np.ndarray:
    """The current system's best rows for question i that are not gold: each channel's first n."""
    rows = {r for ranking in prep.ranked[i].values() for r in ranking[:n]}
    return np.array(sorted(rows - set(prep.gold[i].tolist())), dtype=np.int64)


def training_ids(prep: Prepared, held: set[int], cfg: TrainConfig) -> list[int]:
    """Positions to train on: the STARD questions (Chinese, and English with cfg.english) whose STARD question is
    not held out, then definition pairs with cfg.definitions, SciFact queries with cfg.scifact and the mined
    pairs (kb.train.pairs) with cfg.pairs."""
    kinds = ["zh"] + ["en"] * cfg.english + ["definition"] * cfg.definitions + ["scifact"] * cfg.scifact
    kinds += list(PAIR_KINDS) * cfg.pairs
    return [i for i, k in enumerate(prep.kind) if k in kinds and prep.group[i] not in held]


def batch_pool(
    rng: np.random.Generator,
    allowed_rows: np.ndarray,
    n_random: int,
    golds: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
) -> tuple[np.ndarray, torch.Tensor]:
    """A batch's candidate rows (random allowed ones shared by the batch, then each question's gold rows and hard
    negatives), and which of them are each question's gold: (questions, rows) bool."""
    import torch

    random = rng.choice(allowed_rows, min(n_random, len(allowed_rows)), replace=False)
    pool = np.unique(np.concatenate([random, *golds, *negatives]))
    where = {int(r): j for j, r in enumerate(pool)}
    positive = torch.zeros(len(golds), len(pool), dtype=torch.bool)
    for qi, gold in enumerate(golds):
        positive[qi, [where[int(r)] for r in gold]] = True
    return pool, positive


def listwise_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Softmax over a question's candidates with every gold one a positive, averaged over the batch."""
    import torch

    return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, -1e9), 1)).mean()


def train(
    model: object,
    sets: Sequence[tuple[Prepared, Sequence[int]]],
    cfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
) -> Head:
    """Fine-tune the last layers on the given questions of each prepared set (only those with a gold row the search
    may return). A batch holds questions of one set (each set has its own passages); with several sets the
    batches of an epoch are shuffled together. With one set the random draws are those of a single-set run.
    """
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = Head(model, sets[0][0].start)
    parts = []
    for prep, train_ids in sets:
        ids = [i for i in train_ids if len(prep.gold[i])]
        parts.append((prep, ids, torch.from_numpy(prep.passages), np.flatnonzero(prep.allowed)))
    negatives = [{i: hard_negatives(prep, i, cfg.hard) for i in ids} for prep, ids, _, _ in parts]
    n_questions = sum(len(ids) for _, ids, _, _ in parts)
    opt = torch.optim.AdamW(head.layers.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps = cfg.epochs * sum((len(ids) + cfg.batch - 1) // cfg.batch for _, ids, _, _ in parts)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, (steps - s) / steps)
    )
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        batches: list[tuple[int, list[int]]] = []
        for p, (_, ids, _, _) in enumerate(parts):
            order = rng.permutation(ids)
            batches.extend((p, [int(i) for i in order[b : b + cfg.batch]]) for b in range(0, len(order), cfg.batch))
        if len(parts) > 1:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        total = 0.0
        for p, batch in batches:
            prep, _, passages, allowed_rows = parts[p]
            golds = [prep.gold[i] for i in batch]
            pool, positive = batch_pool(rng, allowed_rows, cfg.random, golds, [negatives[p][i] for i in batch])
            q = head([prep.hidden[i] for i in batch])
            loss = listwise_loss(q @ passages[pool].T / cfg.temperature, positive)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
        if progress:
            progress(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {total / n_questions:.4f} ({time.perf_counter() - t0:.0f}s)"
            )
    return head


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint test folds of question positions, shuffled with a fixed seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]
