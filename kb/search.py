"""Query -> Hits: BM25, e5 and cross-lingual USE channels, fused by weighted reciprocal rank."""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb import config, qtower
from kb.vectors import nearest
from kb.chunk import Chunk
from kb.cite import citation, highlight_spans
from kb.embed import Embedder, load_embedder
from kb.errors import ModelMismatchError, QueryError
from kb.filters import Facets, Filters, facets, row_mask
from kb.fusion import Fused, depth, fuse
from kb.index import CURRENT
from kb.ingest import DocMeta, Document, detect_lang
from kb.lexical import tokenize
from kb.loader import LoadedIndex, load_index
from kb.timeline import Span, documents_in_force
from kb.xref_resolve import Resolved, Resolver

log = logging.getLogger(__name__)

MODES = ("hybrid", "keyword", "semantic")
MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class Hit:
    """One ranked passage with everything needed to cite and show it."""

    chunk: Chunk
    score: float
    rank: int
    citation: str
    highlights: tuple[tuple[int, int], ...]
    channels: tuple[tuple[str, int], ...]
    meta: DocMeta
    path: str
    also_in: tuple[str, ...] = ()
    span: Span | None = None  # when the text is in force, and the other versions of the same law
    xrefs: tuple[Resolved, ...] = ()  # references made in this passage and the chunks they point to

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `python -m kb search --json`."""
        c, span = self.chunk, self.span
        return {
            "rank": self.rank, "score": round(self.score, 6), "doc_id": c.doc_id, "title": c.title,
            "citation": self.citation, "article": c.article, "section": c.section, "page": c.page,
            "page_end": c.page_end, "char_start": c.char_start, "char_end": c.char_end, "lang": c.lang,
            "chunk_id": c.chunk_id, "text": c.text, "highlights": [list(s) for s in self.highlights],
            "channels": dict(self.channels), "path": self.path, "also_in": list(self.also_in),
            "meta": {k: getattr(self.meta, k) for k in ("level", "issuer", "doc_number", "published",
                                                          "effective", "validity", "region")},
            "in_force": {"from": span.start if span else None, "until": span.end if span else None},
            "versions": list(span.versions) if span else [],
            "xrefs": [r.to_dict() for r in self.xrefs],
        }


class Searcher:
    """Loads an index folder once and answers queries; reloads when a rebuild publishes a new generation."""

    def __init__(self, index_dir: Path = config.DEFAULT_INDEX, model: str | None = None,
                 embedders: dict[str, Embedder] | None = None, weights: dict[str, float] | None = None,
                 tuned: bool | None = None) -> None:
        """tuned: question tower on Chinese questions (kb.qtower; default config.TUNED); False: packaged e5 only."""
        self.index_dir = Path(index_dir)
        self.tuned = config.TUNED if tuned is None else tuned
        self.weights = dict(weights or config.WEIGHTS)
        self._given = dict(embedders or {})
        self._model = model
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self.index: LoadedIndex = load_index(self.index_dir)
        self._check_models()

    def _check_models(self) -> None:
        dense = (self.index.manifest.get("channels") or {}).get("dense")
        if self._model and dense and self._model not in (dense["model"], _short(dense["model"])):
            raise ModelMismatchError(
                f"{self.index_dir} was built with model '{dense['model']}', not '{self._model}': search without "
                f"--model, or rebuild with `python -m kb build --model {self._model} --index {self.index_dir}`")
        for channel, embedder in self._given.items():
            info = (self.index.manifest.get("channels") or {}).get(channel)
            if info and (info["model"] != embedder.name or int(info["dim"]) != embedder.dim):
                raise ModelMismatchError(
                    f"{self.index_dir} channel '{channel}' was built with '{info['model']}' ({info['dim']} dims), "
                    f"not '{embedder.name}' ({embedder.dim}): rebuild with `python -m kb build`")
        if self.tuned and dense and "dense" not in self._given and qtower.applies(str(dense["model"])):
            qtower.check_manifest(self.index.manifest.get("question_tower"), qtower.shipped(), self.index_dir)

    def refresh(self) -> bool:
        """Reload if a build has published a newer generation; True when it did."""
        try:
            name = (self.index_dir / CURRENT).read_text(encoding="utf-8").strip()
        except OSError:
            return False
        if name == self.index.gen.name:
            return False
        with self._lock:
            self.index = load_index(self.index_dir)
        return True

    def embedder(self, channel: str, tuned: bool = False) -> Embedder:
        """The embedder the index recorded for a channel, loaded on first use; tuned: with the question tower."""
        if channel in self._given:
            return self._given[channel]
        if channel not in self._embedders:
            with self._lock:
                if channel not in self._embedders:
                    info = self.index.manifest["channels"][channel]
                    self._embedders[channel] = load_embedder(str(info["model"]))
        if tuned and channel == "dense":
            with self._lock:
                if "dense+tower" not in self._embedders:
                    self._embedders["dense+tower"] = qtower.wrap(self._embedders[channel], self.index.manifest,
                                                                 self.index_dir)
            return self._embedders["dense+tower"]
        return self._embedders[channel]

    def documents(self) -> list[dict[str, object]]:
        """The indexed documents with metadata, chunk counts, and when each is in force (kb.timeline)."""
        return documents_in_force(self.index.docs, self.index.spans)

    def source(self, doc_id: str) -> tuple[Document, list[Chunk]]:
        """A document's full text and its chunks in reading order, for showing a passage in place.

        Raises:
            QueryError: no such document in the index.
        """
        index = self.index
        doc = index.store.document(doc_id)
        if doc is None:
            raise QueryError(f"no such document in the index: {doc_id}")
        return doc, index.store.doc_chunks(doc_id)

    def facets(self) -> Facets:
        """Levels, issuers, validity, regions and languages in the index with document counts, and date ranges."""
        return facets(self.index.docs, self.index.spans)

    def references(self, chunk: Chunk) -> list[Resolved]:
        """The cross-references made in a passage, resolved to chunks of this index where it holds them."""
        return self.index.resolver.references(chunk)

    def search(self, query: str, k: int = 10, *, lang: str | None = None, docs: Sequence[str] | None = None,
               mode: str = "hybrid", include_repealed: bool = False, levels: Sequence[str] | None = None,
               issuers: Sequence[str] | None = None, validity: Sequence[str] | None = None,
               date_from: str | None = None, date_to: str | None = None, date_field: str = "published",
               as_of: str | None = None, xrefs: bool = True, tuned: bool | None = None) -> list[Hit]:
        """Rank passages for a question in Chinese or English.

        Args:
            lang: keep only passages in this language ('zh' or 'en').
            docs: keep only these doc_ids.
            mode: 'hybrid', 'keyword' (BM25 only) or 'semantic' (vectors only).
            include_repealed: also rank texts marked 已废止 (repealed) or 已修改 (superseded by a newer version).
            levels: keep these levels (法律, 行政法规, ... as `facets()` lists them).
            issuers: keep texts whose issuing body contains one of these names.
            validity: keep texts with these statuses (现行有效, 已修改, 已废止, 尚未生效); replaces the default hiding.
            date_from, date_to: keep texts whose `date_field` ('published' or 'effective') lies in this range;
                'YYYY', 'YYYY-MM' or 'YYYY-MM-DD'; texts without that date are left out.
            as_of: keep the texts in force on this date, whichever version that was (kb.timeline).
            xrefs: resolve each hit's cross-references (a few milliseconds for ten hits).
            tuned: the question tower for this search (kb.qtower); None: as the Searcher was opened.
        Raises:
            QueryError: empty query, unknown mode, or a filter value the index cannot answer; the message
                lists the known values.
        """
        query = clean_query(query)
        filters = Filters(lang=lang, docs=tuple(docs or ()), levels=tuple(levels or ()), issuers=tuple(issuers or ()),
                          validity=tuple(validity or ()), date_from=date_from, date_to=date_to,
                          date_field=date_field, as_of=as_of, include_repealed=include_repealed)
        # One snapshot for ranking and fusion: refresh() may swap in a new generation meanwhile,
        # and row numbers of one generation mean nothing in another.
        index = self.index
        allowed = allowed_rows(index, filters)
        ranked = self._rankings(index, query, depth(k), allowed, mode, self.tuned if tuned is None else tuned)
        return self._fuse(index, ranked, query, k, allowed, xrefs)

    def rankings(self, query: str, want: int, *, lang: str | None = None, docs: Sequence[str] | None = None,
                 mode: str = "hybrid", include_repealed: bool = False,
                 tuned: bool | None = None) -> dict[str, list[int]]:
        """Each channel's ranked row numbers, before fusion (benchmarks tune the fusion on these)."""
        filters = Filters(lang=lang, docs=tuple(docs or ()), include_repealed=include_repealed)
        return self._rankings(self.index, query, want, allowed_rows(self.index, filters), mode,
                              self.tuned if tuned is None else tuned)

    def _rankings(self, index: LoadedIndex, query: str, want: int, allowed: np.ndarray,
                  mode: str, tuned: bool) -> dict[str, list[int]]:
        check_query(query, mode)
        q_lang = detect_lang(query)
        ranked: dict[str, list[int]] = {}
        if mode in ("hybrid", "keyword"):
            ranked["bm25"] = self._bm25(index, query, allowed, want)
        if mode in ("hybrid", "semantic"):
            # Passages in the question's language and in the other language are ranked apart: a
            # shared list would bury every Chinese article under English ones for an English question,
            # since e5 scores same-language pairs higher. The other language gets e5 and USE (the only
            # packaged model trained to match English to Chinese), so its best passage fuses as high as
            # the best same-language one when both semantic channels agree on it.
            same = index.columns.zh if q_lang == "zh" else ~index.columns.zh
            if "dense" in index.vectors:
                vec = self.embedder("dense", tuned).query([query])[0]
                for name, part in (("dense", same), ("dense_x", ~same)):
                    mask = allowed & part
                    if mask.any():
                        ranked[name] = nearest(index.vectors["dense"], vec, mask, want, index.row_order)
            mask = allowed & ~same
            if "xling" in index.vectors and mask.any():
                vec = self.embedder("xling").query([query])[0]
                ranked["xling"] = nearest(index.vectors["xling"], vec, mask, want, index.row_order)
        return ranked

    def fuse(self, ranked: dict[str, list[int]], query: str, k: int, *, include_repealed: bool = False) -> list[Hit]:
        """Hits from channel rankings made by `rankings` (`kb.fusion.depth(k)` deep for the list `search` gives)."""
        allowed = allowed_rows(self.index, Filters(include_repealed=include_repealed))
        return self._fuse(self.index, ranked, query, k, allowed, xrefs=False)

    def _bm25(self, index: LoadedIndex, query: str, allowed: np.ndarray, want: int) -> list[int]:
        scores = index.bm25.scores(tokenize(query))
        return [] if scores is None else _top(scores, allowed, want, index.row_order)

    def _fuse(self, index: LoadedIndex, ranked: dict[str, list[int]], query: str, k: int, allowed: np.ndarray,
              xrefs: bool) -> list[Hit]:
        result = fuse(ranked, self.weights, k, prior=lambda r: float(index.row_prior[r]),
                      tie=lambda r: int(index.row_order[r]), doc_of=lambda r: int(index.row_doc[r]),
                      neighbour=row_neighbours(index.row_doc, allowed),
                      fetch=lambda rows: dict(zip(rows, index.store.chunks(rows))))
        return hits_of(result, query, index.docs, index.spans, index.resolver if xrefs else None)


# Control characters (C0, DEL, C1) and zero-width or direction marks pasted along with text from Word or PDFs.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Something a channel can match: a letter or digit in any script (CJK ideographs count as letters).
_WORDISH = re.compile(r"[^\W_]")


def allowed_rows(index: LoadedIndex, filters: Filters) -> np.ndarray:
    """Rows a search under filters may return: live (not replaced by a later build) and within the filters."""
    mask = row_mask(index.columns, index.doc_rows, filters)
    return index.row_live if mask is None else (mask & index.row_live)


def check_query(query: str, mode: str) -> None:
    """Raises QueryError when there is nothing to search for or the mode is unknown (both backends)."""
    if not query.strip():
        raise QueryError("empty query: type a question or some keywords")
    if not _WORDISH.search(query):
        raise QueryError("nothing to search for: the question has only punctuation or symbols; "
                         "type some words in Chinese or English")
    if mode not in MODES:
        raise QueryError(f"unknown mode '{mode}': use one of {', '.join(MODES)}")


def clean_query(query: str) -> str:
    """The question as searched: invisible characters removed, whitespace collapsed, at most MAX_QUERY_CHARS."""
    return " ".join(_INVISIBLE.sub(" ", query).split())[:MAX_QUERY_CHARS]


def _short(model: str) -> str:
    return {"multilingual-e5-small": "e5", "use-multilingual-v3": "use"}.get(model, model)


def row_neighbours(row_doc: np.ndarray, allowed: np.ndarray) -> Callable[[int, int], int | None]:
    """(row, offset) -> the row `offset` passages away in the same document, if the search may return it.

    Rows of a document are consecutive and in reading order (a build writes a document's passages together; a
    deleted document's rows belong to no document), so that is simply row + offset.
    """
    n = row_doc.shape[0]

    def neighbour(row: int, offset: int) -> int | None:
        other = row + offset
        return other if 0 <= other < n and row_doc[other] == row_doc[row] and allowed[other] else None

    return neighbour


def hits_of(result: Fused, query: str, docs: dict[str, dict[str, object]], spans: dict[str, Span],
            resolver: Resolver | None) -> list[Hit]:
    """Hits for a fused list (either backend): citation, highlights, metadata as shown, in-force span, and the
    passage's cross-references when a resolver is given."""
    hits = []
    for rank, key in enumerate(result.order, start=1):
        chunk = result.chunk(key)
        doc, span = docs.get(chunk.doc_id), spans.get(chunk.doc_id)
        meta = DocMeta.from_dict(doc.get("meta", {})) if doc else DocMeta()  # type: ignore[arg-type]
        if span and meta.validity is None and span.validity:  # derived from later versions or repeals
            meta = dataclasses.replace(meta, validity=span.validity)
        hits.append(Hit(chunk=chunk, score=result.scores[key], rank=rank, citation=citation(chunk),
                        highlights=highlight_spans(chunk.text, query), channels=tuple(result.channels.get(key, ())),
                        meta=meta, path=chunk.doc_id, also_in=result.also_in(key), span=span,
                        xrefs=tuple(resolver.references(chunk)) if resolver is not None else ()))
    return hits


def _top(scores: np.ndarray, allowed: np.ndarray, want: int, order: np.ndarray) -> list[int]:
    """Row numbers of the best `want` positive scores among allowed rows, best first, ties in reading order."""
    scores = np.where(allowed, scores, -np.inf)
    want = min(want, scores.shape[0])
    if want <= 0:
        return []
    top = np.argpartition(-scores, want - 1)[:want]
    top = top[np.lexsort((order[top], -scores[top]))]
    return [int(r) for r in top if scores[r] > 0.0]
