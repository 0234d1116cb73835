"""Cross-validation of the question tower and the reranker on STARD train (k folds of STARD question ids).

A STARD question's Chinese original and its English translation always fall in the same fold: each fold's
model never saw its test questions in either language, nor hard negatives mined from them. SciFact train
queries (other questions, another corpus) are in every fold's training when the config asks for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from kb import config
from kb.index.vectors import Index
from kb.search.hits import Hit
from kb.search.rerank import ACROSS, Rerankers
from kb.search.searcher import Searcher, adapted_passages, similarities
from kb.text.bilingual import glossary, with_translation
from kb.train.memory import memory_rankings, remember
from kb.train.passage import AdapterConfig, question_ids
from kb.train.passage import fit as fit_adapter
from kb.train.rerank import RerankConfig, Sample, sample
from kb.train.rerank import fit as fit_reranker
from kb.train.score import (
    bridge_rankings,
    fused,
    judged,
    learn_bridges,
    mean,
    ratio,
    score,
    translated_rankings,
    tuned_rankings,
)
from kb.train.senses import learn as learn_senses
from kb.train.senses import with_senses
from kb.train.tower import Head, Prepared, TrainConfig, folds, train, training_ids

log = logging.getLogger(__name__)
T = TypeVar("T")
Hits = dict[int, list[Hit]]


def _progress(fold: int) -> Callable[[str], None]:
    return lambda message: log.info("fold %d %s", fold + 1, message)


def training_sets(
    prep: Prepared, others: Sequence[Prepared], held: set[int], cfg: TrainConfig
) -> list[tuple[Prepared, list[int]]]:
    """What a fold's tower trains on: the STARD set without the held-out questions, then each other set (SciFact
    train, mined pairs: no STARD question, so in every fold) whose kinds the config asks for."""
    sets = [(prep, training_ids(prep, held, cfg))]
    for other in others:
        ids = training_ids(other, set(), cfg)
        if ids:
            sets.append((other, ids))
    return sets


def listed(pool: int) -> int:
    """How many fused candidates a question gets so that a reranker re-ordering `pool` of them sees all it would
    see in a search (the product fuses max(k, pool): kb.search.base), and the judged top 100 exist."""
    return max(100, pool)


def untrained_cache(cache: Path, index: Path, k: int = 100, weights: Mapping[str, float] | None = None) -> Path:
    """Where the untrained system's first k fused candidates over `index` are kept: one file per index folder, k
    and fusion weights, so a run over another index (the whole corpus, SciFact) or with other weights never reads
    the national one's. The shipped weights (config.WEIGHTS, or None) keep the name they had before weights
    could differ."""
    name = hashlib.sha256(str(index.resolve()).encode()).hexdigest()[:12]
    suffix = "" if k == 100 else f"-k{k}"
    if weights is not None and dict(weights) != config.WEIGHTS:
        suffix += "-w" + hashlib.sha256(json.dumps(dict(weights), sort_keys=True).encode()).hexdigest()[:8]
    return cache / f"rerank-untrained-{name}{suffix}.pkl"


def fusion_weights(changes: Mapping[str, float] | None) -> dict[str, float]:
    """The product's channel weights (config.WEIGHTS) with the changes an experiment asks for (`--weights`)."""
    return {**config.WEIGHTS, **(changes or {})}


def cached(path: Path, make: Callable[[], T]) -> T:
    """A value kept between runs (fitting the reranker again must not retrain the towers); the log names each file
    read, so a run's figures say which cached towers made them."""
    if path.is_file():
        log.info("read %s", path)
        with path.open("rb") as fh:
            return pickle.load(fh)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=5)
    return value


def _fold_key(prep: Prepared, others: Sequence[Prepared], cfg: TrainConfig) -> str:
    """Names a fold's cached hits after everything they depend on (config, questions, training sets).

    A config without pairs, and its questions, are written as before the pairs existed, so towers cached then
    keep their names. The index is not in the key: a run over another index with the same questions (the whole
    LawRefBook corpus) reads the fold towers and adapters trained over the first one (hard negatives from that
    index), each still trained without its fold's questions; docs/BENCHMARKS.md says which figures were made so.
    """
    config = {k: v for k, v in cfg.__dict__.items() if v or k != "pairs"}
    extra = [other.queries for other, _ in training_sets(prep, others, set(), cfg)[1:]] or [[]]
    about = json.dumps([config, prep.queries, *extra], ensure_ascii=False)
    return hashlib.sha256(about.encode()).hexdigest()[:12]


def fold_head(
    model: object,
    prep: Prepared,
    others: Sequence[Prepared],
    cfg: TrainConfig,
    k: int,
    f: int,
    held: set[int],
    cache: Path,
) -> tuple[Head, float]:
    """Fold f's tower (trained on everything but the held-out STARD questions) and its training seconds; kept in
    the cache in float32 so `cv` and `rerank-cv` share one training per fold."""
    path = cache / f"tower-k{k}-f{f + 1}-{_fold_key(prep, others, cfg)}.pkl"

    def trained() -> tuple[dict[str, np.ndarray], float]:
        t0 = time.perf_counter()
        head = train(model, training_sets(prep, others, held, cfg), cfg, _progress(f))
        return head.state(), time.perf_counter() - t0

    state, seconds = cached(path, trained)
    return Head.from_state(model, prep.start, state), seconds


def fold_passages(
    searcher: Searcher,
    prep: Prepared,
    others: Sequence[Prepared],
    cfg: TrainConfig,
    head: Head,
    adapter: AdapterConfig | None,
    k: int,
    f: int,
    held: set[int],
    cache: Path,
) -> Index | None:
    """The index's passage vectors through fold f's passage adapter (fitted against fold f's tower on the same
    training questions, kept in the cache), or None without an adapter (`adapter` None)."""
    if adapter is None:
        return None
    about = json.dumps(adapter.__dict__, sort_keys=True)
    key = hashlib.sha256(about.encode()).hexdigest()[:8]
    path = cache / f"passages-k{k}-f{f + 1}-{_fold_key(prep, others, cfg)}-{key}.pkl"

    def trained() -> dict[str, np.ndarray]:
        ids = question_ids(prep, held)
        return fit_adapter(prep, ids, head.encode([prep.hidden[i] for i in ids]), adapter, _progress(f))

    return adapted_passages(searcher.index, cached(path, trained))


def fold_memory(
    searcher: Searcher,
    prep: Prepared,
    train_ids: Sequence[int],
    train_vectors: np.ndarray,
    ids: Sequence[int],
    vectors: np.ndarray,
) -> dict[int, dict[str, list[int]]]:
    """The memory channel of held-out Chinese questions `ids` (their fold tower's vectors), as a search adds it to
    a Chinese question through the tower, from a memory of the training folds' STARD questions only."""
    memory = remember(prep, train_ids, train_vectors)
    return memory_rankings(searcher, prep, memory, ids, vectors)


def pooled(results: dict[str, list[tuple[dict[str, float], int]]]) -> dict[str, dict[str, float]]:
    """Per figure: Chinese ones fold-averaged like every earlier CV table; English and en100 ones pooled over
    questions (their counts differ between folds)."""
    out = {}
    for name, value in results.items():
        if name.startswith(("english", "en100")):
            total = sum(c for _, c in value)
            out[name] = {m: round(sum(fig[m] * c for fig, c in value) / max(total, 1), 4) for m in value[0][0]}
        else:
            out[name] = mean([fig for fig, _ in value])
    return out


def cross_validate(
    prep: Prepared,
    others: Sequence[Prepared],
    model: object,
    index: Path,
    k: int,
    cfg: TrainConfig,
    bridge_grid: list[tuple[float, int]],
    cache: Path,
    en100: set[int],
    weights: Mapping[str, float] | None = None,
    adapter: AdapterConfig | None = None,
) -> dict[str, object]:
    """Held-out figures with and without each fold's tower: the fold's Chinese questions, their English
    translations, and the en100 questions in both languages; and the learned bridges' grid (Chinese).

    en100: STARD positions of the 100 questions of the cross-lingual acceptance check.
    weights: channel weights to fuse with instead of the product's (an experiment: fusion_weights).
    adapter: also fit each fold's passage adapter (kb.train.passage) and rank the tower's questions with it.
    """
    searcher = Searcher(index, tuned=False, weights=fusion_weights(weights))  # packaged e5 alone
    results: dict[str, list[tuple[dict[str, float], int]]] = {}
    per_fold: list[dict[str, object]] = []
    train_seconds: list[float] = []
    for f, test in enumerate(folds(prep.n_stard, k, cfg.seed)):
        held = set(test.tolist())
        head, seconds = fold_head(model, prep, others, cfg, k, f, held, cache)
        train_seconds.append(seconds)
        ids = test.tolist()
        en_ids = prep.positions("en", held)
        en100_en = [i for i in en_ids if prep.group[i] in en100]
        en100_zh = [prep.group[i] for i in en100_en]
        asked = ids + en_ids
        passages = fold_passages(searcher, prep, others, cfg, head, adapter, k, f, held, cache)
        asked_vectors = head.encode([prep.hidden[i] for i in asked])
        with_tower = tuned_rankings(searcher, prep, asked, asked_vectors, passages)
        train_ids = [i for i in range(prep.n_stard) if i not in held]
        train_vectors = head.encode([prep.hidden[i] for i in train_ids])
        for i, memory_channel in fold_memory(
            searcher, prep, train_ids, train_vectors, ids, asked_vectors[: len(ids)]
        ).items():
            with_tower[i].update(memory_channel)
        hits = fused(searcher, prep, with_tower, tuned=True)
        base = fused(searcher, prep, {i: prep.ranked[i] for i in asked})
        figures = {
            "without": judged(prep, base, ids),
            "with": judged(prep, hits, ids),
            "english without": judged(prep, base, en_ids),
            "english with": judged(prep, hits, en_ids),
            "en100 chinese without": judged(prep, base, en100_zh),
            "en100 chinese with": judged(prep, hits, en100_zh),
            "en100 english without": judged(prep, base, en100_en),
            "en100 english with": judged(prep, hits, en100_en),
        }
        sizes = {"english": len(en_ids), "en100": len(en100_en)}
        bridges = learn_bridges(prep, [i for i in range(prep.n_stard) if i not in held]) if bridge_grid else None
        for w, n in bridge_grid:
            assert bridges is not None
            extra = {i: bridge_rankings(searcher, prep, bridges, i, n) for i in ids}
            figures[f"bridge w{w} n{n}"] = score(
                searcher, prep, {i: {**prep.ranked[i], **extra[i]} for i in ids}, {"bridge": w}
            )
            figures[f"tower + bridge w{w} n{n}"] = score(
                searcher, prep, {i: {**with_tower[i], **extra[i]} for i in ids}, {"bridge": w}, tuned=True
            )
        for name, fig in figures.items():
            results.setdefault(name, []).append((fig, sizes.get(name.split(" ")[0], len(ids))))
        per_fold.append(
            {
                "fold": f + 1,
                "questions": len(ids),
                **sizes,
                "train_seconds": round(seconds, 1),
                **{name: {m: round(v, 4) for m, v in fig.items()} for name, fig in figures.items()},
            }
        )
        log.info("fold %d: %s", f + 1, json.dumps(per_fold[-1]))
    figures_all = pooled(results)
    out: dict[str, object] = {
        "folds": k,
        "config": cfg.__dict__,
        "adapter": adapter.__dict__ if adapter else None,
        "weights": searcher.weights,
        "tower_weights": searcher.tower_weights,
        **figures_all,
    }
    r10 = {name: fig["recall@10"] for name, fig in figures_all.items()}
    out["en100 ratio recall@10 without"] = ratio(r10["en100 english without"], r10["en100 chinese without"])
    out["en100 ratio recall@10 with"] = ratio(r10["en100 english with"], r10["en100 chinese with"])
    out["train_seconds_per_fold"] = round(sum(train_seconds) / k, 1)
    out["per_fold"] = per_fold
    return out


def gold_chunks(searcher: Searcher, prep: Prepared, i: int) -> set[str]:
    """The chunk ids of question i's gold passages in the searcher's index (a sample's positives)."""
    return set(searcher.index.chunk_ids([int(r) for r in prep.gold[i]]))


def candidate_samples(
    prep: Prepared,
    searcher: Searcher,
    head: Head,
    pool: int,
    base: Hits | None = None,
    sim: bool = True,
    passages: Index | None = None,
    tower: bool = True,
) -> list[Sample]:
    """Reranker training samples of every question of a set: its first `pool` fused candidates from the untrained
    system (`base`, or fused now from the prepared rankings) and, with `tower`, from the tower `head` (with the
    passage vectors `passages` through its adapter, if given), with the sim feature read from the tower's question
    vector as a search reads it (sim=False leaves it 0, so the scorer gives it no weight)."""
    ids = list(range(prep.n_stard or len(prep.queries)))
    gold_ids = [gold_chunks(searcher, prep, i) for i in ids]
    vectors = head.encode([prep.hidden[i] for i in ids])
    length = listed(pool)
    lists = [base if base is not None else fused(searcher, prep, {i: prep.ranked[i] for i in ids}, length)]
    if tower:
        lists.append(fused(searcher, prep, tuned_rankings(searcher, prep, ids, vectors, passages), length, tuned=True))
    return [
        sample(
            prep.queries[i],
            hits[i],
            gold_ids[n],
            pool,
            partial(similarities, searcher.index, vectors[n], passages=passages) if sim else None,
        )
        for hits in lists
        for n, i in enumerate(ids)
    ]


def cross_samples(
    prep: Prepared,
    searcher: Searcher,
    ids: Sequence[int],
    vectors: Mapping[int, np.ndarray],
    base: Hits,
    pool: int,
    passages: Index | None = None,
) -> list[Sample]:
    """The cross-language scorer's ("en>zh") training samples: each English question of `ids` with its glossary
    translation (as a search reads it), its first `pool` fused candidates from the untrained system (`base`;
    like the Chinese scorer, not the tower's, which was trained on these questions) and the sim feature from the
    tower's question vector against the passages through its adapter (`passages`), as a search reads it."""
    gold = {i: gold_chunks(searcher, prep, i) for i in ids}
    return [
        sample(
            with_translation(prep.queries[i], searcher.index.bm25.df),
            base[i],
            gold[i],
            pool,
            partial(similarities, searcher.index, vectors[i], passages=passages),
        )
        for i in ids
    ]


def rerank_cv(
    prep: Prepared,
    others: Sequence[Prepared],
    model: object,
    index: Path,
    k: int,
    cfg: TrainConfig,
    rcfg: RerankConfig,
    cache: Path,
    en100: set[int],
    definitions: Prepared | None = None,
    weights: Mapping[str, float] | None = None,
    adapter: AdapterConfig | None = None,
) -> dict[str, object]:
    """Fold-averaged figures: untrained system, tower, each with the reranker (Chinese questions), and the English
    translations of the fold's questions with and without the fold's tower (all of them, and the en100 ones).

    For each fold the tower is trained on the other folds' questions (and SciFact train, mined pairs, as cfg asks); the
    reranker is fitted on the other folds' Chinese candidates from the untrained system (and from that tower, with
    rcfg.tower_candidates), and on the definition pairs' (no STARD question, so in every fold), if given. With
    rcfg.across, a cross-language scorer ("en>zh") is fitted on the other folds' English translations
    (cross_samples) and the fold's English questions are judged with it too.
    en100: STARD positions of the 100 questions of the cross-lingual acceptance check.
    weights: channel weights to fuse with instead of the product's (an experiment: fusion_weights).
    adapter: also fit each fold's passage adapter (kb.train.passage); the tower's candidates are ranked with it.
    """
    searcher = Searcher(index, tuned=False, weights=fusion_weights(weights))
    n = prep.n_stard
    english = prep.positions("en")
    gold_ids = {i: gold_chunks(searcher, prep, i) for i in range(n)}
    t0 = time.perf_counter()
    length = listed(rcfg.pool)
    base = cached(
        untrained_cache(cache, index, length, searcher.weights),
        lambda: fused(searcher, prep, {i: prep.ranked[i] for i in range(n)}, length),
    )
    base_en = fused(searcher, prep, {i: prep.ranked[i] for i in english}, length)
    translated = {i: with_translation(prep.queries[i], searcher.index.bm25.df) for i in english}
    log.info("untrained system's candidates (%.0fs)", time.perf_counter() - t0)
    results: dict[str, list[tuple[dict[str, float], int]]] = {}
    per_fold: list[dict[str, object]] = []
    for f, test in enumerate(folds(n, k, cfg.seed)):
        held = set(test.tolist())
        train_ids = [i for i in range(n) if i not in held]
        ids = test.tolist()
        en_ids = prep.positions("en", held)
        en100_ids = [i for i in en_ids if prep.group[i] in en100]

        head, tower_seconds = fold_head(model, prep, others, cfg, k, f, held, cache)
        asked_ids = list(range(n)) + english  # every English question: the cross-language scorer fits on the rest
        vectors = dict(zip(asked_ids, head.encode([prep.hidden[i] for i in asked_ids])))
        passages = fold_passages(searcher, prep, others, cfg, head, adapter, k, f, held, cache)
        ranked = tuned_rankings(searcher, prep, asked_ids, np.stack(list(vectors.values())), passages)
        train_vectors = np.stack([vectors[i] for i in train_ids])
        test_vectors = np.stack([vectors[i] for i in ids])
        for i, memory_channel in fold_memory(searcher, prep, train_ids, train_vectors, ids, test_vectors).items():
            ranked[i].update(memory_channel)
        tuned = fused(searcher, prep, ranked, length, tuned=True)
        # The sim feature reads the fold tower's question vector and adapted passages, as a search does.
        sim = {i: partial(similarities, searcher.index, vectors[i], passages=passages) for i in asked_ids}
        extra = candidate_samples(definitions, searcher, head, rcfg.pool, passages=passages) if definitions else []
        model_rr = fit_reranker(
            [
                sample(prep.queries[i], hits[i], gold_ids[i], rcfg.pool, sim[i])
                for hits in ((base, tuned) if rcfg.tower_candidates else (base,))
                for i in train_ids
            ]
            + extra,
            rcfg,
        )
        zh100 = [prep.group[i] for i in en100_ids]
        scorers = {"zh": model_rr}
        if rcfg.across:  # fitted on the other folds' English questions
            train_en = [i for i in english if prep.group[i] not in held]
            scorers["en" + ACROSS + "zh"] = fit_reranker(
                cross_samples(prep, searcher, train_en, vectors, base_en, rcfg.pool, passages), rcfg
            )
        rerankers = Rerankers(scorers)

        def reranked(hits: Hits, qs: list[int]) -> Hits:
            return {i: rerankers.rerank(prep.queries[i], hits[i], sim[i], translated.get(i)) for i in qs}

        asked: dict[str, tuple[Hits, list[int]]] = {  # figure -> (hits, questions)
            "untrained": (base, ids),
            "untrained + reranker": (reranked(base, ids), ids),
            "tower": (tuned, ids),
            "tower + reranker": (reranked(tuned, ids), ids),
            "english untrained": (base_en, en_ids),
            "english tower": (tuned, en_ids),
            "en100 chinese untrained": (base, zh100),
            "en100 chinese tower": (tuned, zh100),
            "en100 chinese tower + reranker": (reranked(tuned, zh100), zh100),
            "en100 english untrained": (base_en, en100_ids),
            "en100 english tower": (tuned, en100_ids),
        }
        if rcfg.across:
            asked["english tower + reranker"] = (reranked(tuned, en_ids), en_ids)
            asked["en100 english tower + reranker"] = (reranked(tuned, en100_ids), en100_ids)
        figures = {name: judged(prep, hits, q) for name, (hits, q) in asked.items()}
        for name, fig in figures.items():
            results.setdefault(name, []).append((fig, len(asked[name][1])))
        per_fold.append(
            {
                "fold": f + 1,
                "questions": len(ids),
                "english": len(en_ids),
                "en100": len(en100_ids),
                "tower_seconds": round(tower_seconds, 1),
                **{name: {m: round(v, 4) for m, v in fig.items()} for name, fig in figures.items()},
            }
        )
        log.info("fold %d: %s", f + 1, json.dumps(per_fold[-1]))
    figures_all = pooled(results)
    out: dict[str, object] = {
        "folds": k,
        "config": cfg.__dict__,
        "rerank": rcfg.__dict__,
        "adapter": adapter.__dict__ if adapter else None,
        "weights": searcher.weights,
        "tower_weights": searcher.tower_weights,
        **figures_all,
    }
    r10 = {name: fig["recall@10"] for name, fig in figures_all.items()}
    for zh_name in ("tower", "tower + reranker"):
        out[f"en100 ratio recall@10 (english tower / chinese {zh_name})"] = ratio(
            r10["en100 english tower"], r10[f"en100 chinese {zh_name}"]
        )
    if rcfg.across:  # what a search gives: both languages with their rerankers
        out["en100 ratio recall@10 (english tower + reranker / chinese tower + reranker)"] = ratio(
            r10["en100 english tower + reranker"], r10["en100 chinese tower + reranker"]
        )
    out["per_fold"] = per_fold
    return out


def senses_cv(
    prep: Prepared, others: Sequence[Prepared], model: object, index: Path, k: int, cfg: TrainConfig, cache: Path
) -> dict[str, object]:
    """Held-out figures of the English translations with the `bm25_x` channel translated by the dictionary and by
    the dictionary with senses learned from the other folds' translation pairs (kb.train.senses), through the
    untrained system's fusion and the fold tower's (fusion only: the cross-language scorer was fitted on the
    dictionary's translation)."""
    searcher = Searcher(index, tuned=False)
    english = prep.positions("en")
    dictionary = glossary()
    results: dict[str, list[tuple[dict[str, float], int]]] = {}
    per_fold: list[dict[str, object]] = []
    for f, test in enumerate(folds(prep.n_stard, k, cfg.seed)):
        held = set(test.tolist())
        ids = [i for i in english if prep.group[i] in held]
        learned = learn_senses(
            (prep.queries[i], prep.queries[prep.group[i]]) for i in english if prep.group[i] not in held
        )
        head, _ = fold_head(model, prep, others, cfg, k, f, held, cache)
        tuned = tuned_rankings(searcher, prep, ids, head.encode([prep.hidden[i] for i in ids]))
        figures = {}
        for name, table in (("dictionary", dictionary), ("learned", with_senses(dictionary, learned))):
            bm25_x = {i: translated_rankings(searcher, prep, table, i) for i in ids}
            for system, ranked, through in (("untrained", prep.ranked, False), ("tower", tuned, True)):
                # the prepared bm25_x (the product's glossary) gives way to this one's, or to none without terms
                lists = {i: {**{c: r for c, r in ranked[i].items() if c != "bm25_x"}, **bm25_x[i]} for i in ids}
                figures[f"english {system}, {name}"] = judged(prep, fused(searcher, prep, lists, tuned=through), ids)
        for name, fig in figures.items():
            results.setdefault(name, []).append((fig, len(ids)))
        per_fold.append(
            {
                "fold": f + 1,
                "english": len(ids),
                "learned keys": len(learned),
                **{name: {m: round(v, 4) for m, v in fig.items()} for name, fig in figures.items()},
            }
        )
        log.info("fold %d: %s", f + 1, json.dumps(per_fold[-1], ensure_ascii=False))
    return {"folds": k, "config": cfg.__dict__, **pooled(results), "per_fold": per_fold}
