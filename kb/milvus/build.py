"""Corpus -> Milvus: only documents whose content hash changed are re-read, re-embedded and re-written.

A build runs in three steps so that several workers, each given a part of the corpus (`part=(i, n)`: the
documents whose doc_id hashes to i modulo n), can share one collection:

1. (its turn) read what is stored: source keys, and the vectors of documents about to be replaced;
2. (no turn) read, chunk and embed the changed documents: the slow part, in parallel across workers;
3. (its turn) write: upsert the passages, delete what is gone, then the document rows, which act as each
   document's commit marker (a killed build leaves old keys behind, so the next build redoes those files).
   The in-force span of a document depends on the other versions of its law, so step 3 recomputes the spans
   of every document and updates the passages of those whose span changed.

A Milvus server takes the writes of all workers at once and keeps BM25 statistics for the whole collection.
milvus-lite allows one process per file, so workers take turns (kb.milvus.store.turn), and it scores BM25
with per-segment statistics, so after a write into a non-empty collection the passages are copied into a
fresh generation in reading order (one segment, as a build from scratch makes) and the alias moved to it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from kb import config
from kb.chunk import Chunk, read_passages
from kb.embed import tower
from kb.embed.cache import EmbeddingCache, embed_passages
from kb.embed.models import Embedder
from kb.errors import IngestError, KbError
from kb.index.build import chunking_settings
from kb.index.manifest import WeightsInfo
from kb.index.report import BuildReport, Progress
from kb.ingest.document import Document
from kb.ingest.guard import guarded, skip, source_key
from kb.ingest.read import walk_corpus
from kb.ingest.sidecars import load_sidecars
from kb.milvus.schema import (
    ADAPTED,
    ANALYZER_VERSION,
    FORMAT,
    MARKER,
    create_collections,
    reading_order,
    store_manifest,
)
from kb.milvus.store import MilvusDB, MilvusTarget, doc_rows, in_clause, iterate, turn
from kb.milvus.write import consolidate, write_changes

log = logging.getLogger(__name__)


def in_part(doc_id: str, part: tuple[int, int] | None) -> bool:
    """Whether a document belongs to worker i of n (a stable hash, so every run splits the corpus alike)."""
    if part is None:
        return True
    return int(hashlib.sha1(doc_id.encode("utf-8", "surrogateescape")).hexdigest(), 16) % part[1] == part[0]


def passage_adapter(embedders: dict[str, Embedder]) -> dict[str, np.ndarray]:
    """The shipped passage adapter when the build records the question tower and its file holds one, else {}."""
    return tower.shipped().passage if tower.for_build(embedders) else {}


def vector_fields(embedders: dict[str, Embedder]) -> dict[str, int]:
    """Vector field -> dimension: one per channel, and ADAPTED beside `dense` when the passage adapter applies."""
    fields = {ch: e.dim for ch, e in embedders.items()}
    return {**fields, ADAPTED: fields["dense"]} if passage_adapter(embedders) else fields


def manifest_for(embedders: dict[str, Embedder]) -> dict[str, object]:
    """What a collection must have been built with to be reused (the FAISS manifest's counterpart)."""
    info = tower.for_build(embedders)
    adapted = {"field": ADAPTED, "sha256": info.sha256} if info and passage_adapter(embedders) else None
    return {
        "format": FORMAT,
        "kb_version": config.VERSION,
        "chunking": chunking_settings(),
        "analyzer": ANALYZER_VERSION,
        "bm25": {"k1": config.BM25_K1, "b": config.BM25_B},
        "channels": {ch: {"model": e.name, "dim": e.dim} for ch, e in embedders.items()},
        **({"question_tower": info.to_dict()} if info else {}),
        **({"passage_adapter": adapted} if adapted else {}),
        **({"reranker": rr.to_dict()} if (rr := WeightsInfo.of(config.RERANK_WEIGHTS)) else {}),
    }


# Settings the stored rows depend on: a change rebuilds the collection (from the embedding cache). The adapted
# vectors depend on the tower file; the tower and reranker entries alone are re-recorded without a rebuild.
_ROW_SETTINGS = ("format", "chunking", "analyzer", "bm25", "channels", "passage_adapter")


def _same(old: dict[str, object], new: dict[str, object]) -> bool:
    return all(old.get(k) == new.get(k) for k in _ROW_SETTINGS)


def build(
    corpus: Path,
    where: MilvusTarget,
    embedders: dict[str, Embedder],
    progress: Progress | None = None,
    cache_dir: Path | None = config.CACHE_DIR,
    part: tuple[int, int] | None = None,
) -> BuildReport:
    """Build or update the Milvus index of a corpus (or of one part of it).

    Args:
        embedders: channel ('dense', 'xling') -> embedder; each becomes a vector field.
        part: (i, n) to write only worker i's share of n; None for the whole corpus.
    Raises:
        CorpusError: the corpus folder is missing.
        KbError: Milvus unreachable, or a part build against a collection built with other settings.
    """
    t0 = time.time()
    report = BuildReport()
    step = progress or (lambda stage, done, total: None)
    sidecars = load_sidecars(corpus)
    keys: dict[str, str] = {}
    for doc_id, path in walk_corpus(corpus):
        if in_part(doc_id, part):
            try:
                with guarded(doc_id):  # any error of this one file skips it (kb.ingest.guard)
                    keys[doc_id] = source_key(corpus, doc_id, path, sidecars.get(doc_id, {}))
            except IngestError as exc:
                skip(report.skipped, exc, doc_id)
    manifest, fields = manifest_for(embedders), vector_fields(embedders)
    with turn(where), MilvusDB(where) as db:
        _prepare(db, manifest, fields, part)
        stored = {d: row for d, row in doc_rows(db).items() if in_part(d, part)}
        changed = [d for d in keys if stored.get(d, {}).get("source_key") != keys[d]]
        known = _stored_vectors(db, [d for d in changed if d in stored], list(embedders))
    report.reused = [d for d in keys if d not in changed]
    fresh = _read(corpus, changed, keys, sidecars, report, step)
    vectors = _embed(embedders, fresh, known, cache_dir, report, step)
    if adapter := passage_adapter(embedders):
        zh = np.array([c.lang == "zh" for _, _, chunks in fresh for c in chunks], dtype=bool)
        vectors[ADAPTED] = tower.adapt_chinese_rows(np.array(vectors["dense"], np.float32), zh, adapter)
    kept = set(keys) - set(report.skipped)
    drop = sorted(d for d in stored if d not in kept)
    report.removed = sorted(d for d in drop if d not in report.skipped)
    with turn(where), MilvusDB(where) as db:
        table = doc_rows(db)
        had_rows = bool(table)
        report.chunks, wrote = write_changes(db, table, fresh, vectors, drop, step)
        if where.lite and had_rows and wrote:
            consolidate(db, fields, step)
        report.generation = db.generation()
        if wrote:  # searchers compare the stamp to learn that the index changed (MilvusSearcher.refresh)
            db.client.upsert(
                db.meta, [{"key": "stamp", "value": f"{time.time_ns()} {report.generation}", "marker": MARKER}]
            )
    report.seconds = time.time() - t0
    return report


def _prepare(db: MilvusDB, manifest: dict[str, object], channels: dict[str, int], part: tuple[int, int] | None) -> None:
    """Create the collections, or recreate them when the settings changed (a whole-corpus build only)."""
    old = db.manifest()
    if old is not None and _same(old, manifest) and db.has_alias(db.chunks):
        if old != manifest:  # another tower or reranker file, or version: the rows stay, the record follows
            store_manifest(db, manifest)
        return
    if old is not None and part is not None:
        raise KbError(
            f"'{db.target.collection}' at {db.target.uri} was built with other settings (models, "
            "chunking or analyzer); rebuild it whole first: `python -m kb build --backend milvus "
            f"--uri {db.target.uri}` without --part"
        )
    if part is None:  # leftovers of another setup or of a killed first build
        if old is not None:
            log.info("settings changed since the last build: rebuilding '%s' from scratch", db.target.collection)
        db.drop_all()
    create_collections(db, manifest, channels)


def _stored_vectors(db: MilvusDB, doc_ids: list[str], channels: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Vectors of passages about to be replaced, by text hash: an edited law re-embeds only its edited articles."""
    known: dict[str, dict[str, np.ndarray]] = {ch: {} for ch in channels}
    for start in range(0, len(doc_ids), 100):
        for row in iterate(db, db.chunks, in_clause("doc_id", doc_ids[start : start + 100]), ["hash", *channels]):
            for ch in channels:
                known[ch][str(row["hash"])] = np.asarray(row[ch], dtype=np.float32)
    return known


def _read(
    corpus: Path,
    changed: list[str],
    keys: dict[str, str],
    sidecars: dict[str, dict[str, str]],
    report: BuildReport,
    step: Progress,
) -> list[tuple[Document, str, list[Chunk]]]:
    out = []
    for n, doc_id in enumerate(changed):
        step("read", n, len(changed))
        try:
            with guarded(doc_id):
                doc, chunks = read_passages(corpus, doc_id, sidecars.get(doc_id))
        except IngestError as exc:
            skip(report.skipped, exc, doc_id)
            continue
        out.append((doc, keys[doc_id], chunks))
        report.indexed.append(doc_id)
    step("read", len(changed), len(changed))
    out.sort(key=lambda item: reading_order(item[0].doc_id))
    return out


def _embed(
    embedders: dict[str, Embedder],
    fresh: list[tuple[Document, str, list[Chunk]]],
    known: dict[str, dict[str, np.ndarray]],
    cache_dir: Path | None,
    report: BuildReport,
    step: Progress,
) -> dict[str, np.ndarray]:
    texts = [c.index_text() for _, _, chunks in fresh for c in chunks]
    out = {}
    for channel, embedder in embedders.items():
        cache = EmbeddingCache(
            cache_dir / f"embeddings-{embedder.name.replace('/', '_')}.sqlite" if cache_dir else None
        )

        def tick(done: int, total: int, channel: str = channel) -> None:
            step(f"embed {channel}", done, total)

        out[channel], embedded = embed_passages(embedder, texts, cache, known.get(channel), tick)
        report.embedded += embedded
    return out
