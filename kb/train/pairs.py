"""Self-supervised training pairs mined from an index's own passages (issue 16, point 1).

Four kinds, each a (question, positive rows) pair the question tower can train on like a STARD question:

- "heading": a law's chapter heading asked as a question ("劳动合同法关于劳动合同的终止有哪些规定？") <-> the
  articles under that heading, in every version of the law;
- "citation": the words around a reference ("依照本法第四十一条…", "《劳动法》第41条规定，…") <-> the article
  it cites, resolved by the index's own resolver (kb.catalog.resolve);
- "version": an article's text in one version of a law <-> the same article in its other versions (worded
  differently, numbered the same);
- "commentary": a section heading of an English document <-> the paragraphs under it.

The first three are mined from a LawRefBook index, the last from the bundled corpus's index (its own passages,
so its own prepared set, like SciFact). A pair's positives are widened by the STARD 30-character rule
(kb.train.data.gold_rows), so a copy of the same article elsewhere is a positive, not a hard negative.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.catalog.filters import Filters
from kb.catalog.resolve import ChunkTable, Resolver
from kb.chunk import Chunk
from kb.ingest.document import DocRow
from kb.legal.meta import title_key
from kb.search.searcher import Searcher, allowed_rows
from kb.train.data import finish, gold_rows
from kb.train.tower import PAIR_KINDS as KINDS
from kb.train.tower import Prepared

log = logging.getLogger(__name__)

LAW_KINDS = KINDS[:3]  # mined from a LawRefBook index; "commentary" from the bundled corpus
QUERY_CHARS = 160  # a question is short: a quoted article or context is cut here


@dataclass(frozen=True)
class Pair:
    """A mined question and the rows that answer it."""

    kind: str  # one of KINDS
    query: str
    positives: tuple[int, ...]


def _sample(pairs: list[Pair], limit: int, seed: int) -> list[Pair]:
    """At most `limit` pairs, drawn with a fixed seed, in mining order."""
    pick = np.random.default_rng(seed).permutation(len(pairs))[:limit]
    return [pairs[i] for i in sorted(pick)]


# "第四章 劳动合同的终止", "第一节　一般规定", "第二分编 典型合同": the heading's words without its number.
_CN_HEAD = re.compile(r"^第[零〇一二三四五六七八九十百千两0-9]+[编章节分编]+")
_WS = re.compile(r"\s+")


def heading_pairs(
    chunks: Sequence[Chunk], rows: Sequence[int], limit: int, seed: int = 0, most: int = 10
) -> list[Pair]:
    """(a) "<law>关于<heading>有哪些规定？" <-> the articles under the heading (every version of the law).

    Headings with more than `most` articles are left out: a question about half a law has no answer to learn.
    """
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for chunk, row in zip(chunks, rows):
        if chunk.article_no is None or not chunk.section:
            continue
        law = title_key(chunk.title)
        groups.setdefault((law, chunk.section), []).append((row, chunk.article_no))
    pairs = []
    for (law, section), members in groups.items():
        heading = _WS.sub("", _CN_HEAD.sub("", section.split("/")[-1].strip()))
        if len(heading) < 2 or not law or len({a for _, a in members}) > most:
            continue
        pairs.append(Pair("heading", f"{law}关于{heading}有哪些规定？", tuple(sorted(r for r, _ in members))))
    return _sample(pairs, limit, seed)


def citation_pairs(
    chunks: Sequence[Chunk], rows: Sequence[int], resolver: Resolver, limit: int, seed: int = 0, around: int = 60
) -> list[Pair]:
    """(b) the words around a reference to an article, in another article or document <-> the cited article.

    Relative references (前款, 本条) point into the citing article itself and are left out; so is a reference
    whose target holds the citing passage.
    """
    row_of = {c.chunk_id: r for c, r in zip(chunks, rows)}
    article_rows: dict[tuple[str, int], list[int]] = {}
    for chunk, row in zip(chunks, rows):
        if chunk.article_no is not None:
            article_rows.setdefault((chunk.doc_id, chunk.article_no), []).append(row)
    pairs, seen = [], set()
    for chunk, row in zip(chunks, rows):
        for found in resolver.references(chunk):
            target, ref = found.target, found.ref
            if target is None or ref.kind == "relative" or target.chunk_id not in row_of:
                continue
            positives = article_rows.get((target.doc_id, target.article_no), [row_of[target.chunk_id]])
            context = _WS.sub("", chunk.text[max(0, ref.start - around) : ref.end + around])
            if row in positives or (context, positives[0]) in seen:
                continue
            seen.add((context, positives[0]))
            pairs.append(Pair("citation", context[:QUERY_CHARS], tuple(sorted(positives))))
    return _sample(pairs, limit, seed)


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def similar(a: str, b: str) -> float:
    """Jaccard overlap of two texts' character bigrams."""
    x, y = _bigrams(a), _bigrams(b)
    return len(x & y) / max(1, len(x | y))


_LABEL = re.compile(r"^第[零〇一二三四五六七八九十百千两0-9]+条(?:之[一二三四五六七八九十]+)?")


def version_pairs(
    chunks: Sequence[Chunk], rows: Sequence[int], limit: int, seed: int = 0, least: float = 0.5
) -> list[Pair]:
    """(c) an article's text in one version of a law <-> that article in every version (same number, bigram
    overlap at least `least`), when at least one other version words it differently.

    Versions are documents whose titles share kb.legal.meta.title_key. The question is the article without its
    number; its own rows are positives too, so the tower learns that it matches each version, not only its own.
    """
    articles: dict[tuple[str, str, int], tuple[list[int], list[str]]] = {}
    for chunk, row in zip(chunks, rows):
        if chunk.article_no is not None:
            found = articles.setdefault((title_key(chunk.title), chunk.doc_id, chunk.article_no), ([], []))
            found[0].append(row)
            found[1].append(chunk.text)
    by_article: dict[tuple[str, int], list[tuple[str, list[int], str]]] = {}
    for (law, doc, number), (found_rows, texts) in articles.items():
        body = _LABEL.sub("", _WS.sub("", "".join(texts)))
        by_article.setdefault((law, number), []).append((doc, found_rows, body))
    pairs = []
    for versions in by_article.values():
        if len({doc for doc, _, _ in versions}) < 2:
            continue
        for doc, _, body in versions:
            close = [(d, r, b) for d, r, b in versions if similar(body, b) >= least]
            if not body or not any(d != doc and b != body for d, _, b in close):
                continue
            positives = sorted(r for _, found_rows, _ in close for r in found_rows)
            pairs.append(Pair("version", body[:QUERY_CHARS], tuple(positives)))
    return _sample(pairs, limit, seed)


# "I. Violence and criminal behavior", "5. Entrepreneurial Skills:", "(3) Other ...": the heading without its number.
_EN_NUMBER = re.compile(r"^\(?(?:[IVXLC]+|\d+|[A-Za-z])[.)]\s+")


def commentary_pairs(
    chunks: Sequence[Chunk], rows: Sequence[int], limit: int, seed: int = 0, most: int = 12
) -> list[Pair]:
    """(d) an English section heading (two words or more) <-> the paragraphs under it; one heading's paragraphs
    in several documents are one pair. Headings over more than `most` passages are left out."""
    groups: dict[str, list[int]] = {}
    for chunk, row in zip(chunks, rows):
        if chunk.lang != "en" or not chunk.section:
            continue
        heading = _EN_NUMBER.sub("", chunk.section.split("/")[-1].strip()).rstrip(":").strip()
        if len(heading.split()) >= 2:
            groups.setdefault(heading, []).append(row)
    pairs = [Pair("commentary", h, tuple(sorted(r))) for h, r in groups.items() if len(r) <= most]
    return _sample(pairs, limit, seed)


def _chunks(searcher: Searcher) -> tuple[list[Chunk], list[int]]:
    """The index's live passages and their rows, in row order."""
    loaded = searcher.index
    live = [int(r) for r in np.flatnonzero(loaded.row_live)]
    return loaded.store.chunks(live), live


def mine(
    chunks: Sequence[Chunk],
    rows: Sequence[int],
    docs: Mapping[str, DocRow],
    kinds: Iterable[str],
    limit: int,
    seed: int = 0,
) -> list[Pair]:
    """At most `limit` pairs of each kind from one index's passages (citations resolved in memory over them)."""
    out: list[Pair] = []
    for kind in kinds:
        t0 = time.perf_counter()
        if kind == "heading":
            found = heading_pairs(chunks, rows, limit, seed)
        elif kind == "citation":
            found = citation_pairs(chunks, rows, Resolver(docs, ChunkTable(chunks)), limit, seed)
        elif kind == "version":
            found = version_pairs(chunks, rows, limit, seed)
        else:
            found = commentary_pairs(chunks, rows, limit, seed)
        log.info("%d %s pairs (%.0fs)", len(found), kind, time.perf_counter() - t0)
        out.extend(found)
    return out


def prepare_pairs(
    index: Path, layers: int, kinds: Sequence[str], limit: int, seed: int = 0, threads: int = 1
) -> Prepared:
    """The mined pairs of one index as a prepared set (kind per pair, no STARD questions): gold rows by the
    30-character rule, hard negatives from the current system's rankings of each question."""
    t0 = time.perf_counter()
    searcher = Searcher(index, tuned=False)
    loaded = searcher.index
    allowed = allowed_rows(loaded, Filters())
    chunks, rows = _chunks(searcher)
    pairs = mine(chunks, rows, loaded.docs, kinds, limit, seed)
    texts = {r: c.text for c, r in zip(chunks, rows)}
    widened = gold_rows(
        [texts.get(r, "") for r in range(loaded.n_rows)],
        allowed & loaded.row_live,
        [[texts[r] for r in p.positives] for p in pairs],
    )
    gold = [np.union1d(w, [r for r in p.positives if allowed[r]]).astype(np.int64) for w, p in zip(widened, pairs)]
    queries, kind = [p.query for p in pairs], [p.kind for p in pairs]
    return finish(searcher, queries, gold, layers, 0, kind, [-1] * len(pairs), allowed, t0, threads)


def overlap(pairs: Prepared, gold: Sequence[np.ndarray]) -> dict[str, int]:
    """Per kind: pairs whose positives include a row that is gold for some STARD question (for the docs)."""
    stard = set(np.concatenate([g for g in gold if len(g)]).tolist()) if gold else set()
    out: dict[str, int] = {}
    for k, g in zip(pairs.kind, pairs.gold):
        out[k] = out.get(k, 0) + int(bool(stard & set(g.tolist())))
    return out
