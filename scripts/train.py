"""Train the question tower (kb.embed.tower) on STARD train against a LawRefBook index, cross-validate it, ship it.

    python scripts/train.py prepare --index .kb-cache/bench/stard-lawrefbook-national-e5/index
    python scripts/train.py cv --folds 5            # held-out figures, with and without the tower
    python scripts/train.py fit                     # train on every question, write kb/weights/...

`prepare` reads the index once (passage vectors, texts, the current system's rankings) and caches it; `cv`
trains one model per fold on the other folds' questions only (hard negatives are mined from those questions'
rankings alone) and scores the fold's questions through the product's own fusion (Searcher.fuse).
Fixed seeds throughout; the same command gives the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from kb import config
from kb.bench.evaluate import _stard_judge, _stard_rows
from kb.catalog.filters import Filters
from kb.embed import tower as qtower
from kb.errors import KbError
from kb.index.vectors import nearest
from kb.search import rerank as reranker
from kb.search.fusion import depth
from kb.search.hits import Hit
from kb.search.searcher import Searcher, _top, allowed_rows
from kb.text.lexical import tokenize
from kb.train.bridges import Bridges, learn
from kb.train.rerank import RerankConfig, sample
from kb.train.rerank import fit as fit_reranker
from kb.train.tower import Prepared, TrainConfig, definition_pairs, folds, gold_rows, query_states, train

log = logging.getLogger("train")
DEFAULT_INDEX = config.BENCH_DIR / "stard-lawrefbook-national-e5" / "index"
CACHE = config.ROOT / ".kb-cache" / "train"


def _fp32_e5() -> object:
    from kb.embed.e5torch import TorchE5

    return TorchE5(threads=int(os.environ.get("KB_TRAIN_THREADS", "1")), bf16=False)


def prepare(index: Path, layers: int, out: Path, n_definitions: int = 2000) -> Prepared:
    """Read the index and the questions once; cache everything training and evaluation need."""
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=False)  # the current system: packaged e5 alone
    loaded = searcher.index
    allowed = allowed_rows(loaded, Filters())
    rows = _stard_rows(None)
    n = loaded.n_rows
    live = [int(r) for r in np.flatnonzero(loaded.row_live)]  # rows replaced by a later build have no chunk
    chunks = dict(zip(live, loaded.store.chunks(live)))
    texts = [chunks[r].text if r in chunks else "" for r in range(n)]
    pairs = definition_pairs(texts, allowed & loaded.row_live, n_definitions)
    queries = [row["query"] for row in rows] + [q for q, _ in pairs]
    gold = gold_rows(
        texts,
        allowed & loaded.row_live,
        [[g["text"] for g in row["gold"]] for row in rows] + [[text] for _, text in pairs],
    )
    log.info(
        "gold rows found for %d of %d questions (%.0fs)",
        sum(1 for g in gold if len(g)),
        len(rows),
        time.perf_counter() - t0,
    )
    ranked = [row_rankings(searcher, searcher.rankings(q, depth(100))) for q in queries]
    log.info("current system's rankings done (%.0fs)", time.perf_counter() - t0)
    passages = loaded.vectors["dense"].reconstruct_n(0, n).astype(np.float32)
    model = _fp32_e5()
    hidden = query_states(model, queries, 12 - layers)
    prep = Prepared(queries, hidden, 12 - layers, gold, ranked, passages, allowed, len(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        pickle.dump(prep, fh, protocol=5)
    log.info(
        "prepared %d questions and %d definition pairs in %.0fs -> %s",
        len(rows),
        len(pairs),
        time.perf_counter() - t0,
        out,
    )
    return prep


def row_rankings(searcher: Searcher, ranked: dict[str, list[str]]) -> dict[str, list[int]]:
    """Channel rankings as row numbers of the searcher's index (what training mines negatives from)."""
    return {channel: searcher.index.rows_of(ids) for channel, ids in ranked.items()}


def dense_rankings(searcher: Searcher, prep: Prepared, vector: np.ndarray) -> dict[str, list[int]]:
    """The dense channels (the question's language and the other) ranked for one question vector."""
    loaded, out = searcher.index, {}
    for name, part in (("dense", loaded.columns.zh), ("dense_x", ~loaded.columns.zh)):
        mask = prep.allowed & part
        if mask.any():
            out[name] = nearest(loaded.vectors["dense"], vector, mask, depth(100), loaded.row_order)
    return out


def bridge_rankings(searcher: Searcher, prep: Prepared, bridges: Bridges, i: int, n: int) -> dict[str, list[int]]:
    """The bridge channel for question i: BM25 over the legal terms its words point to."""
    terms = bridges.expand(tokenize(prep.queries[i]), n)
    scores = searcher.index.bm25.scores(terms) if terms else None
    if scores is None:
        return {}
    return {"bridge": _top(scores, prep.allowed, depth(100), searcher.index.row_order)}


def score(
    searcher: Searcher,
    prep: Prepared,
    ids: list[int],
    ranked: list[dict[str, list[int]]],
    weights: dict[str, float] | None = None,
    per: dict[int, float] | None = None,
) -> dict[str, float]:
    """STARD figures of questions `ids` through the product's fusion, given each question's channel rankings.

    per: filled with each question's Recall@10.
    """
    rows = _stard_rows(None)
    saved = searcher.weights
    searcher.weights = {**saved, **(weights or {})}
    total = {"recall@5": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    chars: list[int] = []
    try:
        for i, r in zip(ids, ranked):
            by_id = {channel: searcher.index.chunk_ids(rows) for channel, rows in r.items()}
            hits = searcher.fuse(by_id, prep.queries[i], 100)
            recall, rr = _stard_judge([h.chunk.text for h in hits], rows[i])
            for k in (5, 10, 100):
                total[f"recall@{k}"] += recall[k]
            total["mrr@10"] += rr
            chars.extend(len(h.chunk.text) for h in hits[:10])
            if per is not None:
                per[i] = recall[10]
    finally:
        searcher.weights = saved
    out = {k: v / max(len(ids), 1) for k, v in total.items()}
    out["mean_passage_chars"] = sum(chars) / max(len(chars), 1)
    return out


def learn_bridges(prep: Prepared, ids: list[int]) -> Bridges:
    """Bridges from STARD questions `ids` and their gold articles."""
    rows = _stard_rows(None)
    return learn(
        [tokenize(prep.queries[i]) for i in ids],
        [[t for g in rows[i]["gold"] for t in tokenize(g["text"])] for i in ids],
    )


EN100 = Path(__file__).resolve().parent / "data" / "stard-train-en100.tsv"


def _en100_ids() -> list[int]:
    by_id = {row["id"]: i for i, row in enumerate(_stard_rows(None))}
    return [by_id[int(line.split("\t", 1)[0])] for line in EN100.read_text(encoding="utf-8").splitlines() if line]


def cross_lingual(prep: Prepared, index: Path) -> dict[str, object]:
    """100 STARD train questions asked in English (our translations) against the same questions in Chinese.

    English questions do not go through the tower (kb.embed.tower.TUNED_LANGS), so nothing here was trained on.
    """
    searcher = Searcher(index, tuned=False)
    by_id = {row["id"]: i for i, row in enumerate(_stard_rows(None))}
    pairs = [line.split("\t", 1) for line in EN100.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [by_id[int(qid)] for qid, _ in pairs]
    english = [searcher.rankings(text.strip(), depth(100)) for _, text in pairs]
    zh = score(searcher, prep, ids, [prep.ranked[i] for i in ids])
    rows = _stard_rows(None)
    total = {"recall@5": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for (_, text), i, ranked in zip(pairs, ids, english):
        hits = searcher.fuse(ranked, text.strip(), 100)
        recall, rr = _stard_judge([h.chunk.text for h in hits], rows[i])
        for k in (5, 10, 100):
            total[f"recall@{k}"] += recall[k]
        total["mrr@10"] += rr
    en = {k: round(v / len(ids), 4) for k, v in total.items()}
    return {
        "questions": len(ids),
        "chinese": {k: round(v, 4) for k, v in zh.items()},
        "english": en,
        "ratio_recall@10": round(en["recall@10"] / max(zh["recall@10"], 1e-9), 3),
    }


def _load(path: Path) -> Prepared:
    if not path.is_file():
        raise KbError(f"{path} not found: run `python scripts/train.py prepare` first")
    with path.open("rb") as fh:
        return pickle.load(fh)


def _mean(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([r[k] for r in results])), 4) for k in results[0]}


def cross_validate(
    prep: Prepared, index: Path, k: int, cfg: TrainConfig, bridge_grid: list[tuple[float, int]]
) -> dict[str, object]:
    """Fold-averaged figures with and without the tower; each fold's model never saw its test questions."""
    searcher = Searcher(index, tuned=False)  # the current system: packaged e5 alone
    model = _fp32_e5()
    base, tuned, per_fold, seconds = [], [], [], []
    grid: dict[str, list[dict[str, float]]] = {}
    held_out_r10: dict[int, float] = {}  # each question's Recall@10 with the tower of the fold that held it out
    synthetic = list(range(prep.n_stard, len(prep.queries))) if cfg.definitions else []
    for f, test in enumerate(folds(prep.n_stard, k, cfg.seed)):
        t0 = time.perf_counter()
        held = set(test.tolist())
        head = train(
            model,
            prep,
            [i for i in range(prep.n_stard) if i not in held] + synthetic,
            cfg,
            progress=lambda msg, f=f: log.info("fold %d %s", f + 1, msg),
        )
        seconds.append(time.perf_counter() - t0)
        ids = test.tolist()
        b = score(searcher, prep, ids, [prep.ranked[i] for i in ids])
        vectors = head.encode([prep.hidden[i] for i in ids])
        t = score(
            searcher,
            prep,
            ids,
            [{**prep.ranked[i], **dense_rankings(searcher, prep, v)} for i, v in zip(ids, vectors)],
            per=held_out_r10,
        )
        bridges = learn_bridges(prep, [i for i in range(prep.n_stard) if i not in held])
        extra = {
            i: {n: bridge_rankings(searcher, prep, bridges, i, n) for n in {n for _, n in bridge_grid}} for i in ids
        }
        for w, n in bridge_grid:
            key = f"bridge w{w} n{n}"
            grid.setdefault(key, []).append(
                score(searcher, prep, ids, [{**prep.ranked[i], **extra[i][n]} for i in ids], {"bridge": w})
            )
            grid.setdefault("tower + " + key, []).append(
                score(
                    searcher,
                    prep,
                    ids,
                    [
                        {**prep.ranked[i], **dense_rankings(searcher, prep, v), **extra[i][n]}
                        for i, v in zip(ids, vectors)
                    ],
                    {"bridge": w},
                )
            )
        base.append(b)
        tuned.append(t)
        per_fold.append(
            {
                "fold": f + 1,
                "questions": len(ids),
                "train_seconds": round(seconds[-1], 1),
                "without": {k2: round(v, 4) for k2, v in b.items()},
                "with": {k2: round(v, 4) for k2, v in t.items()},
            }
        )
        log.info(
            "fold %d: R@10 %.4f -> %.4f, R@100 %.4f -> %.4f",
            f + 1,
            b["recall@10"],
            t["recall@10"],
            b["recall@100"],
            t["recall@100"],
        )
    return {
        "folds": k,
        "config": cfg.__dict__,
        "without": _mean(base),
        "with": _mean(tuned),
        "train_seconds_per_fold": round(float(np.mean(seconds)), 1),
        "grid": {key: _mean(results) for key, results in grid.items()},
        "en100_chinese_recall@10_with_tower": round(float(np.mean([held_out_r10[i] for i in _en100_ids()])), 4),
        "per_fold": per_fold,
    }


def fit(prep: Prepared, cfg: TrainConfig, out: Path) -> dict[str, object]:
    """Train on every question and write the weight file."""
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    ids = list(range(len(prep.queries) if cfg.definitions else prep.n_stard))
    head = train(_fp32_e5(), prep, ids, cfg, progress=log.info)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One metadata entry: safetensors writes several in hash order, which would change the file's sha256 per run.
    save_file(head.tensors(), str(out), metadata={"scripts/train.py": json.dumps(cfg.__dict__, sort_keys=True)})
    return {
        "file": str(out),
        "sha256": qtower.sha256_of(out),
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _judged(hits_by_q: dict[int, list[Hit]], ids: list[int]) -> dict[str, float]:
    rows = _stard_rows(None)
    total = {"recall@5": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    chars: list[int] = []
    for i in ids:
        recall, rr = _stard_judge([h.chunk.text for h in hits_by_q[i]], rows[i])
        for k in (5, 10, 100):
            total[f"recall@{k}"] += recall[k]
        total["mrr@10"] += rr
        chars.extend(len(h.chunk.text) for h in hits_by_q[i][:10])
    out = {k: v / max(len(ids), 1) for k, v in total.items()}
    out["mean_passage_chars"] = sum(chars) / max(len(chars), 1)
    return out


def _fused(searcher: Searcher, prep: Prepared, ranked: dict[int, dict[str, list[int]]]) -> dict[int, list[Hit]]:
    """Each question's first 100 fused hits (the product's fusion) from channel rankings as rows."""
    return {
        i: searcher.fuse({c: searcher.index.chunk_ids(rows) for c, rows in r.items()}, prep.queries[i], 100)
        for i, r in ranked.items()
    }


def _cached(path: Path, make: Callable[[], dict[int, list[Hit]]]) -> dict[int, list[Hit]]:
    """Fused hits kept between runs (fitting the reranker again must not retrain the towers)."""
    if path.is_file():
        with path.open("rb") as fh:
            return pickle.load(fh)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=5)
    return value


def rerank_cv(prep: Prepared, index: Path, k: int, cfg: TrainConfig, rcfg: RerankConfig) -> dict[str, object]:
    """Fold-averaged figures of the reranker over the system without and with the question tower.

    For each fold: the tower is trained on the other folds' questions; the reranker is fitted on the other folds'
    questions' candidates from the untrained system and from that fold's tower (in-sample for those questions,
    never for the fold's test questions), then scored on the fold's test questions.
    """
    searcher = Searcher(index, tuned=False)
    model = _fp32_e5()
    n = prep.n_stard
    gold_ids = [set(searcher.index.chunk_ids([int(r) for r in prep.gold[i]])) for i in range(n)]
    t0 = time.perf_counter()
    base = _cached(
        CACHE / "rerank-untrained.pkl", lambda: _fused(searcher, prep, {i: prep.ranked[i] for i in range(n)})
    )
    log.info("fused the untrained system's candidates (%.0fs)", time.perf_counter() - t0)
    base_samples = {i: sample(prep.queries[i], base[i], gold_ids[i], rcfg.pool) for i in range(n)}
    log.info("features of the untrained system's candidates (%.0fs)", time.perf_counter() - t0)
    results: dict[str, list[dict[str, float]]] = {}
    per_fold = []
    for f, test in enumerate(folds(n, k, cfg.seed)):
        held = set(test.tolist())
        train_ids = [i for i in range(n) if i not in held]
        ids = test.tolist()
        t1 = time.perf_counter()

        def tower_hits(f: int = f, train_ids: list[int] = train_ids) -> dict[int, list[Hit]]:
            head = train(model, prep, train_ids, cfg, progress=lambda msg: log.info("fold %d tower %s", f + 1, msg))
            vectors = head.encode([prep.hidden[i] for i in range(n)])
            return _fused(
                searcher, prep, {i: {**prep.ranked[i], **dense_rankings(searcher, prep, vectors[i])} for i in range(n)}
            )

        tuned = _cached(CACHE / f"rerank-tower-k{k}-f{f + 1}.pkl", tower_hits)
        tower_s = time.perf_counter() - t1
        tuned_samples = {i: sample(prep.queries[i], tuned[i], gold_ids[i], rcfg.pool) for i in range(n)}
        t2 = time.perf_counter()
        model_rr = fit_reranker([base_samples[i] for i in train_ids] + [tuned_samples[i] for i in train_ids], rcfg)
        rerank_s = time.perf_counter() - t2
        figures = {
            "untrained": _judged(base, ids),
            "untrained + reranker": _judged({i: model_rr.rerank(prep.queries[i], base[i]) for i in ids}, ids),
            "tower": _judged(tuned, ids),
            "tower + reranker": _judged({i: model_rr.rerank(prep.queries[i], tuned[i]) for i in ids}, ids),
        }
        for key, value in figures.items():
            results.setdefault(key, []).append(value)
        per_fold.append(
            {
                "fold": f + 1,
                "questions": len(ids),
                "tower_seconds": round(tower_s, 1),
                "reranker_seconds": round(rerank_s, 1),
                **{key: {m: round(v, 4) for m, v in value.items()} for key, value in figures.items()},
            }
        )
        log.info("fold %d: %s", f + 1, json.dumps(per_fold[-1]))
    return {
        "folds": k,
        "config": cfg.__dict__,
        "rerank": rcfg.__dict__,
        **{key: _mean(value) for key, value in results.items()},
        "per_fold": per_fold,
    }


def rerank_fit(prep: Prepared, index: Path, rcfg: RerankConfig, out: Path) -> dict[str, object]:
    """The shipped reranker: every STARD question's candidates from the untrained system and the shipped tower.

    The untrained system's candidates are prep.ranked fused (the cache rerank-cv keeps, made here when missing).
    """
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=True)
    n = prep.n_stard
    gold_ids = [set(searcher.index.chunk_ids([int(r) for r in prep.gold[i]])) for i in range(n)]
    untrained = _cached(
        CACHE / "rerank-untrained.pkl", lambda: _fused(searcher, prep, {i: prep.ranked[i] for i in range(n)})
    )
    samples = [sample(prep.queries[i], untrained[i], gold_ids[i], rcfg.pool) for i in range(n)]
    for i in range(n):
        ranked = searcher.rankings(prep.queries[i], depth(100), tuned=True)
        samples.append(sample(prep.queries[i], searcher.fuse(ranked, prep.queries[i], 100), gold_ids[i], rcfg.pool))
    model = fit_reranker(samples, rcfg)
    sha = reranker.save(model, out, {"scripts/train.py": "rerank-fit", **rcfg.__dict__})
    return {"file": str(out), "sha256": sha, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("prepare", "cv", "fit", "xling", "rerank-cv", "rerank-fit", "all"))
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="a STARD benchmark index (`kb eval stard`)")
    p.add_argument("--cache", type=Path, default=None, help="prepared data (default .kb-cache/train/)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, default=qtower.WEIGHTS)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument(
        "--bridges",
        nargs="*",
        default=[],
        metavar="W:N",
        help="cv: also score bridge channels of weight W and N terms (kb.train.bridges)",
    )
    defaults = TrainConfig()
    for name, value in defaults.__dict__.items():
        p.add_argument(f"--{name}", type=type(value), default=value)
    rdefaults = RerankConfig()
    for name, value in rdefaults.__dict__.items():
        if name != "seed":
            p.add_argument(f"--rerank-{name}", dest=f"rerank_{name}", type=type(value), default=value)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    cfg = TrainConfig(**{name: getattr(args, name) for name in defaults.__dict__})
    cache = args.cache or CACHE / f"stard-{args.index.parent.name}-l{cfg.layers}.pkl"
    try:
        t0 = time.perf_counter()
        prep = prepare(args.index, cfg.layers, cache) if args.step in ("prepare", "all") else _load(cache)
        result: dict[str, object] = {}
        if args.step in ("cv", "all"):
            grid = [(float(w), int(n)) for w, n in (x.split(":") for x in args.bridges)]
            result["cv"] = cross_validate(prep, args.index, args.folds, cfg, grid)
        if args.step == "xling":
            result["xling"] = cross_lingual(prep, args.index)
        if args.step in ("fit", "all"):
            result["fit"] = fit(prep, cfg, args.out)
        rcfg = RerankConfig(
            **{n: getattr(args, f"rerank_{n}") for n in rdefaults.__dict__ if n != "seed"}, seed=cfg.seed
        )
        if args.step == "rerank-cv":
            result["rerank_cv"] = rerank_cv(prep, args.index, args.folds, cfg, rcfg)
        if args.step in ("rerank-fit", "all"):
            result["rerank_fit"] = rerank_fit(prep, args.index, rcfg, reranker.WEIGHTS)
        result["seconds"] = round(time.perf_counter() - t0, 1)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
