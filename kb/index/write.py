"""How a build lays out a new generation: appended to the previous one, or compacted into one segment."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb import config
from kb.chunk import Chunk
from kb.embed.cache import EmbeddingCache, embed_passages
from kb.embed.models import Embedder
from kb.errors import IndexCorruptError
from kb.index import vectors
from kb.index.bm25 import CountsBuilder, TermCounts
from kb.index.manifest import Channel, Manifest, Segment
from kb.index.report import BuildReport, Progress
from kb.index.store import Store, link_or_copy, merge_ranges, open_store, write_segment
from kb.ingest.document import Document

# What a build writes besides the quote index: segments, deleted row ranges, channels.
Layout = tuple[list[Segment], list[tuple[int, int]], dict[str, Channel]]


@dataclass
class Changes:
    """Passages of the files read in this build."""

    docs: list[tuple[Document, str]] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    counts: CountsBuilder = field(default_factory=CountsBuilder)  # BM25 term counts, row by row

    @property
    def hashes(self) -> list[str]:
        return [EmbeddingCache.key(c.index_text()) for c in self.chunks]


def worth_compacting(prev: Store, replaced: list[tuple[int, int]], n_new: int, embedders: dict[str, Embedder],
                      manifest: Manifest | None) -> bool:
    """Rewrite everything when deleted rows or segments pile up, or a channel's model changed."""
    dead = prev.n_rows - prev.n_chunks + sum(b - a for a, b in replaced)
    if dead > config.COMPACT_DEAD_SHARE * (prev.n_rows + n_new) or len(prev.segments) >= config.MAX_SEGMENTS:
        return True
    channels = manifest.channels if manifest else {}
    return set(channels) != set(embedders) or any(channels[c].model != e.name for c, e in embedders.items())


def compacted(prev: Store | None, prev_gen: Path | None, prev_manifest: Manifest | None, new: Changes, name: str,
               tmp: Path,
               embedders: dict[str, Embedder], cache_dir: Path | None, ann_min_rows: int | None, report: BuildReport,
               step: Progress) -> Layout:
    """One segment holding every live passage: unchanged documents in their old order, then the files read now."""
    report.compacted = True
    with report.timed("store"):
        docs: list[tuple[Document, str]] = []
        chunks: list[Chunk] = []
        hashes: list[str] = []
        old_rows: list[int] = []
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
    channels: dict[str, Channel] = {}
    texts = [c.index_text() for c in chunks]
    for channel, embedder in embedders.items():
        known = _known_vectors(prev_gen, prev_manifest, channel, embedder)
        with report.timed(f"embed {channel}"):
            matrix = _embed(channel, embedder, texts, known, cache_dir, report, step)
        with report.timed("vectors"):
            index = vectors.create(matrix, vectors.kind_for(len(matrix), ann_min_rows))
            channels[channel] = _write_channel(tmp, channel, embedder, index)
    return [segment], [], channels


def appended(prev: Store, prev_gen: Path, prev_manifest: Manifest, new: Changes, replaced: list[tuple[int, int]],
              name: str, tmp: Path, embedders: dict[str, Embedder], cache_dir: Path | None,
              ann_min_rows: int | None, report: BuildReport, step: Progress) -> Layout:
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
    deleted = merge_ranges([*prev_manifest.deleted, *replaced])
    n_rows = segments[-1].end if segments else 0
    channels: dict[str, Channel] = {}
    texts = [c.index_text() for c in new.chunks]
    for channel, embedder in embedders.items():
        info = prev_manifest.channels[channel]
        if not new.chunks:
            link_or_copy(prev_gen / info.file, tmp / info.file)
            channels[channel] = info
            continue
        index = vectors.read(prev_gen / info.file)
        # An edited file mostly keeps its passages: their vectors are in the rows being replaced.
        old = [r for a, b in replaced for r in range(a, b)]
        old_hashes = prev.column_rows("hash", old)
        known = {str(h): v for h, v in zip(old_hashes, vectors.rows_of(index, old))}
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


def _write_channel(tmp: Path, channel: str, embedder: Embedder, index: vectors.Index) -> Channel:
    vectors.write(index, tmp / f"{channel}.faiss")
    return Channel(embedder.name, embedder.dim, f"{channel}.faiss",
                   (("faiss", vectors.describe(index)), ("kind", vectors.kind_of(index))))


def _known_vectors(gen: Path | None, manifest: Manifest | None, channel: str,
                   embedder: Embedder) -> dict[str, np.ndarray]:
    """Vectors of the previous generation by passage hash, when it used the same model."""
    info = manifest.channels.get(channel) if manifest else None
    if gen is None or manifest is None or info is None or info.model != embedder.name:
        return {}
    try:
        index = vectors.read(gen / info.file)
        store = open_store(gen, manifest)
        hashes = store.column("hash")
        store.close()
        if len(hashes) != index.ntotal:
            return {}
        matrix = vectors.all_rows(index)
    except (OSError, RuntimeError, IndexCorruptError):
        return {}
    return {str(h): matrix[i] for i, h in enumerate(hashes) if h is not None}
