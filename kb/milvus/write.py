"""Applying a build's changes to the Milvus collections: documents, passages, texts, in-force spans."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import numpy as np

from kb import config
from kb.catalog.filters import OPEN_END, date_int
from kb.catalog.timeline import spans
from kb.chunk import Chunk
from kb.embed.cache import EmbeddingCache
from kb.index.report import Progress
from kb.ingest.document import DocRow, Document
from kb.milvus.schema import (
    CHUNK_FIELDS,
    MARKER,
    TEXT_PIECE_CHARS,
    bm25_text,
    create_chunks,
    generation_name,
    reading_order,
)
from kb.milvus.store import MilvusDB, doc_rows, in_clause, iterate, quote

log = logging.getLogger(__name__)

BATCH = 256  # rows per insert: a few MB of vectors, well under gRPC's message limit


def span_fields(table: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int, str, bool]]:
    """doc_id -> (in_force_from, in_force_until, implied, gone) as stored on passages; see kb.catalog.timeline.

    None of these depends on today's date (the status an end implies is stored apart from the stated one),
    so filters on them stay right without rebuilding; kb.milvus.search applies today's date at query time.
    """
    docs = {d: DocRow.from_dict(d, row) for d, row in table.items()}
    far = spans(docs, today=datetime.date.max)  # every known end has passed: Span.validity is the implied one
    out = {}
    for doc_id, span in far.items():
        stated = docs[doc_id].meta.validity or ""
        implied = str(span.validity) if span.end and not stated else ""
        out[doc_id] = (
            date_int(span.start),
            date_int(span.end) or OPEN_END,
            implied,
            span.end is None and stated in config.HIDDEN_VALIDITY,
        )
    return out


def _span_key(fields: tuple[int, int, str, bool]) -> str:
    return "|".join(str(x) for x in fields)


def write_changes(
    db: MilvusDB,
    table: dict[str, dict[str, Any]],
    fresh: list[tuple[Document, str, list[Chunk]]],
    vectors: dict[str, np.ndarray],
    drop: list[str],
    step: Progress,
) -> tuple[int, bool]:
    """Apply a build's changes to the stored doc table.

    Returns:
        The passages the collection holds afterwards, and whether anything was written.
    """
    before = {d: int(row["n_chunks"]) for d, row in table.items()}
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
        if drop[start : start + 100]:
            db.client.delete(db.chunks, filter=in_clause("doc_id", drop[start : start + 100]))
            db.client.delete(db.texts, filter=in_clause("doc_id", drop[start : start + 100]))
        if replaced[start : start + 100]:
            db.client.delete(db.texts, filter=in_clause("doc_id", replaced[start : start + 100]))
    texts, docs, size = [], [], 0
    for n, (doc, key, chunks) in enumerate(fresh, start=1):
        pieces = [doc.text[p : p + TEXT_PIECE_CHARS] for p in range(0, max(len(doc.text), 1), TEXT_PIECE_CHARS)]
        texts += [
            {"key": f"{doc.doc_id}#{k}", "doc_id": doc.doc_id, "part": k, "text": piece, "marker": MARKER}
            for k, piece in enumerate(pieces)
        ]
        size += len(doc.text)
        docs.append(
            {
                "doc_id": doc.doc_id,
                "path": doc.path,
                "title": doc.title,
                "lang": doc.lang,
                "meta": json.dumps(doc.meta.to_dict(), ensure_ascii=False),
                "page_spans": json.dumps(doc.page_spans),
                "source_key": key,
                "n_chunks": len(chunks),
                "n_parts": len(pieces),
                "span": _span_key(derived[doc.doc_id]),
                "marker": MARKER,
            }
        )
        if size > 1_000_000 or len(texts) >= BATCH or n == len(fresh):  # a few MB per request
            db.client.upsert(db.texts, texts)
            texts, size = [], 0
    # Document rows last: each is its document's commit marker (a killed build leaves the old key behind).
    for start in range(0, len(docs), BATCH):
        db.client.upsert(db.docs, docs[start : start + BATCH])
    if drop:
        for start in range(0, len(drop), 100):  # not ids=: pymilvus does not escape them
            db.client.delete(db.docs, filter=in_clause("doc_id", drop[start : start + 100]))
    stale = _update_spans(db, table, derived, {doc.doc_id for doc, _, _ in fresh})
    for name in (db.chunks, db.texts, db.docs):
        db.client.flush(name)
    return sum(int(row["n_chunks"]) for row in table.values()), bool(fresh or drop or stale)


def _chunk_row(c: Chunk, doc: Document, span: tuple[int, int, str, bool], vecs: dict[str, np.ndarray]) -> dict:
    meta = doc.meta
    row: dict[str, object] = {f: getattr(c, f) for f in CHUNK_FIELDS}
    row.update(
        bm25_text=bm25_text(c.index_text()),
        hash=EmbeddingCache.key(c.index_text()),
        level=meta.level or "",
        issuer=meta.issuer or "",
        published=date_int(meta.published),
        effective=date_int(meta.effective),
        stated=meta.validity or "",
        in_force_from=span[0],
        in_force_until=span[1],
        implied=span[2],
        gone=span[3],
    )
    row.update({ch: v.tolist() for ch, v in vecs.items()})
    return row


def _update_spans(
    db: MilvusDB, table: dict[str, dict[str, Any]], derived: dict[str, tuple[int, int, str, bool]], written: set[str]
) -> int:
    """Rewrite the span columns of stored documents whose span changed (a new version ends the old one)."""
    stale = sorted(d for d in table if d not in written and table[d].get("span") != _span_key(derived[d]))
    for start in range(0, len(stale), 100):
        part = stale[start : start + 100]
        rows = []
        for row in iterate(db, db.chunks, in_clause("doc_id", part), ["chunk_id", "doc_id"]):
            f = derived[str(row["doc_id"])]
            rows.append(
                {
                    "chunk_id": row["chunk_id"],
                    "in_force_from": f[0],
                    "in_force_until": f[1],
                    "implied": f[2],
                    "gone": f[3],
                }
            )
        for s in range(0, len(rows), 1000):
            db.client.upsert(db.chunks, rows[s : s + 1000], partial_update=True)
        db.client.upsert(db.docs, [{"doc_id": d, "span": _span_key(derived[d])} for d in part], partial_update=True)
    if stale:
        log.info("in-force spans changed for %d stored documents", len(stale))
    return len(stale)


def consolidate(db: MilvusDB, channels: dict[str, int], step: Progress) -> None:
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
        rows = list(iterate(db, old, in_clause("doc_id", order[start : start + 200]), fields))
        rows.sort(key=lambda r: (reading_order(str(r["doc_id"])), int(r["ordinal"])))
        for s in range(0, len(rows), BATCH):
            db.client.insert(new, rows[s : s + BATCH])
        done += len(rows)
        step("consolidate", done, done)
    db.client.flush(new)
    db.client.alter_alias(new, db.chunks)
    db.client.drop_collection(old)


def _copy_fields(db: MilvusDB, name: str) -> list[str]:
    return [f["name"] for f in db.client.describe_collection(name)["fields"]]
