"""The worker processes of a build: one per core, single-threaded, started on first use and shared by the stages
that spread work over them (reading files, embedding passages)."""

from __future__ import annotations

import atexit
import threading
from concurrent.futures import ProcessPoolExecutor

_POOLS: dict[int, ProcessPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """The pool of `workers` processes, started now if it is not running."""
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            import multiprocessing

            # spawn, not fork: a forked child would inherit torch's thread pool in whatever state it is in.
            pool = _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            atexit.register(pool.shutdown)
        return pool


def drop_pool(workers: int) -> None:
    """Forget a pool whose processes died (BrokenProcessPool): the next shared_pool starts a new one."""
    with _LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
