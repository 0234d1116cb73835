"""Milvus as the index: where it is (a milvus-lite file or a server URL), the connection, reading rows back,
and the turns milvus-lite's builders take. The collections themselves: kb.milvus.schema.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb import config
from kb.errors import IndexMissingError, KbError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MilvusTarget:
    """Where the index lives: a milvus-lite folder ending in .db, or a server URL, and the collection settings."""

    uri: str
    collection: str = "policy_kb"
    index_type: str = "FLAT"  # exact inner product, as the FAISS index; HNSW / IVF_FLAT for very large corpora
    shards: int = 1
    consistency: str = "Bounded"  # for searches; builds read their own writes with Strong
    token: str = ""

    @property
    def lite(self) -> bool:
        return not re.match(r"^(https?|tcp|unix)://|^unix:", self.uri)

    def name(self, part: str) -> str:
        return f"{self.collection}_{part}"


def target(uri: str | None, collection: str | None = None) -> MilvusTarget:
    """Settings from arguments and the KB_MILVUS_* environment variables.

    Raises:
        KbError: no URI, or a local path that does not end in .db (pymilvus's rule for milvus-lite).
    """
    uri = uri or config.env("KB_MILVUS_URI") or ""
    if not uri:
        raise KbError(
            "the milvus backend needs --uri: a local file such as kb.db (milvus-lite) or a server "
            "URL such as http://localhost:19530 (or set KB_MILVUS_URI)"
        )
    probe = MilvusTarget(uri)
    if probe.lite:
        if not uri.endswith(".db"):
            raise KbError(f"--uri {uri}: a milvus-lite path must end in .db (or give http://host:19530)")
        uri = str(Path(uri).expanduser().resolve())
    name = collection or config.env("KB_MILVUS_COLLECTION") or "policy_kb"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
        raise KbError(f"collection name '{name}': use letters, digits and underscores, starting with a letter")
    return MilvusTarget(
        uri=uri,
        collection=name,
        index_type=(config.env("KB_MILVUS_INDEX") or "FLAT").upper(),
        shards=int(config.env("KB_MILVUS_SHARDS") or 1),
        consistency=config.env("KB_MILVUS_CONSISTENCY") or "Bounded",
        token=config.env("KB_MILVUS_TOKEN") or "",
    )


# milvus-lite runs in-process, one process per .db folder; the gRPC server pymilvus starts for a path is
# shared by every client of this process and released when the last one closes, so another process
# (the next build worker) can open the file.
_lite_refs: dict[str, int] = {}
_lite_guard = threading.Lock()


# milvus-lite runs on this machine behind a local socket: pymilvus's keepalive pings (every 10 s) only make its
# server answer "too_many_pings" with a GOAWAY, which gRPC logs on stderr in the middle of a user's output.
_LITE_GRPC = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": False}


class MilvusDB:
    """An open connection and the names of the knowledge base's collections."""

    def __init__(self, where: MilvusTarget) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.target = where
        if where.lite:
            # One segment per build where the engine allows it: milvus-lite scores BM25 with per-segment
            # statistics, so fewer segments mean IDF closer to the corpus's (read when milvus_lite is imported).
            config.milvus_lite_limits()
            Path(where.uri).parent.mkdir(parents=True, exist_ok=True)
            with _lite_guard:
                _lite_refs[where.uri] = _lite_refs.get(where.uri, 0) + 1
        try:
            self.client = MilvusClient(uri=where.uri, token=where.token, grpc_options=_LITE_GRPC if where.lite else {})
        except MilvusException as exc:
            self._release()
            if where.lite:
                raise KbError(
                    f"cannot open {where.uri}: another process has it open (a build, a search or the "
                    "app; milvus-lite allows one process per file). Wait for it, or serve the index "
                    "from a Milvus server"
                ) from exc
            raise KbError(f"cannot reach Milvus at {where.uri}: {exc}") from exc
        self.chunks, self.docs, self.texts, self.meta = (where.name(p) for p in ("chunks", "docs", "texts", "meta"))
        self._load()

    def _load(self) -> None:
        """Load this knowledge base's collections into memory (milvus-lite reopens a file with them released)."""
        for name in self.client.list_collections():
            if name.startswith(self.target.collection + "_"):
                if str(self.client.get_load_state(name).get("state")) != "Loaded":
                    self.client.load_collection(name)

    def close(self) -> None:
        """Close the client (and, for milvus-lite, let other processes open the file once nobody here uses it)."""
        with contextlib.suppress(Exception):
            self.client.close()
        self._release()

    def _release(self) -> None:
        if not self.target.lite:
            return
        with _lite_guard:
            left = _lite_refs.get(self.target.uri, 1) - 1
            _lite_refs[self.target.uri] = max(left, 0)
        if left <= 0:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.target.uri)

    def __enter__(self) -> MilvusDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manifest(self) -> dict[str, Any] | None:
        """The stored manifest, or None when nothing has been built here."""
        if not self.client.has_collection(self.meta):
            return None
        rows = self.client.query(self.meta, ids=["manifest"], output_fields=["value"], consistency_level="Strong")
        return json.loads(rows[0]["value"]) if rows else None

    def require_manifest(self) -> dict[str, Any]:
        """The manifest of a built index.

        Raises:
            IndexMissingError: nothing built at this URI and collection.
        """
        manifest = self.manifest()
        if manifest is None or not self.has_alias(self.chunks):
            raise IndexMissingError(
                f"no index '{self.target.collection}' at {self.target.uri}: run `python -m kb "
                f"build --backend milvus --uri {self.target.uri}`"
            )
        return manifest

    def generation(self) -> str:
        """The physical collection the chunks alias points at."""
        return str(self.client.describe_alias(self.chunks)["collection_name"])

    def drop_all(self) -> None:
        """Remove every collection of this knowledge base (a rebuild from scratch)."""
        if self.has_alias(self.chunks):
            self.client.drop_alias(self.chunks)
        for name in self.client.list_collections():
            if name.startswith(self.chunks + "_g") or name in (self.docs, self.texts, self.meta):
                self.client.drop_collection(name)

    def has_alias(self, alias: str) -> bool:
        """Whether an alias exists (has_collection does not see aliases on every Milvus version)."""
        return alias in self.client.list_aliases().get("aliases", [])

    def tolerate_exists(self, create: object) -> None:
        """Run a create call; another worker creating the same thing first is fine."""
        try:
            create()  # type: ignore[operator]
        except Exception as exc:
            if "exist" not in str(exc).lower():
                raise
            log.info("created by another worker meanwhile: %s", exc)


def iterate(db: MilvusDB, collection: str, expr: str, fields: list[str], batch: int = 1000) -> Iterator[dict]:
    """Every row matching expr, a page at a time (a server caps one query's results at 16,384 rows).

    A server pages with a query iterator; milvus-lite lacks the timestamp call iterators start with (it logs
    a traceback), but reads a fixed snapshot in a fixed order while nobody writes, so it pages by offset.
    """
    if db.target.lite:
        offset = 0
        while True:
            rows = db.client.query(collection, filter=expr, output_fields=fields, limit=batch, offset=offset)
            yield from rows
            if len(rows) < batch:
                return
            offset += batch
    it = db.client.query_iterator(collection, batch_size=batch, filter=expr, output_fields=fields)
    try:
        while rows := it.next():
            yield from rows
    finally:
        it.close()


def doc_rows(db: MilvusDB) -> dict[str, dict[str, Any]]:
    """doc_id -> title, lang, meta (parsed), source_key, n_chunks and span, for every stored document."""
    out = {}
    for row in iterate(db, db.docs, "", ["doc_id", "title", "lang", "meta", "source_key", "n_chunks", "span"]):
        row["meta"] = json.loads(str(row["meta"]))
        out[str(row["doc_id"])] = row
    return out


def in_clause(field: str, values: list[str] | tuple[str, ...]) -> str:
    """`field in [...]` with every value a quoted literal (see quote)."""
    return f"{field} in [{', '.join(quote(v) for v in values)}]"


# Milvus's expression grammar knows the escapes \\ \" \n \r \t and no others (not JSON's \uXXXX): a value from
# a file name or a URL is escaped with exactly these, and any other character goes in as itself.
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression, whatever the value holds (quotes, backslashes, newlines)."""
    return '"' + value.translate(_ESCAPES) + '"'


@contextlib.contextmanager
def turn(where: MilvusTarget, timeout: float | None = None) -> Iterator[None]:
    """Builders of one milvus-lite file write in turns (a file lock beside it); a no-op for a server.

    Raises:
        KbError: another builder kept its turn longer than the timeout (KB_MILVUS_LOCK_TIMEOUT, seconds).
    """
    if not where.lite:
        yield
        return
    wait = float(config.env("KB_MILVUS_LOCK_TIMEOUT") or 3600) if timeout is None else timeout
    lock = Path(where.uri + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KbError(
                        f"another build has been writing {where.uri} for over {wait:.0f}s; "
                        "wait for it or raise KB_MILVUS_LOCK_TIMEOUT"
                    ) from None
                time.sleep(0.2)
        yield
