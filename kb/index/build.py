"""Build the index folder from a corpus, atomically and incrementally.

Only new and changed files are read, chunked, tokenized and embedded, and only their passages are written:
they become a new store segment (passages + BM25 postings) with the next row numbers, the rows they replace
are marked deleted, the previous segments are hard-linked, and the vectors are appended to the previous
FAISS index. Once deleted rows pile up, a build compacts everything into one segment. Every build writes a new generation folder and publishes it by renaming, so a build that fails or
is killed leaves the previous index in service.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb import config

from kb.index import vectors
from kb.index.bm25 import CountsBuilder, TermCounts
from kb.chunk import Chunk
from kb.embed import tower
from kb.embed.cache import EmbeddingCache, embed_passages
from kb.embed.models import Embedder
from kb.errors import IndexCorruptError, IndexMissingError, IndexWriteError, IngestError
from kb.index.generations import (CURRENT, FORMAT, MANIFEST, build_lock, current_generation, next_generation, prune,
                            publish, read_manifest)
from kb.ingest.document import Document
from kb.ingest.guard import guarded, skip, source_key
from kb.ingest.read import walk_corpus
from kb.ingest.sidecars import load_sidecars
from kb.text.lexical import TOKENIZER_VERSION
from kb.index.reading import read_many
from kb.index.quotes import QUOTE_FILE, write_quote_index
from kb.index.citedby import CITEDBY_FILE, write_citedby
from kb.catalog.resolve import Resolver
from kb.index.manifest import Channel, Counts, Manifest, QuoteInfo, Segment, WeightsInfo
from kb.index.report import BuildReport, Progress
from kb.index.store import Store, open_store
from kb.index.write import Changes, appended, compacted, worth_compacting

log = logging.getLogger(__name__)


def chunking_settings() -> dict[str, object]:
    """The settings that decide chunk boundaries; a change forces every file to be re-chunked."""
    return {"version": config.CHUNKER_VERSION, "zh_max_chars": config.ZH_MAX_CHARS,
            "en_chunk_chars": config.EN_CHUNK_CHARS, "en_chunk_overlap": config.EN_CHUNK_OVERLAP,
            "tokenizer": TOKENIZER_VERSION}


def build(corpus: Path, index_dir: Path, embedders: dict[str, Embedder], progress: Progress | None = None,
          cache_dir: Path | None = config.CACHE_DIR, *, compact: bool = False,
          ann_min_rows: int | None = None) -> BuildReport:
    """Build or update the index for a corpus; the previous index stays usable until the new one is complete.

    Args:
        embedders: channel name ('dense', 'xling') -> embedder; may be empty for a BM25-only index.
        progress: called as (stage, done, total) for progress bars.
        compact: rewrite every row in one segment even when an append would do.
        ann_min_rows: passages from which vectors go into an IVF index (default config.ANN_MIN_ROWS).
    Raises:
        CorpusError: the corpus folder is missing.
        KbError: another build holds the lock.
    """
    t0 = time.time()
    report = BuildReport()
    step = progress or (lambda stage, done, total: None)
    files = list(walk_corpus(corpus))
    with _writing(index_dir), build_lock(index_dir):
        prev_gen, prev_manifest, prev = _previous(index_dir)
        entries = prev.entries if prev else {}
        keys: dict[str, str] = {}  # live doc_id -> source key, in reading order
        new = Changes()
        with report.timed("read"):
            sidecars = load_sidecars(corpus)
            todo: list[tuple[str, dict[str, str] | None]] = []
            for doc_id, path in files:
                try:
                    with guarded(doc_id):  # any error of this one file skips it (kb.ingest.guard)
                        keys[doc_id] = source_key(corpus, doc_id, path, sidecars.get(doc_id, {}))
                except IngestError as exc:
                    skip(report.skipped, exc, doc_id)
                    continue
                if doc_id in entries and entries[doc_id].source_key == keys[doc_id]:
                    report.reused.append(doc_id)
                else:
                    todo.append((doc_id, sidecars.get(doc_id)))
            if todo and prev is not None:  # an update: load the models while the changed files are read
                _warm_up(embedders)
            step("read", len(report.reused), len(files))
            for n, got in enumerate(read_many(corpus, todo), len(report.reused) + 1):
                if got.doc is None:
                    del keys[got.doc_id]
                    skip(report.skipped, IngestError(got.doc_id, got.error or "unreadable"), got.doc_id)
                else:
                    report.indexed.append(got.doc_id)
                    new.docs.append((got.doc, keys[got.doc_id]))
                    new.chunks.extend(got.chunks)
                    new.counts.add(got.tokens)
                step("read", n, len(files))
            step("read", len(files), len(files))
        report.removed = sorted(set(entries) - set(keys) - set(report.skipped))
        replaced = sorted((e.first_row, e.first_row + e.n_chunks) for d, e in entries.items() if d not in report.reused)
        name = next_generation(index_dir)
        tmp = index_dir / f"{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if prev is None or compact or worth_compacting(prev, replaced, len(new.chunks), embedders, prev_manifest):
                layout = compacted(prev, prev_gen, prev_manifest, new, name, tmp, embedders, cache_dir, ann_min_rows,
                                    report, step)
            else:
                assert prev_gen is not None and prev_manifest is not None  # _previous gives a store only with both
                layout = appended(prev, prev_gen, prev_manifest, new, replaced, name, tmp, embedders, cache_dir,
                                   ann_min_rows, report, step)
            segments, deleted, channels = layout
            with report.timed("quote index"):
                step("quote index", 0, 1)
                quote = write_quote_index(tmp / QUOTE_FILE, keys, [d for d, _ in new.docs],
                                          prev_gen / QUOTE_FILE if prev_gen else None,
                                          prev.document if prev is not None else None)
                step("quote index", 1, 1)
            with report.timed("cited-by"):
                step("cited-by", 0, 1)
                cited_by = _cited_by(tmp, segments, deleted, [d.doc_id for d, _ in new.docs], prev_gen, prev)
                step("cited-by", 1, 1)
            n_rows = segments[-1].end if segments else 0
            report.chunks = n_rows - sum(b - a for a, b in deleted)
            manifest = Manifest(
                format=FORMAT, kb_version=config.VERSION, generation=name,
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                chunking=chunking_settings(),
                bm25={"k1": config.BM25_K1, "b": config.BM25_B, "method": "lucene",
                      "postings": "per segment, scored at query time over live rows"},
                channels=channels, quote=QuoteInfo.from_dict(quote), segments=tuple(segments),
                deleted=tuple(deleted), counts=Counts(len(keys), report.chunks, n_rows, len(report.skipped)),
                files={d: key.split(":")[0] for d, key in keys.items()}, skipped=dict(report.skipped),
                question_tower=tower.for_build(embedders), reranker=WeightsInfo.of(config.RERANK_WEIGHTS),
                cited_by=cited_by)
            with report.timed("publish"):
                (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), ensure_ascii=False, indent=1),
                                            encoding="utf-8")
                publish(index_dir, tmp, name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if prev is not None:
                prev.close()
        prune(index_dir, keep=name)
    report.generation = name
    report.seconds = time.time() - t0
    return report


@contextmanager
def _writing(index_dir: Path) -> Iterator[None]:
    """A build that cannot write (disk full, read-only folder) ends with one line; the previous index is kept.

    Raises:
        IndexWriteError: an OSError or SQLite error while writing; per-file read errors never get here
            (kb.ingest.guard).
    """
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise IndexWriteError(f"cannot write the index at {index_dir}: {what}{where}; the previous index is kept: "
                              "free disk space or make the folder writable, then build again") from exc


def _previous(index_dir: Path) -> tuple[Path | None, Manifest | None, Store | None]:
    """The last build, and its store when its documents can be reused (same chunking settings)."""
    try:
        gen = current_generation(index_dir)
        manifest = Manifest.from_dict(read_manifest(gen))
    except (IndexMissingError, IndexCorruptError) as exc:
        if not isinstance(exc, IndexMissingError):
            log.warning("previous index unusable (%s): full rebuild", exc)
        return None, None, None
    if manifest.chunking != chunking_settings():
        log.info("chunking settings changed since the last build: re-reading every file")
        return gen, manifest, None
    try:
        store = open_store(gen, manifest)
        missing = [s.name for s in store.segments if not (gen / f"{s.name}.terms" / "rows.npy").is_file()]
        if missing:
            raise IndexCorruptError(f"postings of {missing[0]} missing")
        return gen, manifest, store
    except Exception as exc:  # a damaged old store only costs a full rebuild
        log.warning("previous index at %s unreadable (%s): full rebuild", gen, exc)
        return None, None, None


def _cited_by(tmp: Path, segments: list[Segment], deleted: list[tuple[int, int]], fresh: list[str],
              prev_gen: Path | None, prev: Store | None) -> dict[str, object]:
    """The new generation's cited-by table (kb.index.citedby), from the previous one where it can."""
    store = Store(tmp, list(segments), list(deleted))
    try:
        docs = {d.doc_id: d for d in store.doc_table()}
        before = {d.doc_id: d.title for d in prev.doc_table()} if prev is not None else {}
        return write_citedby(tmp / CITEDBY_FILE, store, Resolver(docs, store), fresh,
                             prev_gen / CITEDBY_FILE if prev_gen and prev is not None else None, before)
    finally:
        store.close()


def _warm_up(embedders: dict[str, Embedder]) -> None:
    """Start loading models in the background: an update's model load (2-5 s) then overlaps reading and writing."""
    for embedder in embedders.values():
        warm = getattr(embedder, "warm", None)
        if warm is not None:
            threading.Thread(target=warm, name="kb-warm-up", daemon=True).start()
