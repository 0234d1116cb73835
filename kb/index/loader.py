"""Open a built index for searching, checking that every part describes the same rows."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb import config

from kb.index import vectors
from kb.index.bm25 import Bm25
from kb.errors import IndexCorruptError
from kb.catalog.filters import Columns, build_columns
from kb.index.generations import current_generation, read_manifest
from kb.index.manifest import Manifest
from kb.index.quotes import QuoteIndex
from kb.index.store import Store, open_store
from kb.catalog.timeline import Span, spans
from kb.catalog.resolve import Resolver
from kb.chunk import chunk_id, parse_chunk_id
from kb.ingest.document import DocRow

log = logging.getLogger(__name__)


@dataclass
class LoadedIndex:
    """A generation folder opened for search: chunk store, BM25, vectors and per-row filter columns.

    Arrays are indexed by row number; rows of deleted passages are not live and match nothing.
    """

    gen: Path
    manifest: Manifest
    store: Store
    bm25: Bm25
    vectors: dict[str, vectors.Index]  # channel -> FAISS index, row i = chunk i
    row_prior: np.ndarray  # per-row ranking factor from the document's legal level
    row_order: np.ndarray  # position in reading order (documents as the corpus walk sorts them): breaks ties
    row_doc: np.ndarray  # a number per live document (-1 at deleted rows): which rows share a document
    doc_rows: dict[str, np.ndarray]
    docs: dict[str, DocRow]
    columns: Columns  # per-row metadata for filters (kb.catalog.filters): language, level, validity, dates
    spans: dict[str, Span]  # doc_id -> when it is in force (kb.catalog.timeline)
    resolver: Resolver  # cross-references -> chunks of this index (kb.catalog.resolve)
    quote: QuoteIndex | None = None  # None for an index built before the quote check existed
    doc_order: tuple[str, ...] = ()  # row_doc's numbers -> doc_id


    def chunk_ids(self, rows: list[int]) -> list[str]:
        """The chunk ids of rows (a document's rows are consecutive, in reading order)."""
        out = []
        for r in rows:
            doc_id = self.doc_order[int(self.row_doc[r])]
            out.append(chunk_id(doc_id, r - int(self.doc_rows[doc_id][0])))
        return out

    def rows_of(self, ids: list[str]) -> list[int]:
        """The rows of chunk ids (those of documents this generation does not hold are left out)."""
        out = []
        for cid in ids:
            doc_id, n = parse_chunk_id(cid)
            rows = self.doc_rows.get(doc_id)
            if rows is not None and 0 <= n < len(rows):
                out.append(int(rows[n]))
        return out

    @property
    def n(self) -> int:
        """Live passages."""
        return self.store.n_chunks

    @property
    def row_live(self) -> np.ndarray:
        """False at the rows of passages a later build replaced or removed."""
        return self.store.live

    @property
    def n_rows(self) -> int:
        """Row numbers in use, deleted ones included (the length of every per-row array)."""
        return self.store.n_rows


def load_index(index_dir: Path) -> LoadedIndex:
    """Load the current generation of an index folder.

    Raises:
        IndexMissingError: nothing built yet.
        IndexCorruptError: a part is missing, unreadable, or disagrees with the others on the row count.
    """
    gen = current_generation(index_dir)
    manifest = Manifest.from_dict(read_manifest(gen))
    fix = f"rebuild with `python -m kb build --index {index_dir}`"
    store = _open_store(gen, manifest, fix)
    n_rows = store.n_rows
    params = manifest.bm25
    try:
        bm25 = Bm25([(gen / f"{s.name}.terms", s.start, s.end) for s in store.segments], store.live,
                    float(str(params.get("k1", config.BM25_K1))), float(str(params.get("b", config.BM25_B))))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen} BM25 postings are unreadable ({type(exc).__name__}: {exc}): {fix}") from exc
    loaded: dict[str, vectors.Index] = {}
    for channel, info in manifest.channels.items():
        path = gen / info.file
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing: {fix}")
        try:
            index = vectors.read(path, mmap=True)
        except RuntimeError as exc:  # FAISS reports a truncated or garbled file this way
            raise IndexCorruptError(f"{path} is unreadable ({str(exc).splitlines()[0][:120]}): {fix}") from exc
        if (index.ntotal, index.d) != (n_rows, info.dim):
            raise IndexCorruptError(f"{path} holds {index.ntotal} vectors of {index.d} dims, expected "
                                    f"{n_rows} of {info.dim}: {fix}")
        loaded[channel] = index
    doc_rows = store.doc_rows()
    docs = {d.doc_id: d for d in store.doc_table()}
    in_force = spans(docs)
    columns = build_columns(docs, doc_rows, n_rows, store.column("lang"), in_force)
    row_prior = np.ones(n_rows, dtype=np.float32)
    row_order = np.zeros(n_rows, dtype=np.int64)
    row_doc = np.full(n_rows, -1, dtype=np.int32)
    position = 0
    # The corpus walk sorts paths part by part; a fresh build writes rows in that order, so ties between
    # identical passages fall the same way however the rows were appended since.
    doc_order = tuple(sorted(doc_rows, key=lambda d: d.split("/")))
    for number, doc_id in enumerate(doc_order):
        rows = doc_rows[doc_id]
        row_doc[rows] = number
        row_prior[rows] = config.LEVEL_PRIOR.get(docs[doc_id].meta.level or "", 1.0)
        row_order[rows] = np.arange(position, position + len(rows))
        position += len(rows)
    quote = _quote_index(gen, manifest, fix) if manifest.quote else None
    log.info("loaded %s: %d chunks, channels %s", gen, store.n_chunks, ", ".join(loaded) or "bm25 only")
    return LoadedIndex(gen, manifest, store, bm25, loaded, row_prior, row_order, row_doc, doc_rows, docs, columns,
                       in_force, Resolver(docs, store), quote, doc_order)


@dataclass(frozen=True)
class QuoteParts:
    """What the quote check reads from a generation: no BM25, no vectors, so it opens in milliseconds."""

    gen: Path
    manifest: Manifest
    store: Store
    quote: QuoteIndex


def load_quote_parts(index_dir: Path) -> QuoteParts:
    """Open the chunk store and the quote index of the current generation.

    Raises:
        IndexMissingError: nothing built yet.
        IndexCorruptError: the index predates the quote check, or a part disagrees with the manifest.
    """
    gen = current_generation(index_dir)
    manifest = Manifest.from_dict(read_manifest(gen))
    fix = f"rebuild with `python -m kb build --index {index_dir}`"
    if manifest.quote is None:
        raise IndexCorruptError(f"{gen} was built before the quote check existed and has no quote index: {fix}")
    store = _open_store(gen, manifest, fix)
    return QuoteParts(gen, manifest, store, _quote_index(gen, manifest, fix))


def _open_store(gen: Path, manifest: Manifest, fix: str) -> Store:
    """The generation's chunk store, checked against the manifest's counts."""
    store = open_store(gen, manifest)
    counts = manifest.counts
    if (store.n_chunks, store.n_rows) != (counts.chunks, counts.rows):
        raise IndexCorruptError(f"{gen} store has {store.n_chunks} chunks in {store.n_rows} rows, the manifest says "
                                f"{counts.chunks} in {counts.rows}: {fix}")
    return store


def _quote_index(gen: Path, manifest: Manifest, fix: str) -> QuoteIndex:
    info = manifest.quote
    if info is None:
        raise IndexCorruptError(f"{gen} has no quote index: {fix}")
    if info.documents != manifest.counts.documents:
        raise IndexCorruptError(f"{gen}/manifest.json lists {info.documents} documents in the quote index and "
                                f"{manifest.counts.documents} in the store: {fix}")
    return QuoteIndex(gen / info.file, info.documents, fix)
