"""The worker processes of a build: one per core, single-threaded, started on first use and shared by the stages
that spread work over them (reading files, embedding passages)."""

from __future__ import annotations

import atexit
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_POOLS: dict[int, ProcessPoolExecutor] = {}
_LOCK = threading.Lock()
# How often a worker checks that the process which started it is alive (seconds).
PARENT_CHECK = 1.0


def _exit_with_parent(parent: int) -> None:
    """Runs in each worker as it starts: end the worker once its parent is gone.

    A parent killed without its atexit handlers (SIGTERM from a supervisor, SIGKILL, the OOM killer) never shuts its
    pool down, and a worker waiting for its next task never notices: each worker holds both ends of the task queue,
    so no end-of-file reaches it. Two e5 workers left that way held 1.1 GB each, idle, until they were killed by
    hand. Once the parent dies the worker's parent id changes (to init or a subreaper), which a daemon thread sees.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(1)  # no cleanup to wait for: results have nowhere to go

    threading.Thread(target=watch, name="kb-parent-watch", daemon=True).start()


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """The pool of `workers` processes, started now if it is not running."""
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            import multiprocessing

            # spawn, not fork: a forked child would inherit torch's thread pool in whatever state it is in.
            pool = _POOLS[workers] = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
            atexit.register(pool.shutdown)
        return pool


def drop_pool(workers: int) -> None:
    """Forget a pool whose processes died (BrokenProcessPool): the next shared_pool starts a new one."""
    with _LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
