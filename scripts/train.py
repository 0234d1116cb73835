"""Train the question tower (kb.embed.tower) and the reranker, cross-validate them on STARD train, ship them.

    python -m kb eval stard                              # the STARD benchmark index training reads
    python scripts/train.py prepare                      # questions, gold rows, rankings, question states
    python scripts/train.py prepare-definitions          # corpus definition pairs for the reranker
    python scripts/train.py rerank-cv --folds 3          # held-out figures, tower and reranker
    python scripts/train.py fit                          # train on every question, write kb/weights/...
    python scripts/train.py memory                       # (fit ends with it) the question memory, into the same file
    python scripts/train.py rerank-fit                   # the reranker, on the shipped tower's candidates
    python scripts/train.py senses-cv --folds 3          # learned English senses for bm25_x (an experiment)

The shipped tower trains on STARD's Chinese questions, our English translations of them
(scripts/data/stard-train-en.tsv) and SciFact train (`--english 1 --scifact 1`, the defaults; SciFact needs
`python -m kb eval scifact` and `prepare-scifact` first; `--english 0 --scifact 0` trains on Chinese alone).
`fit` then trains the passage adapter (kb.train.passage) against the new tower on the same STARD questions and
writes it into the same file (`--adapter-epochs 0`: none; `cv` and `rerank-cv` fit one per fold the same way).
`rerank-fit` fits the Chinese scorer on STARD's candidates, the cross-language one ("en>zh") on our English
translations', and the English one on SciFact train's.
Self-supervised pairs (kb.train.pairs: headings, citations, versions from the STARD index; commentary headings
from the bundled index) are the measured experiment `--pairs 1`, after `prepare-pairs`. With
`--weights dense=3` (any channel), `cv` and `rerank-cv` measure the fusion with weights other than kb/config.py's.

`prepare` reads each index once and caches what training needs (kb.train.data); `cv` and `rerank-cv` train
one model per fold of STARD question ids on the other folds' questions, Chinese and English (kb.train.cv), and
score the fold's questions through the product's own fusion (kb.train.score). Fixed seeds throughout; the
same command gives the same weights on the same machine. The training logic lives in kb/train/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kb import config
from kb.bench.evaluate import _stard_rows
from kb.embed import tower as qtower
from kb.errors import KbError
from kb.search import rerank as reranker
from kb.train import data, pairs
from kb.train.cv import cross_validate, rerank_cv, senses_cv
from kb.train.memory import write_memory
from kb.train.passage import AdapterConfig
from kb.train.rerank import RerankConfig
from kb.train.ship import cross_lingual, fit, rerank_fit, tower_head
from kb.train.tower import PAIR_KINDS, Prepared, TrainConfig

DEFAULT_INDEX = config.BENCH_DIR / "stard-lawrefbook-national-e5" / "index"
# torch threads for training (1: the cores stay free for the other folds' searches)
THREADS = int(os.environ.get("KB_TRAIN_THREADS", "1"))
SCIFACT_INDEX = config.BENCH_DIR / "scifact-e5" / "index"
CACHE = config.ROOT / ".kb-cache" / "train"
EN100 = Path(__file__).resolve().parent / "data" / "stard-train-en100.tsv"
STEPS = (
    "prepare",
    "prepare-scifact",
    "prepare-pairs",
    "prepare-definitions",
    "cv",
    "fit",
    "memory",
    "xling",
    "rerank-cv",
    "rerank-fit",
    "senses-cv",
    "all",
)


def en100_positions() -> set[int]:
    """STARD positions of the 100 questions of the cross-lingual acceptance check."""
    by_id = {row["id"]: i for i, row in enumerate(_stard_rows(None))}
    return {by_id[qid] for qid in data.read_translations(EN100)}


def _weight(text: str) -> tuple[str, float]:
    """A `--weights` item: channel=weight, for a channel the product fuses."""
    channel, _, value = text.partition("=")
    if channel not in config.WEIGHTS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: no channel {channel!r}; the channels are {', '.join(config.WEIGHTS)}"
        )
    try:
        return channel, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a channel weight as CHANNEL=NUMBER, e.g. dense=3") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=STEPS)
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="a STARD benchmark index (`kb eval stard`)")
    p.add_argument("--scifact-index", type=Path, default=SCIFACT_INDEX, help="the SciFact index (`kb eval scifact`)")
    p.add_argument("--bundled-index", type=Path, default=config.DEFAULT_INDEX, help="prepare-pairs: commentary")
    p.add_argument("--pairs-per-kind", type=int, default=1000, help="prepare-pairs: at most this many of each kind")
    p.add_argument("--translations", type=Path, default=data.TRANSLATIONS, help="id<TAB>English STARD questions")
    p.add_argument("--definition-pairs", type=int, default=0, help="prepare: corpus definition pairs to mine")
    p.add_argument("--limit", type=int, default=None, help="prepare: the first N questions only (a smoke test)")
    p.add_argument("--cache", type=Path, default=CACHE, help="prepared data and cached fold hits")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--out", type=Path, default=qtower.WEIGHTS)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--bridges", nargs="*", default=[], metavar="W:N", help="cv: also score bridge channels")
    p.add_argument(
        "--weights",
        nargs="*",
        default=[],
        type=_weight,
        metavar="CHANNEL=W",
        help="cv, rerank-cv: fuse with these channel weights instead of kb/config.py's (an experiment; "
        "a search keeps the shipped ones)",
    )
    for name, value in TrainConfig().__dict__.items():
        p.add_argument(f"--{name}", type=type(value), default=value)
    for name, value in AdapterConfig().__dict__.items():
        if name != "seed":
            help_ = "the passage adapter's epochs; 0: no adapter" if name == "epochs" else None
            p.add_argument(f"--adapter-{name}", dest=f"adapter_{name}", type=type(value), default=value, help=help_)
    for name, value in RerankConfig().__dict__.items():
        if name != "seed":
            p.add_argument(f"--rerank-{name.replace('_', '-')}", dest=f"rerank_{name}", type=type(value), default=value)
    return p


def _paths(args: argparse.Namespace, cfg: TrainConfig) -> tuple[Path, Path]:
    """Where the prepared STARD and SciFact sets are cached."""
    return (
        args.cache / f"stard-{args.index.parent.name}-l{cfg.layers}-v2.pkl",
        args.cache / f"scifact-{args.scifact_index.parent.name}-l{cfg.layers}.pkl",
    )


def _pair_paths(args: argparse.Namespace, cfg: TrainConfig) -> list[tuple[Path, Path, tuple[str, ...]]]:
    """(index, cached set, kinds) of the mined pairs: the law kinds from the STARD index, commentary headings
    from the bundled one."""
    name = f"n{args.pairs_per_kind}-l{cfg.layers}"
    return [
        (args.index, args.cache / f"pairs-{args.index.parent.name}-{name}.pkl", pairs.LAW_KINDS),
        (args.bundled_index, args.cache / f"pairs-bundled-{name}.pkl", PAIR_KINDS[3:]),
    ]


def _prepare_pairs(args: argparse.Namespace, cfg: TrainConfig) -> dict[str, object]:
    """Mine and prepare the pairs, write each set apart; count pairs whose positives are STARD gold rows."""
    stard = data.load(_paths(args, cfg)[0])
    out: dict[str, object] = {}
    for index, path, kinds in _pair_paths(args, cfg):
        prep = pairs.prepare_pairs(index, cfg.layers, kinds, args.pairs_per_kind, cfg.seed, THREADS)
        data.save(prep, path)
        out[path.name] = {k: prep.kind.count(k) for k in kinds}
        if index == args.index:
            out["pairs with a STARD gold row among their positives"] = pairs.overlap(prep, stard.gold)
    return out


def _definitions_path(args: argparse.Namespace, cfg: TrainConfig, rcfg: RerankConfig) -> Path:
    return args.cache / f"definitions-{args.index.parent.name}-n{rcfg.definitions}-l{cfg.layers}.pkl"


def _definitions(args: argparse.Namespace, cfg: TrainConfig, rcfg: RerankConfig) -> Prepared | None:
    """The definition pairs the reranker trains on (None when --rerank-definitions is 0)."""
    return data.load(_definitions_path(args, cfg, rcfg)) if rcfg.definitions else None


def _prepared(args: argparse.Namespace, cfg: TrainConfig) -> tuple[Prepared, list[Prepared]]:
    """The STARD set and the other sets the config trains on (SciFact, mined pairs), prepared now or read from
    the cache."""
    stard, sci = _paths(args, cfg)
    if args.step in ("prepare", "all"):
        data.save(
            data.prepare_stard(args.index, cfg.layers, args.translations, args.definition_pairs, args.limit, THREADS),
            stard,
        )
        if cfg.scifact:
            data.save(data.prepare_scifact(args.scifact_index, cfg.layers, args.limit, THREADS), sci)
    others = [data.load(sci)] if cfg.scifact else []
    others += [data.load(path) for _, path, _ in _pair_paths(args, cfg)] if cfg.pairs else []
    return data.load(stard), others


def run(args: argparse.Namespace) -> dict[str, object]:
    cfg = TrainConfig(**{name: getattr(args, name) for name in TrainConfig().__dict__})
    rcfg = RerankConfig(
        **{n: getattr(args, f"rerank_{n}") for n in RerankConfig().__dict__ if n != "seed"}, seed=cfg.seed
    )
    acfg = AdapterConfig(
        **{n: getattr(args, f"adapter_{n}") for n in AdapterConfig().__dict__ if n != "seed"}, seed=cfg.seed
    )
    adapter = acfg if acfg.epochs > 0 else None
    t0 = time.perf_counter()
    if args.step == "prepare-scifact":  # apart, so it can run while the STARD set is prepared
        data.save(data.prepare_scifact(args.scifact_index, cfg.layers, args.limit, THREADS), _paths(args, cfg)[1])
        return {"seconds": round(time.perf_counter() - t0, 1)}
    if args.step in ("prepare-definitions", "all") and rcfg.definitions:
        defs = data.prepare_definitions(args.index, cfg.layers, rcfg.definitions, THREADS)
        data.save(defs, _definitions_path(args, cfg, rcfg))
        if args.step == "prepare-definitions":
            return {"definition pairs": len(defs.queries), "seconds": round(time.perf_counter() - t0, 1)}
    if args.step == "prepare-pairs":  # apart: the STARD and SciFact sets stay as they are
        return {**_prepare_pairs(args, cfg), "seconds": round(time.perf_counter() - t0, 1)}
    prep, others = _prepared(args, cfg)
    result: dict[str, object] = {}
    weights = dict(args.weights)
    if args.step in ("cv", "all"):
        grid = [(float(w), int(n)) for w, n in (x.split(":") for x in args.bridges)]
        inputs = (prep, others, data.fp32_e5(THREADS), args.index, args.folds, cfg)  # what both CV steps read
        result["cv"] = cross_validate(*inputs, grid, args.cache, en100_positions(), weights, adapter)
    if args.step == "rerank-cv":
        inputs = (prep, others, data.fp32_e5(THREADS), args.index, args.folds, cfg)
        definitions = _definitions(args, cfg, rcfg)
        result["rerank_cv"] = rerank_cv(*inputs, rcfg, args.cache, en100_positions(), definitions, weights, adapter)
    if args.step == "senses-cv":
        result["senses_cv"] = senses_cv(prep, others, data.fp32_e5(THREADS), args.index, args.folds, cfg, args.cache)
    if args.step == "xling":
        result["xling"] = cross_lingual(prep, args.index, en100_positions())
    if args.step in ("fit", "all"):
        scifact = args.scifact_index if args.scifact_index.is_dir() else None
        result["fit"] = fit(prep, others, cfg, args.out, scifact, THREADS, adapter)
    if args.step == "memory":  # what `fit` ends with: the file's tower embeds every STARD question again
        result["memory"] = write_memory(args.out, prep, tower_head(data.fp32_e5(THREADS), args.out))
    if args.step in ("rerank-fit", "all"):
        scifact = args.scifact_index if args.scifact_index.is_dir() else None
        sci = next((o for o in others if o.kind[:1] == ["scifact"]), None)
        result["rerank_fit"] = rerank_fit(
            prep, sci, args.index, scifact, rcfg, reranker.WEIGHTS, args.cache, THREADS, _definitions(args, cfg, rcfg)
        )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.weights and args.step not in ("cv", "rerank-cv"):
        parser.error(f"--weights is for cv and rerank-cv (measuring); {args.step} trains with kb/config.py's weights")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        result = run(args)
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
