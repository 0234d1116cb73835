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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kb.search.hits import Hit
from kb.search.searcher import Searcher
from kb.train.rerank import RerankConfig, sample
from kb.train.rerank import fit as fit_reranker
from kb.train.score import bridge_rankings, fused, judged, learn_bridges, mean, ratio, score, tuned_rankings
from kb.train.tower import Prepared, TrainConfig, folds, train, training_ids

log = logging.getLogger(__name__)
T = TypeVar("T")
Hits = dict[int, list[Hit]]


def _progress(fold: int) -> Callable[[str], None]:
    return lambda message: log.info("fold %d %s", fold + 1, message)


def training_sets(
    prep: Prepared, sci: Prepared | None, held: set[int], cfg: TrainConfig
) -> list[tuple[Prepared, list[int]]]:
    """What a fold's tower trains on: the STARD set without the held-out questions, and SciFact train if asked."""
    sets = [(prep, training_ids(prep, held, cfg))]
    if cfg.scifact and sci is not None:
        sets.append((sci, training_ids(sci, set(), cfg)))
    return sets


def cached(path: Path, make: Callable[[], T]) -> T:
    """A value kept between runs (fitting the reranker again must not retrain the towers)."""
    if path.is_file():
        with path.open("rb") as fh:
            return pickle.load(fh)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=5)
    return value


def cross_validate(
    prep: Prepared,
    sci: Prepared | None,
    model: object,
    index: Path,
    k: int,
    cfg: TrainConfig,
    bridge_grid: list[tuple[float, int]],
) -> dict[str, object]:
    """Fold-averaged Chinese figures with and without the tower, and the learned bridges' grid."""
    searcher = Searcher(index, tuned=False)  # the current system: packaged e5 alone
    base, tuned, per_fold, seconds = [], [], [], []
    grid: dict[str, list[dict[str, float]]] = {}
    for f, test in enumerate(folds(prep.n_stard, k, cfg.seed)):
        t0 = time.perf_counter()
        held = set(test.tolist())
        head = train(model, training_sets(prep, sci, held, cfg), cfg, _progress(f))
        seconds.append(time.perf_counter() - t0)
        ids = test.tolist()
        b = score(searcher, prep, {i: prep.ranked[i] for i in ids})
        with_tower = tuned_rankings(searcher, prep, ids, head.encode([prep.hidden[i] for i in ids]))
        t = score(searcher, prep, with_tower)
        bridges = learn_bridges(prep, [i for i in range(prep.n_stard) if i not in held])
        for w, n in bridge_grid:
            extra = {i: bridge_rankings(searcher, prep, bridges, i, n) for i in ids}
            key = f"bridge w{w} n{n}"
            grid.setdefault(key, []).append(
                score(searcher, prep, {i: {**prep.ranked[i], **extra[i]} for i in ids}, {"bridge": w})
            )
            grid.setdefault("tower + " + key, []).append(
                score(searcher, prep, {i: {**with_tower[i], **extra[i]} for i in ids}, {"bridge": w})
            )
        base.append(b)
        tuned.append(t)
        per_fold.append(
            {
                "fold": f + 1,
                "questions": len(ids),
                "train_seconds": round(seconds[-1], 1),
                "without": {m: round(v, 4) for m, v in b.items()},
                "with": {m: round(v, 4) for m, v in t.items()},
            }
        )
        log.info("fold %d: R@10 %.4f -> %.4f", f + 1, b["recall@10"], t["recall@10"])
    return {
        "folds": k,
        "config": cfg.__dict__,
        "without": mean(base),
        "with": mean(tuned),
        "train_seconds_per_fold": round(sum(seconds) / len(seconds), 1),
        "grid": {key: mean(results) for key, results in grid.items()},
        "per_fold": per_fold,
    }


def _fold_key(prep: Prepared, sci: Prepared | None, cfg: TrainConfig) -> str:
    """Names a fold's cached hits after everything they depend on (config, questions, training sets)."""
    about = json.dumps([cfg.__dict__, prep.queries, sci.queries if sci and cfg.scifact else []], ensure_ascii=False)
    return hashlib.sha256(about.encode()).hexdigest()[:12]


def rerank_cv(
    prep: Prepared,
    sci: Prepared | None,
    model: object,
    index: Path,
    k: int,
    cfg: TrainConfig,
    rcfg: RerankConfig,
    cache: Path,
    en100: set[int],
) -> dict[str, object]:
    """Fold-averaged figures: untrained system, tower, each with the reranker (Chinese questions), and the English
    translations of the fold's questions with and without the fold's tower (all of them, and the en100 ones).

    For each fold the tower is trained on the other folds' questions (and SciFact train when cfg.scifact); the
    reranker is fitted on the other folds' Chinese candidates from the untrained system and from that tower.
    en100: STARD positions of the 100 questions of the cross-lingual acceptance check.
    """
    searcher = Searcher(index, tuned=False)
    n = prep.n_stard
    english = prep.positions("en")
    gold_ids = {i: set(searcher.index.chunk_ids([int(r) for r in prep.gold[i]])) for i in range(n)}
    t0 = time.perf_counter()
    base = cached(cache / "rerank-untrained.pkl", lambda: fused(searcher, prep, {i: prep.ranked[i] for i in range(n)}))
    base_en = fused(searcher, prep, {i: prep.ranked[i] for i in english})
    base_samples = {i: sample(prep.queries[i], base[i], gold_ids[i], rcfg.pool) for i in range(n)}
    log.info("untrained system's candidates and features (%.0fs)", time.perf_counter() - t0)
    results: dict[str, list[tuple[dict[str, float], int]]] = {}
    per_fold: list[dict[str, object]] = []
    key = _fold_key(prep, sci, cfg)
    for f, test in enumerate(folds(n, k, cfg.seed)):
        held = set(test.tolist())
        train_ids = [i for i in range(n) if i not in held]
        ids = test.tolist()
        en_ids = prep.positions("en", held)
        en100_ids = [i for i in en_ids if prep.group[i] in en100]
        t1 = time.perf_counter()

        def tower_hits(f: int = f, held: set[int] = held, en_ids: list[int] = en_ids) -> tuple[Hits, float]:
            head = train(model, training_sets(prep, sci, held, cfg), cfg, _progress(f))
            asked = list(range(n)) + en_ids
            ranked = tuned_rankings(searcher, prep, asked, head.encode([prep.hidden[i] for i in asked]))
            return fused(searcher, prep, ranked), time.perf_counter() - t1

        tuned, tower_seconds = cached(cache / f"rerank-tower-k{k}-f{f + 1}-{key}.pkl", tower_hits)
        tuned_samples = {i: sample(prep.queries[i], tuned[i], gold_ids[i], rcfg.pool) for i in train_ids}
        model_rr = fit_reranker([base_samples[i] for i in train_ids] + [tuned_samples[i] for i in train_ids], rcfg)
        zh100 = [prep.group[i] for i in en100_ids]
        asked: dict[str, tuple[Hits, list[int]]] = {  # figure -> (hits, questions)
            "untrained": (base, ids),
            "untrained + reranker": ({i: model_rr.rerank(prep.queries[i], base[i]) for i in ids}, ids),
            "tower": (tuned, ids),
            "tower + reranker": ({i: model_rr.rerank(prep.queries[i], tuned[i]) for i in ids}, ids),
            "english untrained": (base_en, en_ids),
            "english tower": (tuned, en_ids),
            "en100 chinese untrained": (base, zh100),
            "en100 chinese tower": (tuned, zh100),
            "en100 chinese tower + reranker": ({g: model_rr.rerank(prep.queries[g], tuned[g]) for g in zh100}, zh100),
            "en100 english untrained": (base_en, en100_ids),
            "en100 english tower": (tuned, en100_ids),
        }
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
    out: dict[str, object] = {"folds": k, "config": cfg.__dict__, "rerank": rcfg.__dict__}
    for name, value_ in results.items():
        # Chinese figures are fold-averaged like every earlier CV table; the English and en100 ones are pooled
        # over questions (their counts differ between folds).
        pooled = name.startswith(("english", "en100"))
        total = sum(c for _, c in value_)
        out[name] = (
            {m: round(sum(fig[m] * c for fig, c in value_) / max(total, 1), 4) for m in value_[0][0]}
            if pooled
            else mean([fig for fig, _ in value_])
        )
    pooled_r10 = {
        name: sum(fig["recall@10"] * c for fig, c in value_) / max(sum(c for _, c in value_), 1)
        for name, value_ in results.items()
    }
    for zh_name in ("tower", "tower + reranker"):
        out[f"en100 ratio recall@10 (english tower / chinese {zh_name})"] = ratio(
            pooled_r10["en100 english tower"], pooled_r10[f"en100 chinese {zh_name}"]
        )
    out["per_fold"] = per_fold
    return out
