"""Running the servers: `python -m kb serve` (uvicorn, one worker process per core) and `python -m kb mcp` (stdio).

Each worker opens the index itself; the vectors (FAISS IO_FLAG_MMAP_IFC) and BM25 postings (numpy memmap) are
memory-mapped read-only, so N workers share one copy in the page cache instead of holding N. Each worker runs
torch, FAISS and BLAS on one thread: two workers on two cores with several intra-op threads each only fight
over the cores (the figures are in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kb import config
from kb.serve.balance import table_path

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kb.serve.service import Service

log = logging.getLogger(__name__)

WARM_QUESTIONS = ("个人信息保护", "personal information protection")  # loads e5, the question tower and USE
# uvicorn's supervisor kills a worker that does not answer its ping within this many seconds (default 5). A worker
# loading torch, e5 and USE on a busy machine holds the GIL longer than that, so with the default every worker
# was killed while loading and restarted, forever (seen beside a whole-corpus build).
WORKER_HEALTHCHECK_SECONDS = 300


@dataclass(frozen=True)
class ServeOptions:
    index: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 4
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()


def options(
    index: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> ServeOptions:
    """Flags first, then KB_* variables, then defaults."""
    cors = config.env("KB_CORS_ORIGINS") or ""
    return ServeOptions(
        index=Path(index or config.env("KB_INDEX") or config.DEFAULT_INDEX),
        host=host or config.env("KB_SERVE_HOST") or "127.0.0.1",
        port=port or int(config.env("KB_SERVE_PORT") or 8000),
        workers=max(1, workers or int(config.env("KB_SERVE_WORKERS") or os.cpu_count() or 1)),
        threads=max(1, threads or int(config.env("KB_SERVE_THREADS") or 4)),
        api_key=config.env("KB_API_KEY"),
        cors_origins=tuple(o.strip() for o in cors.split(",") if o.strip()),
    )


def one_thread() -> None:
    """torch, FAISS and BLAS on one thread in this process (a worker per core)."""
    config.one_thread_per_process()
    import faiss
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    faiss.omp_set_num_threads(1)


def open_service(opts: ServeOptions, warm: bool = True) -> Service:
    """The index opened for serving, its models loaded by a search in each language."""
    from kb.serve.service import Service

    service = Service(opts.index)
    if warm:
        for q in WARM_QUESTIONS:
            service.search(q, 3)
    return service


def app_factory() -> FastAPI:
    """uvicorn's factory in each worker process: the parent passed its options on as KB_* variables."""
    from kb.serve.guard import GuardSettings, log_requests_to_stderr
    from kb.serve.http import HttpSettings, create_app

    log_requests_to_stderr()
    opts = options()
    one_thread()
    service = open_service(opts)
    one_thread()  # again, in case a model set its own thread count as it loaded
    settings = HttpSettings(
        guard=GuardSettings(api_key=opts.api_key),
        cors_origins=opts.cors_origins,
        host=opts.host,
        threads=opts.threads,
        workers=opts.workers,
        balance=table_path(os.getppid(), opts.port),
    )
    log.warning("worker %d serving %s (generation %s)", os.getpid(), opts.index, service.searcher.generation)
    return create_app(service, settings)


def serve(opts: ServeOptions) -> None:
    """Run the HTTP API (and MCP at /mcp) until interrupted.

    Raises:
        KbError: the index cannot be opened (checked here, before workers start and fail one by one).
    """
    import uvicorn

    from kb.index.generations import current_generation

    current_generation(opts.index)
    config.one_thread_per_process()  # inherited by the workers before they import torch
    config.pass_on(
        {
            "KB_INDEX": str(opts.index.resolve()),
            "KB_SERVE_HOST": opts.host,
            "KB_SERVE_PORT": str(opts.port),
            "KB_SERVE_WORKERS": str(opts.workers),
            "KB_SERVE_THREADS": str(opts.threads),
            # Loaded once and kept: the in-memory models answer a question at a fraction of the fast-start ones' CPU.
            "KB_FAST_START": "0",
        }
    )
    try:
        uvicorn.run(
            "kb.serve.run:app_factory",
            factory=True,
            host=opts.host,
            port=opts.port,
            workers=opts.workers,
            access_log=False,  # kb.serve.access writes one JSON line per request instead
            log_level="warning",
            timeout_graceful_shutdown=5,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    finally:
        table_path(os.getpid(), opts.port).unlink(missing_ok=True)


def serve_mcp_stdio(index: Path) -> None:
    """The MCP tools over stdin/stdout for an MCP client that starts this process."""
    from kb.serve.tools import mcp_server

    one_thread()
    service = open_service(ServeOptions(index=index), warm=False)  # answer the client's handshake at once
    try:
        mcp_server(service).run("stdio")
    finally:
        service.close()
