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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb import config, qtower, vectors
from kb.bm25 import CountsBuilder, TermCounts
from kb.chunk import Chunk, read_passages
from kb.embed import Embedder, EmbeddingCache, embed_passages
from kb.errors import IndexCorruptError, IndexMissingError, IngestError
from kb.generations import (CURRENT, FORMAT, MANIFEST, build_lock, current_generation, next_generation, prune,
                            publish, read_manifest)
from kb.ingest import Document, file_sha256, load_sidecars, read_sidecar, walk_corpus
from kb.lexical import TOKENIZER_VERSION, tokenize_many
from kb.quoteindex import QUOTE_FILE, write_quote_index
from kb.store import Segment, Store, link_or_copy, merge_ranges, open_store, write_segment

__all__ = ["CURRENT", "FORMAT", "MANIFEST", "BuildReport", "build", "chunking_settings", "current_generation",
           "read_manifest"]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


def chunking_settings() -> dict[str, object]:
    """The settings that decide chunk boundaries; a change forces every file to be re-chunked."""
    return {"version": config.CHUNKER_VERSION, "zh_max_chars": config.ZH_MAX_CHARS,
            "en_chunk_chars": config.EN_CHUNK_CHARS, "en_chunk_overlap": config.EN_CHUNK_OVERLAP,
            "tokenizer": TOKENIZER_VERSION}


@dataclass
class BuildReport:
    """What a build did, for the CLI summary and the benchmark."""

    indexed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    generation: str = ""
    compacted: bool = False
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t0


@dataclass
class _New:
    """Passages of the files read in this build."""

    docs: list[tuple[Document, str]] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    counts: CountsBuilder = field(default_factory=CountsBuilder)  # BM25 term counts, row by row

    @property
    def hashes(self) -> list[str]:
        return [EmbeddingCache.key(c.index_text()) for c in self.chunks]


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
    with build_lock(index_dir):
        prev_gen, prev_manifest, prev = _previous(index_dir)
        entries = prev.entries if prev else {}
        keys: dict[str, str] = {}  # live doc_id -> source key, in reading order
        new = _New()
        warm = prev is not None  # an update: load the models while the changed files are read
        with report.timed("read"):
            sidecars = load_sidecars(corpus)
            for n, (doc_id, path) in enumerate(files):
                step("read", n, len(files))
                try:
                    key = _source_key(path, sidecars.get(doc_id, {}))
                    if doc_id in entries and entries[doc_id].source_key == key:
                        report.reused.append(doc_id)
                        keys[doc_id] = key
                        continue
                    if warm:
                        _warm_up(embedders)
                        warm = False
                    doc, doc_chunks = read_passages(corpus, doc_id, sidecars.get(doc_id))
                    doc_tokens = tokenize_many([c.index_text() for c in doc_chunks])
                except IngestError as exc:
                    report.skipped[doc_id] = exc.reason
                    log.warning("skipped %s: %s", doc_id, exc.reason)
                    continue
                except OSError as exc:  # the source key's hashing failed (a link loop, a vanished file)
                    report.skipped[doc_id] = f"unreadable ({exc.strerror or exc})"
                    continue
                report.indexed.append(doc_id)
                keys[doc_id] = key
                new.docs.append((doc, key))
                new.chunks.extend(doc_chunks)
                new.counts.add(doc_tokens)
            step("read", len(files), len(files))
        report.removed = sorted(set(entries) - set(keys) - set(report.skipped))
        replaced = sorted((e.first_row, e.first_row + e.n_chunks) for d, e in entries.items() if d not in report.reused)
        name = next_generation(index_dir)
        tmp = index_dir / f"{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if prev is None or compact or _worth_compacting(prev, replaced, len(new.chunks), embedders, prev_manifest):
                layout = _compacted(prev, prev_gen, prev_manifest, new, name, tmp, embedders, cache_dir, ann_min_rows,
                                    report, step)
            else:
                layout = _appended(prev, prev_gen, prev_manifest, new, replaced, name, tmp, embedders, cache_dir,
                                   ann_min_rows, report, step)
            segments, deleted, channels = layout
            with report.timed("quote index"):
                step("quote index", 0, 1)
                quote = write_quote_index(tmp / QUOTE_FILE, keys, [d for d, _ in new.docs],
                                          prev_gen / QUOTE_FILE if prev_gen else None,
                                          prev.document if prev is not None else None)
                step("quote index", 1, 1)
            n_rows = segments[-1].end if segments else 0
            report.chunks = n_rows - sum(b - a for a, b in deleted)
            manifest = {
                "format": FORMAT, "kb_version": config.VERSION, "generation": name,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "chunking": chunking_settings(),
                "bm25": {"k1": config.BM25_K1, "b": config.BM25_B, "method": "lucene",
                         "postings": "per segment, scored at query time over live rows"},
                "channels": channels,
                **qtower.manifest_fields(embedders),
                "quote": quote,
                "segments": [s.to_dict() for s in segments], "deleted": [list(r) for r in deleted],
                "counts": {"documents": len(keys), "chunks": report.chunks, "rows": n_rows,
                           "skipped": len(report.skipped)},
                "files": {d: key.split(":")[0] for d, key in keys.items()},
                "skipped": report.skipped,
            }
            with report.timed("publish"):
                (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
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


def _previous(index_dir: Path) -> tuple[Path | None, dict, Store | None]:
    """The last build, and its store when its documents can be reused (same chunking settings)."""
    try:
        gen = current_generation(index_dir)
        manifest = read_manifest(gen)
    except (IndexMissingError, IndexCorruptError) as exc:
        if not isinstance(exc, IndexMissingError):
            log.warning("previous index unusable (%s): full rebuild", exc)
        return None, {}, None
    if manifest.get("chunking") != chunking_settings():
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
        return None, {}, None


def _worth_compacting(prev: Store, replaced: list[tuple[int, int]], n_new: int, embedders: dict[str, Embedder],
                      manifest: dict) -> bool:
    """Rewrite everything when deleted rows or segments pile up, or a channel's model changed."""
    dead = prev.n_rows - prev.n_chunks + sum(b - a for a, b in replaced)
    if dead > config.COMPACT_DEAD_SHARE * (prev.n_rows + n_new) or len(prev.segments) >= config.MAX_SEGMENTS:
        return True
    channels = manifest.get("channels") or {}
    return set(channels) != set(embedders) or any(channels[c].get("model") != e.name for c, e in embedders.items())


def _compacted(prev: Store | None, prev_gen: Path | None, prev_manifest: dict, new: _New, name: str, tmp: Path,
               embedders: dict[str, Embedder], cache_dir: Path | None, ann_min_rows: int | None, report: BuildReport,
               step: Progress) -> tuple[list[Segment], list[tuple[int, int]], dict]:
    """One segment holding every live passage: unchanged documents in their old order, then the files read now."""
    report.compacted = True
    with report.timed("store"):
        docs, chunks, hashes, old_rows = [], [], [], []
        if prev is not None:
            docs, chunks, hashes, old_rows = prev.export(sorted(report.reused, key=lambda d: prev.entries[d].first_row))
        parts = [new.counts.build()]
        if prev is not None and old_rows:
            parts.insert(0, _segment_counts(prev).take(np.asarray(old_rows)))
        counts = TermCounts.concat(parts)
        docs, chunks, hashes = docs + new.docs, chunks + new.chunks, hashes + new.hashes
        segment = Segment(f"chunks-{name[1:]}", 0, len(chunks))
        write_segment(tmp / f"{segment.name}.sqlite", docs, chunks, hashes, 0)
        counts.write(tmp / f"{segment.name}.terms", 0)
    channels = {}
    texts = [c.index_text() for c in chunks]
    for channel, embedder in embedders.items():
        known = _known_vectors(prev_gen, prev_manifest, channel, embedder)
        with report.timed(f"embed {channel}"):
            matrix = _embed(channel, embedder, texts, known, cache_dir, report, step)
        with report.timed("vectors"):
            index = vectors.create(matrix, vectors.kind_for(len(matrix), ann_min_rows))
            channels[channel] = _write_channel(tmp, channel, embedder, index)
    return [segment], [], channels


def _appended(prev: Store, prev_gen: Path, prev_manifest: dict, new: _New, replaced: list[tuple[int, int]],
              name: str, tmp: Path, embedders: dict[str, Embedder], cache_dir: Path | None,
              ann_min_rows: int | None, report: BuildReport, step: Progress
              ) -> tuple[list[Segment], list[tuple[int, int]], dict]:
    """The previous segments shared, one new segment with the files read now, the rows they replace deleted."""
    first = prev.n_rows
    segments = list(prev.segments)
    with report.timed("store"):
        for seg in segments:
            link_or_copy(prev_gen / f"{seg.name}.sqlite", tmp / f"{seg.name}.sqlite")
            (tmp / f"{seg.name}.terms").mkdir()
            for f in (prev_gen / f"{seg.name}.terms").iterdir():
                link_or_copy(f, tmp / f"{seg.name}.terms" / f.name)
        if new.chunks:
            segment = Segment(f"chunks-{name[1:]}", first, first + len(new.chunks))
            write_segment(tmp / f"{segment.name}.sqlite", new.docs, new.chunks, new.hashes, first)
            new.counts.build().write(tmp / f"{segment.name}.terms", first)
            segments.append(segment)
    deleted = merge_ranges([(a, b) for a, b in (prev_manifest.get("deleted") or [])] + replaced)
    n_rows = segments[-1].end if segments else 0
    channels = {}
    texts = [c.index_text() for c in new.chunks]
    for channel, embedder in embedders.items():
        info = prev_manifest["channels"][channel]
        if not new.chunks:
            link_or_copy(prev_gen / str(info["file"]), tmp / str(info["file"]))
            channels[channel] = info
            continue
        index = vectors.read(prev_gen / str(info["file"]))
        # An edited file mostly keeps its passages: their vectors are in the rows being replaced.
        old = [r for a, b in replaced for r in range(a, b)]
        old_hashes = prev.column_rows("hash", old)
        known = dict(zip(old_hashes, vectors.rows_of(index, old)))
        with report.timed(f"embed {channel}"):
            matrix = _embed(channel, embedder, texts, known, cache_dir, report, step)
        with report.timed("vectors"):
            live = n_rows - sum(b - a for a, b in deleted)
            kind = vectors.kind_for(live, ann_min_rows)
            if kind != vectors.kind_of(index):
                index = vectors.create(np.concatenate([vectors.all_rows(index), matrix]), kind)
            else:
                vectors.append(index, matrix)
            channels[channel] = _write_channel(tmp, channel, embedder, index)
    return segments, deleted, channels


def _segment_counts(store: Store) -> TermCounts:
    return TermCounts.concat([TermCounts.read(store.folder / f"{s.name}.terms", s.start) for s in store.segments])


def _embed(channel: str, embedder: Embedder, texts: list[str], known: dict[str, np.ndarray], cache_dir: Path | None,
           report: BuildReport, step: Progress) -> np.ndarray:
    cache = EmbeddingCache(cache_dir / f"embeddings-{embedder.name.replace('/', '_')}.sqlite" if cache_dir else None)
    matrix, embedded = embed_passages(embedder, texts, cache, known,
                                      lambda done, total: step(f"embed {channel}", done, total))
    report.embedded += embedded
    return matrix


def _write_channel(tmp: Path, channel: str, embedder: Embedder, index: object) -> dict[str, object]:
    vectors.write(index, tmp / f"{channel}.faiss")
    return {"model": embedder.name, "dim": embedder.dim, "file": f"{channel}.faiss",
            "faiss": vectors.describe(index), "kind": vectors.kind_of(index)}


def _known_vectors(gen: Path | None, manifest: dict, channel: str, embedder: Embedder) -> dict[str, np.ndarray]:
    """Vectors of the previous generation by passage hash, when it used the same model."""
    info = (manifest.get("channels") or {}).get(channel)
    if gen is None or not info or info.get("model") != embedder.name:
        return {}
    try:
        index = vectors.read(gen / str(info["file"]))
        store = open_store(gen, manifest)
        hashes = store.column("hash")
        store.close()
        if len(hashes) != index.ntotal:
            return {}
        matrix = vectors.all_rows(index)
    except (OSError, RuntimeError, IndexCorruptError):
        return {}
    return {h: matrix[i] for i, h in enumerate(hashes) if h is not None}


def _warm_up(embedders: dict[str, Embedder]) -> None:
    """Start loading models in the background: an update's model load (2-5 s) then overlaps reading and writing."""
    for embedder in embedders.values():
        warm = getattr(embedder, "warm", None)
        if warm is not None:
            threading.Thread(target=warm, name="kb-warm-up", daemon=True).start()


def _source_key(path: Path, overrides: dict[str, str]) -> str:
    """File hash plus its metadata overrides and META_VERSION: editing metadata.csv or a .meta.json, or a
    change in what is read from texts, re-reads the file."""
    extra = json.dumps({**overrides, **read_sidecar(path), "meta_version": config.META_VERSION}, sort_keys=True,
                       ensure_ascii=False)
    return file_sha256(path) + ":" + hashlib.sha1(extra.encode()).hexdigest()[:12]
