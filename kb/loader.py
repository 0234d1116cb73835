"""Open a built index for searching, checking that every part describes the same rows."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb import config
from kb.errors import IndexCorruptError
from kb.filters import Columns, build_columns
from kb.index import current_generation, read_manifest, read_vectors
from kb.lexical import bm25s_module
from kb.quoteindex import QuoteIndex
from kb.store import Store
from kb.timeline import Span, spans
from kb.xref_resolve import Resolver

log = logging.getLogger(__name__)


@dataclass
class LoadedIndex:
    """A generation folder opened for search: chunk store, BM25, vectors and per-row filter columns."""

    gen: Path
    manifest: dict
    store: Store
    bm25: object
    vectors: dict[str, object]  # channel -> FAISS index, row i = chunk i
    row_lang: np.ndarray
    row_hidden: np.ndarray  # rows of repealed or superseded texts, left out unless asked for
    row_prior: np.ndarray  # per-row ranking factor from the document's legal level
    doc_rows: dict[str, np.ndarray]
    docs: dict[str, dict[str, object]]
    columns: Columns  # per-row metadata for filters (kb.filters)
    spans: dict[str, Span]  # doc_id -> when it is in force (kb.timeline)
    resolver: Resolver  # cross-references -> chunks of this index (kb.xref_resolve)
    quote: QuoteIndex | None = None  # None for an index built before the quote check existed

    @property
    def n(self) -> int:
        return self.store.n_chunks


def load_index(index_dir: Path) -> LoadedIndex:
    """Load the current generation of an index folder.

    Raises:
        IndexMissingError: nothing built yet.
        IndexCorruptError: a part is missing, unreadable, or disagrees with the others on the row count.
    """
    bm25s = bm25s_module()
    gen = current_generation(index_dir)
    manifest = read_manifest(gen)
    fix = f"rebuild with `python -m kb build --index {index_dir}`"
    store = Store(gen / "chunks.sqlite")
    expected = int(manifest["counts"]["chunks"])
    if store.n_chunks != expected:
        raise IndexCorruptError(f"{gen}/chunks.sqlite has {store.n_chunks} chunks, the manifest says {expected}: {fix}")
    try:
        bm25 = bm25s.BM25.load(str(gen / "bm25"), mmap=False, show_progress=False)
    except Exception as exc:  # bm25s raises OSError, ValueError or JSON errors for damaged files
        raise IndexCorruptError(f"{gen}/bm25 is unreadable ({type(exc).__name__}: {exc}): {fix}") from exc
    n_bm25 = int(bm25.scores["num_docs"])
    if n_bm25 != max(expected, 1):
        raise IndexCorruptError(f"{gen}/bm25 holds {n_bm25} rows, the chunk store {expected}: {fix}")
    vectors: dict[str, object] = {}
    for channel, info in (manifest.get("channels") or {}).items():
        path = gen / str(info["file"])
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing: {fix}")
        try:
            index = read_vectors(path)
        except RuntimeError as exc:  # FAISS reports a truncated or garbled file this way
            raise IndexCorruptError(f"{path} is unreadable ({str(exc).splitlines()[0][:120]}): {fix}") from exc
        if (index.ntotal, index.d) != (expected, int(info["dim"])):
            raise IndexCorruptError(f"{path} holds {index.ntotal} vectors of {index.d} dims, expected "
                                    f"{expected} of {info['dim']}: {fix}")
        vectors[channel] = index
    doc_rows = {doc_id: np.asarray(rows, dtype=np.int64) for doc_id, rows in store.doc_rows().items()}
    docs = {d["doc_id"]: d for d in store.doc_table()}
    in_force = spans(docs)
    columns = build_columns(docs, doc_rows, expected, store.column("lang"), in_force)
    row_prior = np.ones(expected, dtype=np.float32)
    for doc_id, rows in doc_rows.items():
        row_prior[rows] = config.LEVEL_PRIOR.get(docs[doc_id]["meta"].get("level") or "", 1.0)
    quote = _quote_index(gen, manifest, fix) if "quote" in manifest else None
    log.info("loaded %s: %d chunks, channels %s", gen, expected, ", ".join(vectors) or "bm25 only")
    return LoadedIndex(gen, manifest, store, bm25, vectors, columns.zh, columns.hidden, row_prior, doc_rows, docs,
                       columns, in_force, Resolver(docs, store), quote)


@dataclass(frozen=True)
class QuoteParts:
    """What the quote check reads from a generation: no BM25, no vectors, so it opens in milliseconds."""

    gen: Path
    manifest: dict
    store: Store
    quote: QuoteIndex


def load_quote_parts(index_dir: Path) -> QuoteParts:
    """Open the chunk store and the quote index of the current generation.

    Raises:
        IndexMissingError: nothing built yet.
        IndexCorruptError: the index predates the quote check, or a part disagrees with the manifest.
    """
    gen = current_generation(index_dir)
    manifest = read_manifest(gen)
    fix = f"rebuild with `python -m kb build --index {index_dir}`"
    if "quote" not in manifest:
        raise IndexCorruptError(f"{gen} was built before the quote check existed and has no quote index: {fix}")
    store = Store(gen / "chunks.sqlite")
    if store.n_chunks != int(manifest["counts"]["chunks"]):
        raise IndexCorruptError(f"{gen}/chunks.sqlite has {store.n_chunks} chunks, the manifest says "
                                f"{manifest['counts']['chunks']}: {fix}")
    return QuoteParts(gen, manifest, store, _quote_index(gen, manifest, fix))


def _quote_index(gen: Path, manifest: dict, fix: str) -> QuoteIndex:
    info = manifest["quote"]
    if int(info["documents"]) != int(manifest["counts"]["documents"]):
        raise IndexCorruptError(f"{gen}/manifest.json lists {info['documents']} documents in the quote index and "
                                f"{manifest['counts']['documents']} in the store: {fix}")
    return QuoteIndex(gen / str(info["file"]), int(info["documents"]), fix)
