"""Which passages of an index cite a given article: the references of every passage, resolved once per
generation and inverted (the first `GET /references` after a build pays for it; later ones are lookups)."""

from __future__ import annotations

import logging
import threading
import time

from kb.catalog.resolve import Resolved
from kb.chunk import Chunk
from kb.search.contract import Backend

log = logging.getLogger(__name__)

MAX_CITING = 200  # passages listed as citing one article (a much-cited article lists its first 200)


class CitedBy:
    """(doc_id, article_no) -> the passages whose references resolve to that article, in index order."""

    def __init__(self, searcher: Backend) -> None:
        self.searcher = searcher
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._map: dict[tuple[str, int], list[tuple[Chunk, Resolved]]] = {}

    def citing(self, chunk: Chunk) -> list[tuple[Chunk, Resolved]]:
        """Passages elsewhere that cite this passage's article (none for a passage outside numbered articles)."""
        if chunk.article_no is None:
            return []
        found = self._inverted().get((chunk.doc_id, chunk.article_no), [])
        return [(c, r) for c, r in found if c.chunk_id != chunk.chunk_id][:MAX_CITING]

    def _inverted(self) -> dict[tuple[str, int], list[tuple[Chunk, Resolved]]]:
        generation = self.searcher.generation
        with self._lock:
            if generation != self._generation:
                started = time.perf_counter()
                self._map = _invert(self.searcher)
                self._generation = generation
                log.info("cited-by map of %s: %.1fs", generation, time.perf_counter() - started)
            return self._map


def _invert(searcher: Backend) -> dict[tuple[str, int], list[tuple[Chunk, Resolved]]]:
    out: dict[tuple[str, int], list[tuple[Chunk, Resolved]]] = {}
    for row in searcher.documents():
        for chunk in searcher.source(str(row["doc_id"]))[1]:
            if "第" not in chunk.text:  # a reference to another article names 第X条 (前款 stays in its own)
                continue
            for ref in searcher.references(chunk):
                if ref.target is not None:
                    out.setdefault((ref.target.doc_id, ref.target.article_no), []).append((chunk, ref))
    return out
