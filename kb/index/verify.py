"""Check that a built index is exactly what a build of the corpus would produce (CI runs this on the shipped index)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from kb import config
from kb.chunk import chunk_document
from kb.embed import tower
from kb.embed.cache import EmbeddingCache
from kb.embed.models import load_embedder
from kb.index.build import chunking_settings
from kb.index.generations import current_generation, read_manifest
from kb.index.loader import load_index
from kb.index.manifest import Manifest, WeightsInfo
from kb.index.vectors import rows_of
from kb.ingest.guard import report_id, safe_hash
from kb.ingest.read import read_document, walk_corpus
from kb.ingest.sidecars import load_sidecars
from kb.text.fold import fold, fold_signature

# fp16 storage and two engines for the same weights differ by far less than this.
MIN_COSINE = 0.98


def verify(corpus: Path, index_dir: Path, sample: int = 16, seed: int = 0, quick: bool = False) -> list[str]:
    """Problems found, one line each (empty when the index matches the corpus).

    Checks source hashes, chunking and folding settings, every document's chunks (offsets, text, hash),
    metadata and folded text in the quote index, and re-embeds a random sample of passages with each channel's
    model to compare the stored vectors. With quick, only the source hashes and settings are compared.
    """
    problems: list[str] = []
    gen = current_generation(index_dir)
    manifest = Manifest.from_dict(read_manifest(gen))
    if manifest.chunking != chunking_settings():
        problems.append(f"chunking settings differ: index {json.dumps(manifest.chunking)}, "
                        f"code {json.dumps(chunking_settings())}")
    fold_used = manifest.quote.fold if manifest.quote else None
    if fold_used != fold_signature():
        problems.append(f"quote index folded with {fold_used!r}, this code folds with {fold_signature()!r}")
    tower_info = manifest.question_tower
    if tower_info and tower.WEIGHTS.is_file() and tower_info.sha256 != tower.shipped().sha256:
        problems.append(
            f"question tower {tower_info.sha256[:12]} recorded, {tower.WEIGHTS.name} is {tower.shipped().sha256[:12]}"
        )
    rr, shipped_rr = manifest.reranker, WeightsInfo.of(config.RERANK_WEIGHTS)
    if rr and shipped_rr and rr.sha256 != shipped_rr.sha256:
        problems.append(f"reranker {rr.sha256[:12]} recorded, {shipped_rr.file} is {shipped_rr.sha256[:12]}")
    # A FIFO or a link to a device is refused unopened (None), as the build refused it (kb.ingest.guard).
    files = {report_id(doc_id): safe_hash(corpus, doc_id, path) for doc_id, path in walk_corpus(corpus)}
    recorded: dict[str, str | None] = {**manifest.files, **dict.fromkeys(manifest.skipped)}
    for doc_id in sorted(set(files) - set(recorded)):
        problems.append(f"{doc_id}: in the corpus, not in the index")
    for doc_id in sorted(set(recorded) - set(files)):
        problems.append(f"{doc_id}: in the index, no longer in the corpus")
    for doc_id, sha in sorted(manifest.files.items()):
        if doc_id in files and files[doc_id] != sha:
            problems.append(f"{doc_id}: changed since the index was built")
    if problems or quick:
        return problems
    index = load_index(index_dir)
    sidecars = load_sidecars(corpus)
    for doc_id in sorted(manifest.files):
        doc = read_document(corpus, doc_id, sidecars.get(doc_id))
        fresh = chunk_document(doc)
        stored = index.store.doc_chunks(doc_id)
        if fresh != stored:
            problems.append(f"{doc_id}: stored chunks differ from a fresh chunking ({len(stored)} vs {len(fresh)})")
        kept = index.docs.get(doc_id)
        if kept is None or (kept.title, kept.meta.to_dict()) != (doc.title, doc.meta.to_dict()):
            problems.append(f"{doc_id}: stored title or metadata differ from a fresh read")
        folded = fold(doc.text)
        indexed = index.quote.folded(index.quote.rows[doc_id]) if index.quote else None
        if indexed is None or folded.text != indexed.text or not np.array_equal(folded.origin, indexed.origin):
            problems.append(f"{doc_id}: quote index text differs from a fresh folding")
    if sample and index.vectors:
        rng = random.Random(seed)
        live = [int(r) for r in np.flatnonzero(index.row_live)]
        rows = sorted(rng.sample(live, min(sample, len(live))))
        chunks = index.store.chunks(rows)
        hashes = index.store.column_rows("hash", rows)
        for chunk, stored_hash in zip(chunks, hashes):
            if EmbeddingCache.key(chunk.index_text()) != stored_hash:
                problems.append(f"{chunk.chunk_id}: stored text hash does not match its text")
        for channel, vectors in index.vectors.items():
            embedder = load_embedder(manifest.channels[channel].model)
            fresh_vecs = embedder.passage([c.index_text() for c in chunks])
            stored_vecs = rows_of(vectors, rows)
            cos = np.sum(fresh_vecs * stored_vecs, axis=1) / np.maximum(np.linalg.norm(stored_vecs, axis=1), 1e-12)
            worst = float(cos.min())
            if worst < MIN_COSINE:
                problems.append(f"channel {channel}: re-embedded passages differ from the stored vectors "
                                f"(min cosine {worst:.4f} < {MIN_COSINE})")
    return problems
