"""The files a build reads: each one read, chunked and tokenized, over the build's worker processes when there are
many (kb.pool); an error in one file skips that file only (kb.ingest.guard)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kb import config
from kb.chunk import Chunk, read_passages
from kb.errors import IngestError
from kb.ingest.document import Document
from kb.ingest.guard import guarded
from kb.pool import drop_pool, shared_pool
from kb.text.lexical import tokenize_many

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Read:
    """One file's document, passages and BM25 tokens; or, when it could not be read, why (one line)."""

    doc_id: str
    doc: Document | None
    chunks: list[Chunk]
    tokens: list[list[str]]
    error: str | None = None


def read_one(corpus: Path, doc_id: str, overrides: dict[str, str] | None) -> Read:
    """Read, chunk and tokenize one file within its time limit; never raises for a bad file."""
    try:
        with guarded(doc_id):
            doc, chunks = read_passages(corpus, doc_id, overrides)
            tokens = tokenize_many([c.index_text() for c in chunks])
    except IngestError as exc:
        return Read(doc_id, None, [], [], exc.reason)
    return Read(doc_id, doc, chunks, tokens)


def read_many(corpus: Path, todo: list[tuple[str, dict[str, str] | None]], workers: int | None = None) -> Iterator[Read]:
    """read_one of each (doc_id, overrides), in order: spread over `workers` processes (default
    config.EMBED_WORKERS) when there are at least config.READ_IN_WORKERS files, else in this process. If the
    workers die, the files they had not returned are read here."""
    workers = config.EMBED_WORKERS if workers is None else workers
    done = 0
    if workers > 1 and len(todo) >= config.READ_IN_WORKERS:
        from concurrent.futures.process import BrokenProcessPool

        pool = shared_pool(workers)
        futures = [pool.submit(read_one, corpus, doc_id, overrides) for doc_id, overrides in todo]
        try:
            for future in futures:
                yield future.result()
                done += 1
        except BrokenProcessPool as exc:
            log.info("reading worker processes died (%s); reading the other %d files here", exc, len(todo) - done)
            drop_pool(workers)
        finally:
            for future in futures[done:]:
                future.cancel()
    for doc_id, overrides in todo[done:]:
        yield read_one(corpus, doc_id, overrides)
