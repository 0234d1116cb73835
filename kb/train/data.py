"""What the question tower trains on, read once per index and cached (kb.train.tower.Prepared).

For each question: its gold rows, the current system's channel rankings (hard negatives are mined from them,
per language, since an English question ranks other passages than its Chinese original) and its hidden states
below the trained layers. STARD train against a LawRefBook index gives the Chinese questions and their English
translations (scripts/data/stard-train-en.tsv, ours); SciFact train against the SciFact benchmark index gives
English questions over English abstracts.
"""

from __future__ import annotations

import logging
import pickle
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kb import config
from kb.bench.evaluate import _stard_rows, scifact_queries
from kb.catalog.filters import Filters
from kb.errors import KbError
from kb.search.fusion import depth
from kb.search.searcher import Searcher, allowed_rows
from kb.train.tower import Prepared, query_states

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")
TRANSLATIONS = config.ROOT / "scripts" / "data" / "stard-train-en.tsv"


def fp32_e5(threads: int = 1) -> object:
    """e5-small run by torch in float32 (training and the question states need gradients-grade precision)."""
    from kb.embed.e5torch import TorchE5

    return TorchE5(threads=threads, bf16=False)


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


def read_translations(path: Path) -> dict[int, str]:
    """STARD question id -> English question, from "id<TAB>English" lines ('#' lines are comments)."""
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        qid, sep, text = line.partition("\t")
        if not sep or not qid.strip().isdigit() or not text.strip():
            raise KbError(f"{path}:{n}: expected 'id<TAB>English question'")
        out[int(qid)] = text.strip()
    return out


def row_rankings(searcher: Searcher, ranked: dict[str, list[str]]) -> dict[str, list[int]]:
    """Channel rankings as row numbers of the searcher's index (what training mines negatives from)."""
    return {channel: searcher.index.rows_of(ids) for channel, ids in ranked.items()}


def _texts(searcher: Searcher) -> list[str]:
    loaded = searcher.index
    live = [int(r) for r in np.flatnonzero(loaded.row_live)]  # rows replaced by a later build have no chunk
    chunks = dict(zip(live, loaded.store.chunks(live)))
    return [chunks[r].text if r in chunks else "" for r in range(loaded.n_rows)]


def finish(
    searcher: Searcher,
    queries: list[str],
    gold: list[np.ndarray],
    layers: int,
    n_stard: int,
    kind: list[str],
    group: list[int],
    allowed: np.ndarray,
    t0: float,
    threads: int = 1,
) -> Prepared:
    """A prepared set of questions over the searcher's index: the current system's rankings (hard negatives),
    the packaged passage vectors and each question's hidden states below the trained layers."""
    ranked = [row_rankings(searcher, searcher.rankings(q, depth(100))) for q in queries]
    log.info("current system's rankings of %d questions done (%.0fs)", len(queries), time.perf_counter() - t0)
    loaded = searcher.index
    passages = loaded.vectors["dense"].reconstruct_n(0, loaded.n_rows).astype(np.float32)
    hidden = query_states(fp32_e5(threads), queries, 12 - layers)
    return Prepared(queries, hidden, 12 - layers, gold, ranked, passages, allowed, n_stard, kind, group)


def prepare_stard(
    index: Path,
    layers: int,
    translations: Path | None,
    n_definitions: int = 0,
    limit: int | None = None,
    threads: int = 1,
) -> Prepared:
    """STARD train's Chinese questions (the first `limit`), their English translations (in STARD's order) and
    definition pairs."""
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=False)  # the current system: packaged e5 alone
    loaded = searcher.index
    allowed = allowed_rows(loaded, Filters())
    rows = _stard_rows(limit)
    texts = _texts(searcher)
    english = read_translations(translations) if translations else {}
    unknown = sorted(set(english) - {row["id"] for row in _stard_rows(None)})
    if unknown:
        raise KbError(f"{translations}: ids not in STARD train: {unknown[:5]}")
    en = [(i, english[row["id"]]) for i, row in enumerate(rows) if row["id"] in english]
    pairs = definition_pairs(texts, allowed & loaded.row_live, n_definitions) if n_definitions else []
    queries = [row["query"] for row in rows] + [t for _, t in en] + [q for q, _ in pairs]
    kind = ["zh"] * len(rows) + ["en"] * len(en) + ["definition"] * len(pairs)
    group = list(range(len(rows))) + [i for i, _ in en] + [-1] * len(pairs)
    stard_gold = gold_rows(texts, allowed & loaded.row_live, [[g["text"] for g in row["gold"]] for row in rows])
    gold = stard_gold + [stard_gold[i] for i, _ in en]
    gold += gold_rows(texts, allowed & loaded.row_live, [[text] for _, text in pairs])
    log.info(
        "gold rows found for %d of %d STARD questions; %d English, %d definition pairs (%.0fs)",
        sum(1 for g in stard_gold if len(g)),
        len(rows),
        len(en),
        len(pairs),
        time.perf_counter() - t0,
    )
    return finish(searcher, queries, gold, layers, len(rows), kind, group, allowed, t0, threads)


def scifact_train() -> list[tuple[str, set[str]]]:
    """SciFact train queries with the ids of the abstracts judged relevant to them (those with one)."""
    judged = [(text, {d for d, grade in grades.items() if grade > 0}) for text, grades in scifact_queries("train")]
    return [(text, relevant) for text, relevant in judged if relevant]


def prepare_scifact(index: Path, layers: int, limit: int | None = None, threads: int = 1) -> Prepared:
    """SciFact train queries against the SciFact benchmark index; gold rows are their judged abstracts' passages.
    (SciFact test has other queries over the same abstracts; it stays held out.)"""
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=False)
    loaded = searcher.index
    allowed = allowed_rows(loaded, Filters())
    pairs = scifact_train()[:limit]
    gold = []
    for _, docs in pairs:
        rows = [int(r) for d in sorted(docs) for r in loaded.doc_rows.get(f"{d}.txt", ()) if allowed[int(r)]]
        gold.append(np.array(sorted(set(rows)), dtype=np.int64))
    log.info("SciFact train: %d queries, %d with gold passages", len(pairs), sum(1 for g in gold if len(g)))
    queries = [q for q, _ in pairs]
    return finish(searcher, queries, gold, layers, 0, ["scifact"] * len(queries), [-1] * len(queries), allowed, t0)


def prepare_definitions(index: Path, layers: int, n: int, threads: int = 1) -> Prepared:
    """Corpus definition pairs ("什么是X？" -> the article "本法所称X，是指…") as a set of their own, for the reranker:
    STARD has few questions asking what something is, and a reranker fitted on STARD alone gave the defining
    article no weight (docs/BENCHMARKS.md, session 11)."""
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=False)
    loaded = searcher.index
    allowed = allowed_rows(loaded, Filters())
    live = allowed & loaded.row_live
    texts = _texts(searcher)
    pairs = definition_pairs(texts, live, n)
    gold = gold_rows(texts, live, [[text] for _, text in pairs])
    queries = [q for q, _ in pairs]
    log.info("definition pairs: %d questions, %d with gold passages", len(pairs), sum(1 for g in gold if len(g)))
    kinds = ["definition"] * len(queries)
    return finish(searcher, queries, gold, layers, 0, kinds, [-1] * len(queries), allowed, t0, threads)


def save(prep: Prepared, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        pickle.dump(prep, fh, protocol=5)


def load(path: Path) -> Prepared:
    """A prepared set written by `save`.

    Raises:
        KbError: missing; says which command writes it.
    """
    if not path.is_file():
        raise KbError(f"{path} not found: run `python scripts/train.py prepare` first")
    with path.open("rb") as fh:
        return pickle.load(fh)
