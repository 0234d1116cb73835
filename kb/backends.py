"""Which index serves a build or a search: the FAISS folder (default) or Milvus (kb.milvus)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kb import config
from kb.embed.models import Embedder
from kb.errors import KbError
from kb.index.report import BuildReport
from kb.search.contract import Backend
from kb.search.searcher import Searcher

BACKENDS = ("faiss", "milvus")


def open_searcher(
    backend: str = "faiss",
    index: Path | None = None,
    uri: str | None = None,
    collection: str | None = None,
    model: str | None = None,
    fusion: str | None = None,
    embedders: dict[str, Embedder] | None = None,
    tuned: bool | None = None,
    rerank: bool | None = None,
) -> Backend:
    """The backend contract (kb.search.contract) over an index folder (Searcher) or a Milvus URI (MilvusSearcher).

    tuned: the question tower (kb.embed.tower) on or off; None: config.TUNED.
    rerank: the trained reranker (kb.search.rerank) on or off; None: config.RERANK.

    Raises:
        KbError: unknown backend, or Milvus settings given to the FAISS backend.
    """
    if backend == "milvus":
        from kb.milvus.search import MilvusSearcher
        from kb.milvus.store import target

        return MilvusSearcher(
            target(uri, collection),
            model=model,
            embedders=embedders,
            fusion=fusion or "client",
            tuned=tuned,
            rerank=rerank,
        )
    _check_faiss(backend, uri, fusion)
    return Searcher(index or config.DEFAULT_INDEX, model=model, embedders=embedders, tuned=tuned, rerank=rerank)


def build_index(
    backend: str,
    corpus: Path,
    embedders: dict[str, Embedder],
    index: Path | None = None,
    uri: str | None = None,
    collection: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    part: tuple[int, int] | None = None,
    cache_dir: Path | None = config.CACHE_DIR,
) -> BuildReport:
    """Build or update an index folder, or a Milvus collection (optionally one worker's part of the corpus)."""
    if backend == "milvus":
        from kb.milvus.build import build as milvus_build
        from kb.milvus.store import target

        return milvus_build(corpus, target(uri, collection), embedders, progress, cache_dir=cache_dir, part=part)
    _check_faiss(backend, uri, None)
    if part is not None:
        raise KbError(
            "--part splits a build across workers writing one Milvus collection; use it with --backend milvus"
        )
    from kb.index.build import build  # the writer (and the chunker's imports) only when building

    return build(corpus, index or config.DEFAULT_INDEX, embedders, progress, cache_dir=cache_dir)


def parse_part(text: str | None) -> tuple[int, int] | None:
    """'2/4' -> (1, 4): worker 2 of 4, numbered from 1 on the command line.

    Raises:
        KbError: not I/N with 1 <= I <= N.
    """
    if not text:
        return None
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise KbError(f"--part {text}: give I/N, worker I of N (1 <= I <= N), e.g. --part 1/2")
    return int(i) - 1, int(n)


def _check_faiss(backend: str, uri: str | None, fusion: str | None) -> None:
    if backend not in BACKENDS:
        raise KbError(f"unknown backend '{backend}': use one of {', '.join(BACKENDS)}")
    if uri or (fusion and fusion != "client"):
        raise KbError("--uri and --fusion milvus apply to --backend milvus")
