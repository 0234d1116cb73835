"""Passage vectors by content hash: an SQLite cache, and embedding only what neither it nor the previous index holds."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kb import config
from kb.embed.models import Embedder

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Passage vectors keyed by model and text hash, in SQLite, so unchanged passages are never re-embedded."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(path), timeout=30)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS vec (model TEXT, key TEXT, v BLOB, PRIMARY KEY (model, key))"
                )
            except sqlite3.Error as exc:
                log.warning("embedding cache %s unusable (%s); continuing without it", path, exc)
                self._db = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def get(self, model: str, keys: list[str], dim: int) -> dict[str, np.ndarray]:
        if self._db is None or not keys:
            return {}
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            batch = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, v FROM vec WHERE model=? AND key IN ({','.join('?' * len(batch))})", [model, *batch]
            )
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[key] = vec
        return found

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        if self._db is None or not items:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                [(model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )


def embed_passages(
    embedder: Embedder,
    texts: list[str],
    cache: EmbeddingCache,
    known: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Embed passages, reusing vectors from `known` (previous index) and the cache by text hash.

    Sorting by length before batching keeps padding, and so wasted work, small.

    Args:
        progress: called as (done, total) over the passages that really need the model, so an ETA is honest.
    Returns:
        The (n, dim) matrix in input order, and how many passages were actually embedded.
    """
    keys = [EmbeddingCache.key(t) for t in texts]
    have = dict(known or {})
    missing_keys = [k for k in dict.fromkeys(keys) if k not in have]
    have.update(cache.get(embedder.name, missing_keys, embedder.dim))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in have}.items(), key=lambda kv: len(kv[1]))
    if progress:
        progress(0, len(todo))
    step = config.EMBED_BATCH * 16  # enough batches per call to keep every worker busy
    for i in range(0, len(todo), step):
        batch = todo[i : i + step]
        vectors = embedder.passage([t for _, t in batch])
        fresh = {k: v for (k, _), v in zip(batch, vectors)}
        cache.put(embedder.name, fresh)
        have.update(fresh)
        if progress:
            progress(i + len(batch), len(todo))
    matrix = np.stack([have[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, embedder.dim), np.float32)
    return matrix, len(todo)
