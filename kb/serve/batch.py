"""Questions of concurrent searches embedded in one encoder call: a worker's requests queue here per channel and
one encoder thread embeds whatever has queued (up to MAX_BATCH) at once. Measured on the bundled index's
questions (docs/BENCHMARKS.md): e5 costs about 60% and USE about 30% of the CPU per question at batches of 4-8
than one at a time. A lone question goes straight through, with no waiting for company: under 20 users a
worker's four request threads make batches of about two, and holding a leader back for company (tried: 20 and
50 ms) left the core idle and cut throughput by a quarter.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from kb.embed.models import Embedder

MAX_BATCH = 8


class BatchingEmbedder:
    """An Embedder whose single-question `query` calls from many threads are answered by batched calls."""

    def __init__(self, inner: Embedder, max_batch: int = MAX_BATCH) -> None:
        self.inner, self.max_batch = inner, max_batch
        self.name, self.dim = inner.name, inner.dim
        self._cond = threading.Condition()
        self._queue: list[tuple[str, Future[np.ndarray]]] = []
        self._busy = False  # a thread is encoding a batch
        self.calls = 0  # encoder calls made (tests check that questions were batched)

    def passage(self, texts: list[str]) -> np.ndarray:
        return self.inner.passage(texts)

    def query(self, texts: list[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.inner.query(texts)
        future: Future[np.ndarray] = Future()
        with self._cond:
            self._queue.append((texts[0], future))
        while True:
            with self._cond:
                while self._busy and not future.done():
                    self._cond.wait()
                if future.done():
                    break
                # Nobody is encoding: this thread does, for the oldest questions queued (its own among them
                # or ahead of it), then hands over; each thread leads at most until its own answer is in.
                self._busy = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                self._encode(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        return future.result()[None, :]

    def _encode(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        self.calls += 1
        try:
            vectors = self.inner.query([text for text, _ in batch])
        except BaseException as exc:  # each waiting search gets the error, as if it had called alone
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors):
            future.set_result(vector)
