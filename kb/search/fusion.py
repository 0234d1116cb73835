"""Rank fusion for both backends: weighted reciprocal rank for the head of a result list, a structure-aware tail.

The first `config.HEAD` results are the channels' weighted reciprocal-rank fusion, the most precise order measured
(docs/BENCHMARKS.md). Below them a reader is looking for what else the law says, and gold articles of real
questions sit near the ones found: in the same law (a question about a lease touches several articles of the
contract chapter) and next to them. So the tail re-scores the fused candidates by how strongly their document
stands among the best candidates, and lifts the articles adjacent to the best passages. On STARD this raised
Recall@100 from 0.779 to 0.810 without moving anything in the top 10.

Passages are keys of any kind: row numbers in the FAISS backend, chunk ids in the Milvus one. A backend says
what a key's document, level prior and reading position are, which key stands a few places before or after
another in the same document, and how to fetch chunks.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kb import config
from kb.chunk import Chunk

K = TypeVar("K", bound=Hashable)
# Candidates sorted at first for each passage a list needs (the rest only when copies use these up).
LIKELY = 4


def depth(k: int) -> int:
    """How many passages each channel ranks for a list of k results."""
    return max(k, config.CANDIDATES if k <= config.HEAD else config.TAIL_CANDIDATES)


def rrf(
    ranked: Mapping[str, Sequence[K]], weights: Mapping[str, float], prior: Callable[[K], float], depth: int
) -> dict[K, float]:
    """Weighted reciprocal-rank fusion of each channel's first `depth` passages, times the passage's level prior.

    The prior is a soft preference for higher-level texts (法律 over 行政法规 over rules): about five places at the
    head of the list, never enough to lift an unrelated article over a relevant one.
    """
    fused: dict[K, float] = {}
    for channel, keys in ranked.items():
        get = fused.get
        for key, share in zip(keys[:depth], _shares(weights.get(channel, 1.0), depth)):
            fused[key] = get(key, 0.0) + share
    return {key: v * prior(key) for key, v in fused.items()}


@functools.lru_cache(maxsize=64)
def _shares(weight: float, depth: int) -> tuple[float, ...]:
    """weight / (RRF_K + rank) for ranks 1..depth: what a channel's place is worth in the fusion (the same floats
    the division gives each time, made once per weight and depth)."""
    return tuple(weight / (config.RRF_K + rank) for rank in range(1, depth + 1))


def ordered(scores: Mapping[K, float], tie: Callable[[K], object], first: int | None = None) -> list[K]:
    """Keys best first (the `first` best only, when given); equal scores fall to the lower `tie` (reading order
    of the corpus), then to the order of `scores`.

    Sorts (-score, tie, position, key) rows built by C iterators rather than calling a Python key function per
    key: a question sorts up to three lists of ~2,000 candidates, and the key function was 4% of a loaded
    server's CPU. The position keeps the order a stable sort by (-score, tie) gives and never compares keys.
    """
    rows = zip(map(operator.neg, scores.values()), map(tie, scores), itertools.count(), scores)
    best = sorted(rows) if first is None else heapq.nsmallest(first, rows)
    return [row[3] for row in best]


def best_first(scores: Mapping[K, float], tie: Callable[[K], object], likely: int) -> Iterator[K]:
    """The keys in `ordered`'s order, sorting all of them only if more than the `likely` first are read.

    A question fuses up to 2,000 candidates and reads 10 to 30 of them (a few more where copies are skipped);
    sorting them all three times was a millisecond of its CPU.
    """
    best = ordered(scores, tie, likely)
    yield from best
    if len(best) == likely:
        yield from ordered(scores, tie)[likely:]


def document_boost(
    scores: Mapping[K, float],
    doc_of: Callable[[K], Hashable],
    tie: Callable[[K], object],
    top: int = config.TAIL_BOOST_TOP,
    strength: float = config.TAIL_DOC_BOOST,
) -> dict[K, float]:
    """Each score times 1 + strength x (its document's share of the best `top` passages' score mass)."""
    mass: dict[Hashable, float] = {}
    for key in ordered(scores, tie, top):
        doc = doc_of(key)
        mass[doc] = mass.get(doc, 0.0) + scores[key]
    most = max(mass.values(), default=0.0) or 1.0
    return {key: v * (1.0 + strength * mass.get(doc_of(key), 0.0) / most) for key, v in scores.items()}


def with_neighbours(
    scores: Mapping[K, float],
    parents: Sequence[K],
    neighbour: Callable[[K, int], K | None],
    reach: int = config.TAIL_NEIGHBOURS,
    decay: float = config.TAIL_NEIGHBOUR_DECAY,
) -> tuple[dict[K, float], dict[K, K]]:
    """The passages up to `reach` places before and after each parent scored decay**distance times the parent's
    score, where that is higher than their own.

    Args:
        neighbour: (key, offset) -> the passage `offset` places away in the same document, if the search may
            return it, else None.
    Returns:
        The new scores, and for each passage lifted above its own score the parent that lifted it.
    """
    out = dict(scores)
    lifted: dict[K, K] = {}
    for p in parents:
        for d in range(1, reach + 1):
            score = scores[p] * decay**d
            for key in (neighbour(p, -d), neighbour(p, d)):
                if key is not None and score > out.get(key, 0.0):
                    out[key] = score
                    lifted[key] = p
    return out, lifted


@dataclass
class Passages(Generic[K]):
    """Chunks of one query's candidates, fetched a batch at a time and only as far as needed.

    The same article text often stands in several versions or copies of a law; it is shown once, at its best
    rank, with the other documents listed (`also`), so a list of k hits holds k different passages.
    """

    fetch: Callable[[list[K]], Mapping[K, Chunk]]  # keys -> chunks (keys it cannot find are left out)
    chunks: dict[K, Chunk] = field(default_factory=dict)
    keys: dict[K, str] = field(default_factory=dict)  # passage -> its text without whitespace
    also: dict[str, list[str]] = field(default_factory=dict)  # text of each picked passage -> other documents

    def _in_order(self, keys: Iterable[K], batch: int) -> Iterator[K]:
        rest = iter(keys)
        while part := list(itertools.islice(rest, batch)):
            todo = [key for key in part if key not in self.chunks]
            for key, chunk in self.fetch(todo).items():
                self.chunks[key] = chunk
                self.keys[key] = "".join(chunk.text.split())
            yield from (key for key in part if key in self.chunks)

    def distinct(self, keys: Iterable[K], n: int) -> list[K]:
        """The first n passages (best first) that differ from each other, without picking them."""
        texts: set[str] = set()
        out: list[K] = []
        if n <= 0:
            return out
        for key in self._in_order(keys, 2 * n):
            if self.keys[key] not in texts:
                texts.add(self.keys[key])
                out.append(key)
                if len(out) == n:
                    break
        return out

    def pick(self, keys: Iterable[K], n: int) -> list[K]:
        """The next n passages (best first) not picked before; copies are noted in `also`."""
        out: list[K] = []
        if n <= 0:
            return out
        for key in self._in_order(keys, 2 * n):
            text = self.keys[key]
            if text in self.also:
                self.also[text].append(self.chunks[key].doc_id)
                continue
            self.also[text] = []
            out.append(key)
            if len(out) == n:
                break
        return out


@dataclass
class Fused(Generic[K]):
    """A fused result list: passages in order with their shown scores, channel ranks and copies."""

    order: list[K]
    scores: dict[K, float]
    channels: dict[K, list[tuple[str, int]]]  # channel ranks; "near" = the result a lifted passage stands next to
    passages: Passages[K]

    def chunk(self, key: K) -> Chunk:
        return self.passages.chunks[key]

    def also_in(self, key: K) -> tuple[str, ...]:
        return tuple(self.passages.also[self.passages.keys[key]])


def fuse(
    ranked: Mapping[str, Sequence[K]],
    weights: Mapping[str, float],
    k: int,
    *,
    prior: Callable[[K], float],
    tie: Callable[[K], object],
    doc_of: Callable[[K], Hashable],
    neighbour: Callable[[K, int], K | None],
    fetch: Callable[[list[K]], Mapping[K, Chunk]],
    fused: Mapping[K, float] | None = None,
) -> Fused[K]:
    """The k best distinct passages: the head by weighted reciprocal rank, the tail by document and neighbourhood.

    Args:
        ranked: channel -> passages best first, `depth(k)` deep; a channel of config.TAIL_ONLY joins the tail only.
        prior, tie, doc_of: a passage's level prior, reading position and document.
        neighbour: see with_neighbours.
        fetch: keys -> chunks.
        fused: scores fused elsewhere (Milvus's own RRF), ordering the whole list; no channel lists, no tail.
    """
    passages: Passages[K] = Passages(fetch)
    if fused is None:
        head = rrf(
            {c: keys for c, keys in ranked.items() if c not in config.TAIL_ONLY}, weights, prior, config.CANDIDATES
        )
    else:
        head, ranked = {key: v * prior(key) for key, v in fused.items()}, {}
    first = min(k, config.HEAD) if ranked else k
    picked = passages.pick(best_first(head, tie, LIKELY * first), first)
    scores = {key: head[key] for key in picked}
    near: list[tuple[K, int]] = []
    if ranked and k > len(picked) == config.HEAD:
        deep = document_boost(rrf(ranked, weights, prior, config.TAIL_CANDIDATES), doc_of, tie)
        parents = passages.distinct(best_first(deep, tie, LIKELY * config.TAIL_PARENTS), config.TAIL_PARENTS)
        tail, lifted = with_neighbours(deep, parents, neighbour)
        shown = {passages.keys[key]: n for n, key in enumerate(picked, start=1)}
        floor = scores[picked[-1]]
        more = k - len(picked)
        below = (key for key in best_first(tail, tie, LIKELY * more + len(scores)) if key not in scores)
        for key in passages.pick(below, more):
            floor = scores[key] = min(tail[key], floor)  # another scale: never shown above the hit before it
            picked.append(key)
            shown[passages.keys[key]] = len(picked)
            parent = lifted.get(key)
            if parent is not None and passages.keys[parent] in shown:  # the parent, or its copy in another version
                near.append((key, shown[passages.keys[parent]]))
    return Fused(picked, scores, channel_ranks(ranked, picked, near), passages)


def channel_ranks(
    ranked: Mapping[str, Sequence[K]], keys: Sequence[K], near: Sequence[tuple[K, int]] = ()
) -> dict[K, list[tuple[str, int]]]:
    """Where each channel ranked each of `keys` (channel order, then the "near" entries), for the keys only.

    A question's channels list up to 2,000 passages; recording every one of them was 1.6 ms of a search's CPU
    for the 10 to 30 that are shown (dict(zip(...)) is built in C).
    """
    out: dict[K, list[tuple[str, int]]] = {}
    for channel, listed in ranked.items():
        rank_of = dict(zip(reversed(listed), range(len(listed), 0, -1)))  # a key listed twice: its first place
        for key in keys:
            rank = rank_of.get(key)
            if rank is not None:
                out.setdefault(key, []).append((channel, rank))
    for key, place in near:
        out.setdefault(key, []).append(("near", place))
    return out
