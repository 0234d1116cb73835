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
milvus-lite allows one process per file, so workers take turns (kb.milvus_store.turn), and it scores BM25
with per-segment statistics, so after a write into a non-empty collection the passages are copied into a
fresh generation in reading order (one segment, as a build from scratch makes) and the alias moved to it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kb import config, qtower
from kb.chunk import Chunk, read_passages
from kb.embed import Embedder, EmbeddingCache, embed_passages
from kb.errors import IngestError, KbError
from kb.filters import date_int
from kb.index import BuildReport, chunking_settings
from kb.ingest import Document, file_sha256, load_sidecars, read_sidecar, walk_corpus
from kb.milvus_schema import (ANALYZER_VERSION, CHUNK_FIELDS, FORMAT, MARKER, OPEN_END, TEXT_PIECE_CHARS,
                              VARCHAR_MAX, bm25_text, create_chunks, create_collections, generation_name)
from kb.milvus_store import MilvusDB, MilvusTarget, doc_rows, in_clause, iterate, quote, turn
from kb.timeline import spans

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
BATCH = 256  # rows per insert: a few MB of vectors, well under gRPC's message limit


def in_part(doc_id: str, part: tuple[int, int] | None) -> bool:
    """Whether a document belongs to worker i of n (a stable hash, so every run splits the corpus alike)."""
    if part is None:
        return True
    return int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % part[1] == part[0]


def reading_order(doc_id: str) -> tuple[str, ...]:
    """The order walk_corpus yields documents in (path components), which ties are broken by."""
    return tuple(doc_id.split("/"))


def manifest_for(embedders: dict[str, Embedder]) -> dict[str, object]:
    """What a collection must have been built with to be reused (the FAISS manifest's counterpart)."""
    return {"format": FORMAT, "kb_version": config.VERSION, "chunking": chunking_settings(),
            "analyzer": ANALYZER_VERSION, "bm25": {"k1": config.BM25_K1, "b": config.BM25_B},
            "channels": {ch: {"model": e.name, "dim": e.dim} for ch, e in embedders.items()},
            **qtower.manifest_fields(embedders)}


def _same(old: dict[str, object], new: dict[str, object]) -> bool:
    return all(old.get(k) == new.get(k) for k in ("format", "chunking", "analyzer", "bm25", "channels"))


def build(corpus: Path, where: MilvusTarget, embedders: dict[str, Embedder], progress: Progress | None = None,
          cache_dir: Path | None = config.CACHE_DIR, part: tuple[int, int] | None = None) -> BuildReport:
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
                keys[doc_id] = _source_key(path, sidecars.get(doc_id, {}))
            except IngestError as exc:
                report.skipped[doc_id] = exc.reason
            except OSError as exc:
                report.skipped[doc_id] = f"unreadable ({exc.strerror or exc})"
    manifest = manifest_for(embedders)
    with turn(where), MilvusDB(where) as db:
        _prepare(db, manifest, {ch: e.dim for ch, e in embedders.items()}, part)
        stored = {d: row for d, row in doc_rows(db).items() if in_part(d, part)}
        changed = [d for d in keys if stored.get(d, {}).get("source_key") != keys[d]]
        known = _stored_vectors(db, [d for d in changed if d in stored], list(embedders))
    report.reused = [d for d in keys if d not in changed]
    fresh = _read(corpus, changed, keys, sidecars, report, step)
    vectors = _embed(embedders, fresh, known, cache_dir, report, step)
    kept = set(keys) - set(report.skipped)
    drop = sorted(d for d in stored if d not in kept)
    report.removed = sorted(d for d in drop if d not in report.skipped)
    with turn(where), MilvusDB(where) as db:
        table = doc_rows(db)
        had_rows = bool(table)
        report.chunks, wrote = _write(db, table, fresh, vectors, drop, step)
        if where.lite and had_rows and wrote:
            _consolidate(db, {ch: e.dim for ch, e in embedders.items()}, step)
        report.generation = db.generation()
        if wrote:  # searchers compare the stamp to learn that the index changed (MilvusSearcher.refresh)
            db.client.upsert(db.meta, [{"key": "stamp", "value": f"{time.time_ns()} {report.generation}",
                                        "marker": MARKER}])
    report.seconds = time.time() - t0
    return report


def _source_key(path: Path, overrides: dict[str, str]) -> str:
    """As kb.index: the file's hash plus its metadata overrides and META_VERSION."""
    extra = json.dumps({**overrides, **read_sidecar(path), "meta_version": config.META_VERSION}, sort_keys=True,
                       ensure_ascii=False)
    return file_sha256(path) + ":" + hashlib.sha1(extra.encode()).hexdigest()[:12]


def _prepare(db: MilvusDB, manifest: dict[str, object], channels: dict[str, int], part: tuple[int, int] | None) -> None:
    """Create the collections, or recreate them when the settings changed (a whole-corpus build only)."""
    old = db.manifest()
    if old is not None and _same(old, manifest) and db.has_alias(db.chunks):
        return
    if old is not None and part is not None:
        raise KbError(f"'{db.target.collection}' at {db.target.uri} was built with other settings (models, "
                      "chunking or analyzer); rebuild it whole first: `python -m kb build --backend milvus "
                      f"--uri {db.target.uri}` without --part")
    if part is None:  # leftovers of another setup or of a killed first build
        if old is not None:
            log.info("settings changed since the last build: rebuilding '%s' from scratch", db.target.collection)
        db.drop_all()
    create_collections(db, manifest, channels)


def _stored_vectors(db: MilvusDB, doc_ids: list[str], channels: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Vectors of passages about to be replaced, by text hash: an edited law re-embeds only its edited articles."""
    known: dict[str, dict[str, np.ndarray]] = {ch: {} for ch in channels}
    for start in range(0, len(doc_ids), 100):
        for row in iterate(db, db.chunks, in_clause("doc_id", doc_ids[start:start + 100]), ["hash", *channels]):
            for ch in channels:
                known[ch][str(row["hash"])] = np.asarray(row[ch], dtype=np.float32)
    return known


def _read(corpus: Path, changed: list[str], keys: dict[str, str], sidecars: dict[str, dict[str, str]],
          report: BuildReport, step: Progress) -> list[tuple[Document, str, list[Chunk]]]:
    out = []
    for n, doc_id in enumerate(changed):
        step("read", n, len(changed))
        try:
            doc, chunks = read_passages(corpus, doc_id, sidecars.get(doc_id))
            too_long = [c.chunk_id for c in chunks if len(c.index_text().encode()) > VARCHAR_MAX]
            if too_long:
                raise IngestError(doc_id, f"passage {too_long[0]} exceeds Milvus's {VARCHAR_MAX}-byte text limit")
        except IngestError as exc:
            report.skipped[doc_id] = exc.reason
            log.warning("skipped %s: %s", doc_id, exc.reason)
            continue
        out.append((doc, keys[doc_id], chunks))
        report.indexed.append(doc_id)
    step("read", len(changed), len(changed))
    out.sort(key=lambda item: reading_order(item[0].doc_id))
    return out


def _embed(embedders: dict[str, Embedder], fresh: list[tuple[Document, str, list[Chunk]]],
           known: dict[str, dict[str, np.ndarray]], cache_dir: Path | None, report: BuildReport,
           step: Progress) -> dict[str, np.ndarray]:
    texts = [c.index_text() for _, _, chunks in fresh for c in chunks]
    out = {}
    for channel, embedder in embedders.items():
        cache = EmbeddingCache(cache_dir / f"embeddings-{embedder.name.replace('/', '_')}.sqlite" if cache_dir else None)
        done = 0

        def tick(n: int, channel: str = channel) -> None:
            nonlocal done
            done += n
            step(f"embed {channel}", done, len(texts))

        out[channel], embedded = embed_passages(embedder, texts, cache, known.get(channel), tick)
        report.embedded += embedded
    return out


def span_fields(docs: dict[str, dict[str, object]]) -> dict[str, tuple[int, int, str, bool]]:
    """doc_id -> (in_force_from, in_force_until, implied, gone) as stored on passages; see kb.timeline.

    None of these depends on today's date (the status an end implies is stored apart from the stated one),
    so filters on them stay right without rebuilding; kb.milvus_search applies today's date at query time.
    """
    far = spans(docs, today=datetime.date.max)  # every known end has passed: Span.validity is the implied one
    out = {}
    for doc_id, span in far.items():
        stated = docs[doc_id]["meta"].get("validity") or ""  # type: ignore[union-attr]
        implied = str(span.validity) if span.end and not stated else ""
        out[doc_id] = (date_int(span.start), date_int(span.end) or OPEN_END, implied,
                       span.end is None and stated in config.HIDDEN_VALIDITY)
    return out


def _span_key(fields: tuple[int, int, str, bool]) -> str:
    return "|".join(str(x) for x in fields)


def _write(db: MilvusDB, table: dict[str, dict[str, object]], fresh: list[tuple[Document, str, list[Chunk]]],
           vectors: dict[str, np.ndarray], drop: list[str], step: Progress) -> tuple[int, bool]:
    """Apply a build's changes to the stored doc table.

    Returns:
        The passages the collection holds afterwards, and whether anything was written.
    """
    before = {d: int(row["n_chunks"]) for d, row in table.items()}  # type: ignore[call-overload]
    for doc_id in drop:
        table.pop(doc_id, None)
    for doc, key, chunks in fresh:
        table[doc.doc_id] = {"title": doc.title, "meta": doc.meta.to_dict(), "n_chunks": len(chunks), "span": ""}
    derived = span_fields(table)
    total = sum(len(chunks) for _, _, chunks in fresh)
    rows: list[dict] = []
    i = 0
    for doc, _, chunks in fresh:  # rows are made a batch at a time: vectors as lists take 8x their array size
        for c in chunks:
            rows.append(_chunk_row(c, doc, derived[doc.doc_id], {ch: m[i] for ch, m in vectors.items()}))
            i += 1
            if len(rows) == BATCH or i == total:
                db.client.upsert(db.chunks, rows)
                rows = []
                step("write", i, total)
    for doc, _, chunks in fresh:  # an edited document may have fewer passages than before
        if before.get(doc.doc_id, 0) > len(chunks):
            db.client.delete(db.chunks, filter=f"doc_id == {quote(doc.doc_id)} and ordinal >= {len(chunks)}")
    replaced = [doc.doc_id for doc, _, _ in fresh if doc.doc_id in before]
    for start in range(0, max(len(drop), len(replaced)), 100):
        if drop[start:start + 100]:
            db.client.delete(db.chunks, filter=in_clause("doc_id", drop[start:start + 100]))
            db.client.delete(db.texts, filter=in_clause("doc_id", drop[start:start + 100]))
        if replaced[start:start + 100]:
            db.client.delete(db.texts, filter=in_clause("doc_id", replaced[start:start + 100]))
    texts, docs, size = [], [], 0
    for n, (doc, key, chunks) in enumerate(fresh, start=1):
        pieces = [doc.text[p:p + TEXT_PIECE_CHARS] for p in range(0, max(len(doc.text), 1), TEXT_PIECE_CHARS)]
        texts += [{"key": f"{doc.doc_id}#{k}", "doc_id": doc.doc_id, "part": k, "text": piece, "marker": MARKER}
                  for k, piece in enumerate(pieces)]
        size += len(doc.text)
        docs.append({"doc_id": doc.doc_id, "path": doc.path, "title": doc.title, "lang": doc.lang,
                     "meta": json.dumps(doc.meta.to_dict(), ensure_ascii=False),
                     "page_spans": json.dumps(doc.page_spans), "source_key": key, "n_chunks": len(chunks),
                     "n_parts": len(pieces), "span": _span_key(derived[doc.doc_id]), "marker": MARKER})
        if size > 1_000_000 or len(texts) >= BATCH or n == len(fresh):  # a few MB per request
            db.client.upsert(db.texts, texts)
            texts, size = [], 0
    # Document rows last: each is its document's commit marker (a killed build leaves the old key behind).
    for start in range(0, len(docs), BATCH):
        db.client.upsert(db.docs, docs[start:start + BATCH])
    if drop:
        db.client.delete(db.docs, ids=drop)
    stale = _update_spans(db, table, derived, {doc.doc_id for doc, _, _ in fresh})
    for name in (db.chunks, db.texts, db.docs):
        db.client.flush(name)
    return sum(int(row["n_chunks"]) for row in table.values()), bool(fresh or drop or stale)  # type: ignore[call-overload]


def _chunk_row(c: Chunk, doc: Document, span: tuple[int, int, str, bool], vecs: dict[str, np.ndarray]) -> dict:
    meta = doc.meta
    row: dict[str, object] = {f: getattr(c, f) for f in CHUNK_FIELDS}
    row.update(bm25_text=bm25_text(c.index_text()), hash=EmbeddingCache.key(c.index_text()),
               level=meta.level or "", issuer=meta.issuer or "", published=date_int(meta.published),
               effective=date_int(meta.effective), stated=meta.validity or "", in_force_from=span[0],
               in_force_until=span[1], implied=span[2], gone=span[3])
    row.update({ch: v.tolist() for ch, v in vecs.items()})
    return row


def _update_spans(db: MilvusDB, table: dict[str, dict[str, object]], derived: dict[str, tuple[int, int, str, bool]],
                  written: set[str]) -> int:
    """Rewrite the span columns of stored documents whose span changed (a new version ends the old one)."""
    stale = sorted(d for d in table if d not in written and table[d].get("span") != _span_key(derived[d]))
    for start in range(0, len(stale), 100):
        part = stale[start:start + 100]
        rows = []
        for row in iterate(db, db.chunks, in_clause("doc_id", part), ["chunk_id", "doc_id"]):
            f = derived[str(row["doc_id"])]
            rows.append({"chunk_id": row["chunk_id"], "in_force_from": f[0], "in_force_until": f[1],
                         "implied": f[2], "gone": f[3]})
        for s in range(0, len(rows), 1000):
            db.client.upsert(db.chunks, rows[s:s + 1000], partial_update=True)
        db.client.upsert(db.docs, [{"doc_id": d, "span": _span_key(derived[d])} for d in part], partial_update=True)
    if stale:
        log.info("in-force spans changed for %d stored documents", len(stale))
    return len(stale)


def _consolidate(db: MilvusDB, channels: dict[str, int], step: Progress) -> None:
    """milvus-lite: copy the passages into a new generation in reading order (one segment, global BM25
    statistics, ties broken as in a build from scratch), move the alias to it and drop the old one."""
    old = db.generation()
    new = generation_name(db, int(old.rsplit("_g", 1)[1]) + 1)
    if db.client.has_collection(new):
        db.client.drop_collection(new)
    create_chunks(db, new, channels)
    order = sorted(doc_rows(db), key=reading_order)
    fields = [f for f in _copy_fields(db, old) if f != "sparse"]
    done = 0
    for start in range(0, len(order), 200):
        rows = list(iterate(db, old, in_clause("doc_id", order[start:start + 200]), fields))
        rows.sort(key=lambda r: (reading_order(str(r["doc_id"])), int(r["ordinal"])))
        for s in range(0, len(rows), BATCH):
            db.client.insert(new, rows[s:s + BATCH])
        done += len(rows)
        step("consolidate", done, done)
    db.client.flush(new)
    db.client.alter_alias(new, db.chunks)
    db.client.drop_collection(old)


def _copy_fields(db: MilvusDB, name: str) -> list[str]:
    return [f["name"] for f in db.client.describe_collection(name)["fields"]]
