"""The FAISS backend: query -> Hits over an index folder (BM25, e5 and cross-lingual USE channels, fused by
weighted reciprocal rank). What both backends share is in kb.search.base; this module only ranks rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kb import config
from kb.catalog.filters import Filters, check_filters, row_mask
from kb.chunk import Chunk
from kb.embed import tower
from kb.embed.models import Embedder
from kb.errors import QueryError
from kb.index import vectors
from kb.index.citedby import CitedByTable, Citing
from kb.index.generations import published
from kb.index.loader import LoadedIndex, load_index
from kb.index.vectors import nearest, rows_of
from kb.ingest.document import Document
from kb.ingest.read import detect_lang
from kb.search.base import SearcherBase
from kb.search.contract import Rankings
from kb.search.fusion import depth, fuse
from kb.search.hits import Hit, Reorder, hits_of
from kb.search.rerank import Similarity
from kb.text import bilingual
from kb.text.lexical import tokenize

log = logging.getLogger(__name__)


class Searcher(SearcherBase):
    """Loads an index folder once and answers queries; reloads when a rebuild publishes a new generation."""

    def __init__(
        self,
        index_dir: Path = config.DEFAULT_INDEX,
        model: str | None = None,
        embedders: dict[str, Embedder] | None = None,
        weights: dict[str, float] | None = None,
        tuned: bool | None = None,
        rerank: bool | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        rebuild = f"python -m kb build --index {self.index_dir}"
        super().__init__(str(self.index_dir), rebuild, embedders, weights, tuned, rerank)
        self._tables: dict[Path, CitedByTable] = {}  # generation -> its cited-by table, opened on first use
        self._adapted: tuple[LoadedIndex, vectors.Index] | None = None  # passage_vectors' adapted generation
        self.index: LoadedIndex = load_index(self.index_dir)
        self._take(self.index)
        self.check_models(model)

    def _take(self, index: LoadedIndex) -> None:
        self.index = index
        self.docs, self.spans, self.resolver = index.docs, index.spans, index.resolver
        self.channels = index.manifest.channels
        self.question_tower = index.manifest.question_tower
        self.reranker = index.manifest.reranker
        self._columns = RowColumns(index)

    @property
    def passages(self) -> int:
        return self.index.n

    @property
    def generation(self) -> str:
        return self.index.gen.name

    def refresh(self) -> bool:
        """Reload if a build has published a newer generation; True when it did.

        Raises:
            ModelMismatchError: the new generation records another question tower than the shipped one; the
                searcher keeps serving the generation it had.
        """
        if not published(self.index_dir, self.index.gen.name):
            return False
        index = load_index(self.index_dir)
        self.check_tower(index.manifest.question_tower, index.manifest.channels)
        with self._lock:
            self._take(index)
        return True

    def citing(
        self, doc_id: str, article_no: int, sub: int | None = None, paragraph: int | None = None
    ) -> list[Citing]:
        """Passages of other documents citing an article, from this generation's cited-by table.

        Raises:
            QueryError: the index was built before the cited-by table existed.
        """
        index = self.index
        info = index.manifest.cited_by
        if not info:
            raise QueryError(f"{index.gen} has no cited-by table: rebuild with `{self.rebuild}`")
        table = self._tables.get(index.gen)
        if table is None:
            table = self._tables[index.gen] = CitedByTable(index.gen / str(info["file"]))
        return table.citing(doc_id, article_no, sub, paragraph)

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

    def _search(
        self, query: str, k: int, filters: Filters, mode: str, xrefs: bool, tuned: bool, reorder: Reorder | None = None
    ) -> list[Hit]:
        # One snapshot for ranking and fusion: refresh() may swap in a new generation meanwhile,
        # and row numbers of one generation mean nothing in another.
        index = self.index
        allowed = allowed_rows(index, filters)
        ranked = self._rows(index, query, depth(k), allowed, mode, tuned)
        weights = self.fusion_weights(query, tuned)
        return self._fuse_rows(index, ranked, query, k, allowed, xrefs, weights, reorder)

    def _rankings(self, query: str, want: int, filters: Filters, mode: str, tuned: bool) -> Rankings:
        index = self.index
        ranked = self._rows(index, query, want, allowed_rows(index, filters), mode, tuned)
        return {channel: index.chunk_ids(rows) for channel, rows in ranked.items()}

    def _fuse(self, ranked: Rankings, query: str, k: int, filters: Filters, weights: dict[str, float]) -> list[Hit]:
        index = self.index
        rows = {channel: index.rows_of(ids) for channel, ids in ranked.items()}
        return self._fuse_rows(index, rows, query, k, allowed_rows(index, filters), False, weights)

    def _rows(
        self, index: LoadedIndex, query: str, want: int, allowed: np.ndarray, mode: str, tuned: bool
    ) -> dict[str, list[int]]:
        q_lang = detect_lang(query)
        ranked: dict[str, list[int]] = {}
        if mode in ("hybrid", "keyword"):
            ranked["bm25"] = self._bm25(index, query, allowed, want)
        if mode == "hybrid" and q_lang == "en" and self.weights.get("bm25_x"):
            # An English question's words translated to Chinese terms (kb.text.bilingual), searched by BM25 over
            # the Chinese passages: the only channel that matches an English question to a Chinese article's words.
            rows = translated_rows(index, query, allowed & index.columns.zh, want)
            if rows is not None:
                ranked["bm25_x"] = rows
        if mode in ("hybrid", "semantic"):
            # Passages in the question's language and in the other language are ranked apart: a
            # shared list would bury every Chinese article under English ones for an English question,
            # since e5 scores same-language pairs higher. The other language gets e5 and USE (the only
            # packaged model trained to match English to Chinese), so its best passage fuses as high as
            # the best same-language one when both semantic channels agree on it.
            same = index.columns.zh if q_lang == "zh" else ~index.columns.zh
            if "dense" in index.vectors:
                vec = self.question_vector(query, tuned)
                passages = self.passage_vectors(index, query, tuned)
                for name, part in (("dense", same), ("dense_x", ~same)):
                    mask = allowed & part
                    if mask.any():
                        ranked[name] = nearest(passages, vec, mask, want, index.row_order)
            mask = allowed & ~same
            if "xling" in index.vectors and mask.any():
                vec = self.embedder("xling").query([query])[0]
                ranked["xling"] = nearest(index.vectors["xling"], vec, mask, want, index.row_order)
        rows = memory_rows(index, self.remembered(query, mode, tuned, index.resolver), allowed, want)
        if rows:
            ranked["memory"] = rows
        return ranked

    def passage_vectors(self, index: LoadedIndex, query: str, tuned: bool) -> vectors.Index:
        """The dense channel's passage vectors for a question: for a Chinese one through the question tower whose
        file holds a passage adapter, the Chinese passages' vectors through it (made once per generation, kept in
        memory: 2 bytes a number, 118 MB for the whole LawRefBook); else the index's own. English questions are
        ranked over the stored vectors: through the adapter their Chinese candidates gained on STARD's English
        questions but pushed the bundled live-stream seed passage from rank 3 to 5 (docs/BENCHMARKS.md, session
        16). The adapter reaches them through the reranker instead: its cross-language scorer reads the adapted
        vectors' similarity and re-orders only the Chinese passages among their places (`_similarity`)."""
        return self.adapted_vectors(index) if self.chinese_through_tower(query, tuned) else index.vectors["dense"]

    def adapted_vectors(self, index: LoadedIndex) -> vectors.Index:
        """The dense channel's passage vectors with the Chinese rows through the shipped passage adapter (the
        stored ones when the tower file holds none)."""
        adapter = tower.shipped().passage
        if not adapter:
            return index.vectors["dense"]
        with self._lock:
            if self._adapted is None or self._adapted[0] is not index:
                self._adapted = (index, adapted_passages(index, adapter))
            return self._adapted[1]

    def warm(self) -> None:
        super().warm()
        if self.tuned and "dense" in self.index.vectors:
            self.passage_vectors(self.index, "网购商品无理由退货期限", True)

    def _similarity(self, query: str, tuned: bool) -> Similarity | None:
        index = self.index
        if "dense" not in index.vectors:
            return None
        # the adapter's vectors for a question in any language through the tower: the Chinese scorer reads the
        # vectors its question searched, the cross-language one ("en>zh") an English question's Chinese passages
        # through the adapter (it ranks them better: docs/BENCHMARKS.md, session 18); English rows are not adapted
        passages = self.adapted_vectors(index) if self.through_tower(tuned) else index.vectors["dense"]
        return lambda hits: similarities(index, self.question_vector(query, tuned), hits, passages)

    def translated(self, query: str) -> str:
        return bilingual.with_translation(query, self.index.bm25.df)

    def _bm25(self, index: LoadedIndex, query: str, allowed: np.ndarray, want: int) -> list[int]:
        scores = index.bm25.scores(tokenize(query))
        return [] if scores is None else _top(scores, allowed, want, index.row_order)

    def _fuse_rows(
        self,
        index: LoadedIndex,
        ranked: dict[str, list[int]],
        query: str,
        k: int,
        allowed: np.ndarray,
        xrefs: bool,
        weights: dict[str, float],
        reorder: Reorder | None = None,
    ) -> list[Hit]:
        cols = self._columns if self._columns.index is index else RowColumns(index)
        result = fuse(
            ranked,
            weights,
            k,
            prior=cols.prior.__getitem__,
            tie=cols.order.__getitem__,
            doc_of=cols.doc.__getitem__,
            neighbour=row_neighbours(index.row_doc, allowed),
            fetch=lambda rows: dict(zip(rows, index.store.chunks(rows))),
        )
        resolver = index.resolver if xrefs else None
        return hits_of(result, query, index.docs, index.spans, resolver, index.store, reorder)


class RowColumns:
    """An index's per-row prior, reading position and document as Python lists, for the fusion's callbacks.

    The fusion looks these up a few thousand times a question (sorting every fused row by score and reading
    order); a numpy scalar read and its conversion cost about 1 µs each, a list read a tenth of that: 1.5 ms of a
    question's CPU. The values are the same Python floats and ints. Made once per generation (8 MB on the whole
    LawRefBook index).
    """

    def __init__(self, index: LoadedIndex) -> None:
        self.index = index
        self.prior: list[float] = index.row_prior.astype(np.float64).tolist()
        self.order: list[int] = index.row_order.tolist()
        self.doc: list[int] = index.row_doc.tolist()


def adapted_passages(index: LoadedIndex, adapter: Mapping[str, np.ndarray]) -> vectors.Index:
    """The dense channel's vectors with the Chinese passages' rows through the passage adapter
    (kb.embed.tower.adapt_passages; it was trained on Chinese passages only), as an index of the same kind."""
    stored = index.vectors["dense"]
    matrix = vectors.all_rows(stored)
    matrix = tower.adapt_chinese_rows(matrix, index.columns.zh[: len(matrix)], adapter)
    return vectors.create(matrix, vectors.kind_of(stored))


def similarities(
    index: LoadedIndex, vector: np.ndarray, hits: Sequence[Hit], passages: vectors.Index | None = None
) -> np.ndarray | None:
    """The dense channel's inner product of a question vector with each hit's passage vector (`passages`: as the
    channel searched them, e.g. through the passage adapter; else the stored ones); None when a hit's passage is
    not in this generation (a refresh swapped it out meanwhile)."""
    rows = index.rows_of([h.chunk.chunk_id for h in hits])
    if len(rows) != len(hits):
        return None
    stored = index.vectors["dense"] if passages is None else passages
    return rows_of(stored, rows) @ np.asarray(vector, np.float32)


def allowed_rows(index: LoadedIndex, filters: Filters) -> np.ndarray:
    """Rows a search under filters may return: live (not replaced by a later build) and within the filters.

    Raises:
        QueryError: a filter value the index cannot answer (kb.catalog.filters.check_filters).
    """
    cols = index.columns
    mask = row_mask(cols, index.doc_rows, check_filters(filters, index.doc_rows, cols.levels, cols.issuers))
    return index.row_live if mask is None else (mask & index.row_live)


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


def memory_rows(index: LoadedIndex, chunk_ids: list[str], allowed: np.ndarray, want: int) -> list[int]:
    """The memory channel (kb.search.memory) as rows: its chunks the search may return, the first `want`."""
    return [r for r in index.rows_of(chunk_ids) if allowed[r]][:want]


def translated_rows(
    index: LoadedIndex, query: str, mask: np.ndarray, want: int, table: bilingual.Glossary | None = None
) -> list[int] | None:
    """The `bm25_x` channel's rows: BM25 over the passages `mask` allows (the Chinese ones) for the question's
    translation by the product's glossary, or by `table` (kb.train.senses measures another); None when the mask
    allows nothing or no word translates."""
    if not mask.any():
        return None
    terms = (bilingual.glossary() if table is None else table).translate(query, index.bm25.df)
    scores = index.bm25.scores(terms) if terms else None
    return None if scores is None else _top(scores, mask, want, index.row_order)


def _top(scores: np.ndarray, allowed: np.ndarray, want: int, order: np.ndarray) -> list[int]:
    """Row numbers of the best `want` positive scores among allowed rows, best first, ties in reading order."""
    scores = np.where(allowed, scores, -np.inf)
    want = min(want, scores.shape[0])
    if want <= 0:
        return []
    top = np.argpartition(-scores, want - 1)[:want]
    top = top[np.lexsort((order[top], -scores[top]))]
    return [int(r) for r in top if scores[r] > 0.0]
