"""Training the question tower (kb.embed.tower): STARD questions against the packaged passage vectors of an index.

Everything the training reads is prepared once (`prepare`): each question's hidden states below the layers that
are trained, its gold rows (the STARD README's 30-character rule over the passages the search may return) and
the current system's channel rankings, from which hard negatives are mined. Passages are never re-embedded, so
a fold costs a minute or two and k-fold cross-validation stays cheap.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Prepared:
    """Training inputs for n questions over an index of N rows."""

    queries: list[str]
    hidden: list[np.ndarray]  # per question: (tokens, 384) float32 states entering layer `start`
    start: int  # first trained layer
    gold: list[np.ndarray]  # per question: allowed rows holding a gold article
    ranked: list[dict[str, list[int]]]  # per question: the current system's channel rankings
    passages: np.ndarray  # (N, 384) float32 packaged passage vectors
    allowed: np.ndarray  # (N,) bool: rows the default search may return
    n_stard: int  # the first n_stard questions are STARD's; the rest are definition pairs (definition_pairs)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults are what scripts/train.py ships (docs/BENCHMARKS.md has the grid)."""

    layers: int = 2  # the last `layers` of e5's 12 are trained
    epochs: int = 4
    lr: float = 5e-5
    batch: int = 32
    temperature: float = 0.02
    hard: int = 64  # hard negatives per question from each channel's top of the current system
    random: int = 2048  # random allowed passages shared by a batch
    definitions: int = 0  # 1: also train on the corpus's definition pairs ("什么是X？" -> the defining article)
    seed: int = 0


def gold_rows(texts: Sequence[str], allowed: np.ndarray, golds: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Rows whose text (whitespace removed) contains a gold article's first 30 characters, per question."""
    flat = [_WS.sub("", t) for t in texts]
    joined = "\x00".join(flat)
    starts = np.cumsum([0] + [len(t) + 1 for t in flat[:-1]])
    found: dict[str, np.ndarray] = {}
    out = []
    for question in golds:
        rows: set[int] = set()
        for g in question:
            key = _WS.sub("", g)[:30]
            if key not in found:
                hits, pos = [], joined.find(key)
                while pos >= 0:
                    hits.append(int(np.searchsorted(starts, pos, side="right") - 1))
                    pos = joined.find(key, pos + 1)
                found[key] = np.array(sorted(set(hits)), dtype=np.int64)
            rows.update(int(r) for r in found[key] if allowed[r])
        out.append(np.array(sorted(rows), dtype=np.int64))
    return out


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

    def encode(self, states: list[np.ndarray], batch: int = 64) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate([self(states[i : i + batch]).numpy() for i in range(0, len(states), batch)])


def hard_negatives(prep: Prepared, i: int, n: int) -> np.ndarray:
    """The current system's best rows for question i that are not gold: each channel's first n."""
    rows = {r for ranking in prep.ranked[i].values() for r in ranking[:n]}
    return np.array(sorted(rows - set(prep.gold[i].tolist())), dtype=np.int64)


def train(
    model: object,
    prep: Prepared,
    train_ids: Sequence[int],
    cfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
) -> Head:
    """Fine-tune the last layers on the given questions (only those with a gold row the search may return)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = Head(model, prep.start)
    passages = torch.from_numpy(prep.passages)
    allowed_rows = np.flatnonzero(prep.allowed)
    ids = [i for i in train_ids if len(prep.gold[i])]
    negatives = {i: hard_negatives(prep, i, cfg.hard) for i in ids}
    opt = torch.optim.AdamW(head.layers.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps = cfg.epochs * ((len(ids) + cfg.batch - 1) // cfg.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, (steps - s) / steps)
    )
    t0, step = time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(ids)
        total = 0.0
        for b in range(0, len(order), cfg.batch):
            batch = [int(i) for i in order[b : b + cfg.batch]]
            pool = np.unique(
                np.concatenate(
                    [rng.choice(allowed_rows, cfg.random, replace=False)]
                    + [prep.gold[i] for i in batch]
                    + [negatives[i] for i in batch]
                )
            )
            where = {int(r): j for j, r in enumerate(pool)}
            positive = torch.zeros(len(batch), len(pool), dtype=torch.bool)
            for qi, i in enumerate(batch):
                positive[qi, [where[int(r)] for r in prep.gold[i]]] = True
            q = head([prep.hidden[i] for i in batch])
            logits = q @ passages[pool].T / cfg.temperature
            loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, -1e9), 1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            step += 1
        if progress:
            progress(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / len(ids):.4f} ({time.perf_counter() - t0:.0f}s)")
    return head


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint test folds of question positions, shuffled with a fixed seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


# "本法所称X，是指…" / "本规定所称X是指…": the article that defines X answers "什么是X".
_DEFINES = re.compile(r"所称的?([^，。；：、“”（）\s]{2,16}?)[，,]?(?:是指|指的是|包括)")


def definition_pairs(texts: Sequence[str], allowed: np.ndarray, limit: int, seed: int = 0) -> list[tuple[str, str]]:
    """Self-supervised (question, article text) pairs from definition articles of the corpus: "什么是X？".

    One pair per defined term (its first allowed definition in reading order), at most `limit`, drawn with a
    fixed seed.
    """
    seen: dict[str, str] = {}
    for row, text in enumerate(texts):
        if not allowed[row]:
            continue
        for term in _DEFINES.findall(text):
            seen.setdefault(term, text)
    terms = sorted(seen)
    pick = np.random.default_rng(seed).permutation(len(terms))[:limit]
    return [(f"什么是{terms[i]}？", seen[terms[i]]) for i in sorted(pick)]
