"""Milvus as the index: connection (milvus-lite file or server URL), the collections' schema, and row <-> Chunk.

Four collections per knowledge base, named from one base name (default `policy_kb`):

- `<base>_chunks`: one row per passage, keyed by chunk_id: the passage and its provenance, the text Milvus's
  BM25 function tokenizes (jieba analyzer) into a sparse field, the e5 vector (`dense`) and, when built with
  it, the USE vector (`xling`), and the filter columns (language, level, issuer, dates, in-force span).
  An alias over `<base>_chunks_gNNNNNN`, so a milvus-lite build can publish a rewritten copy atomically.
- `<base>_docs`: one row per document: title, metadata, page spans, source key (content hash) and chunk count.
- `<base>_texts`: each document's full text in pieces under Milvus's VARCHAR limit (the source view needs it).
- `<base>_meta`: the manifest (models, dimensions, chunking settings), like the FAISS index's manifest.json.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kb import config
from kb.chunk import Chunk
from kb.errors import IndexMissingError, KbError
from kb.lexical import EN_STOPWORDS, ZH_STOPWORDS

log = logging.getLogger(__name__)

FORMAT = 1
VARCHAR_MAX = 65_535  # bytes: Milvus's limit for one VARCHAR value
TEXT_PIECE_CHARS = 16_000  # 4 bytes per character at most in UTF-8, so a piece always fits
OPEN_END = 99_991_231  # in_force_until of a text with no known end (as kb.filters)
MARKER_DIM = 2  # Milvus wants a vector field in every collection; docs, texts and meta carry a constant one
# Passage fields read back into a Chunk (kb.chunk.Chunk's own names).
CHUNK_FIELDS = ("chunk_id", "doc_id", "title", "ordinal", "text", "char_start", "char_end", "lang", "article",
                "article_no", "section", "part", "parts", "page", "page_end")
# Milvus's jieba tokenizer emits punctuation as tokens; stopping them keeps BM25's document lengths honest.
_PUNCT = "，。、；：？！“”‘’（）《》【】〔〕「」『』—…·,.;:?!\"'()[]{}<>-_/\\|@#$%^&*+=~`"
STOP_WORDS = sorted(ZH_STOPWORDS | EN_STOPWORDS | set(_PUNCT) | {"——", "……"})
ANALYZER = {"tokenizer": {"type": "jieba", "mode": "search"},
            "filter": ["removepunct", {"type": "stop", "stop_words": STOP_WORDS}]}  # milvus-lite applies the stop list only
ANALYZER_VERSION = "jieba-search+stop+client-snowball-en/1"
_EN_RUN = re.compile(r"[a-z0-9]+(?:['’][a-z0-9]+)*")


@lru_cache(maxsize=1)
def _stem():  # noqa: ANN202 - PyStemmer has no type stubs
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


def bm25_text(text: str) -> str:
    """What Milvus's analyzer reads: NFKC, lower case, English words as Snowball stems without stopwords.

    Chinese is left whole for the server-side jieba analyzer; English is stemmed here because milvus-lite's
    analyzers have no stemmer, so "training" would miss "train" (kb.lexical does the same for bm25s).
    """
    stem = _stem()

    def one(m: re.Match[str]) -> str:
        word = m.group(0)
        return "" if word in EN_STOPWORDS else stem(word.replace("’", "'"))

    return _EN_RUN.sub(one, unicodedata.normalize("NFKC", text).lower())


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
    uri = uri or os.environ.get("KB_MILVUS_URI", "")
    if not uri:
        raise KbError("the milvus backend needs --uri: a local file such as kb.db (milvus-lite) or a server "
                      "URL such as http://localhost:19530 (or set KB_MILVUS_URI)")
    probe = MilvusTarget(uri)
    if probe.lite:
        if not uri.endswith(".db"):
            raise KbError(f"--uri {uri}: a milvus-lite path must end in .db (or give http://host:19530)")
        uri = str(Path(uri).expanduser().resolve())
    name = collection or os.environ.get("KB_MILVUS_COLLECTION", "policy_kb")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
        raise KbError(f"collection name '{name}': use letters, digits and underscores, starting with a letter")
    return MilvusTarget(uri=uri, collection=name, index_type=os.environ.get("KB_MILVUS_INDEX", "FLAT").upper(),
                        shards=int(os.environ.get("KB_MILVUS_SHARDS", "1")),
                        consistency=os.environ.get("KB_MILVUS_CONSISTENCY", "Bounded"),
                        token=os.environ.get("KB_MILVUS_TOKEN", ""))


# milvus-lite runs in-process, one process per .db folder; the gRPC server pymilvus starts for a path is
# shared by every client of this process and released when the last one closes, so another process
# (the next build worker) can open the file.
_lite_refs: dict[str, int] = {}
_lite_guard = threading.Lock()


class MilvusDB:
    """An open connection and the names of the knowledge base's collections."""

    def __init__(self, where: MilvusTarget) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.target = where
        if where.lite:
            # One segment per build where the engine allows it: milvus-lite scores BM25 with per-segment
            # statistics, so fewer segments mean IDF closer to the corpus's (read when milvus_lite is imported).
            os.environ.setdefault("MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES", str(8 << 30))
            os.environ.setdefault("MILVUS_LITE_WAL_SIZE_LIMIT_BYTES", str(16 << 30))
            Path(where.uri).parent.mkdir(parents=True, exist_ok=True)
            with _lite_guard:
                _lite_refs[where.uri] = _lite_refs.get(where.uri, 0) + 1
        try:
            self.client = MilvusClient(uri=where.uri, token=where.token)
        except MilvusException as exc:
            self._release()
            if where.lite:
                raise KbError(f"cannot open {where.uri}: another process has it open (a build, a search or the "
                              "app; milvus-lite allows one process per file). Wait for it, or serve the index "
                              "from a Milvus server") from exc
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

    def manifest(self) -> dict[str, object] | None:
        """The stored manifest, or None when nothing has been built here."""
        if not self.client.has_collection(self.meta):
            return None
        rows = self.client.query(self.meta, ids=["manifest"], output_fields=["value"], consistency_level="Strong")
        return json.loads(rows[0]["value"]) if rows else None

    def require_manifest(self) -> dict[str, object]:
        """The manifest of a built index.

        Raises:
            IndexMissingError: nothing built at this URI and collection.
        """
        manifest = self.manifest()
        if manifest is None or not self.has_alias(self.chunks):
            raise IndexMissingError(f"no index '{self.target.collection}' at {self.target.uri}: run `python -m kb "
                                    f"build --backend milvus --uri {self.target.uri}`")
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

    def create(self, manifest: dict[str, object], channels: dict[str, int]) -> None:
        """Create whatever collections are missing (several workers may race to it) and store the manifest."""
        first = f"{self.chunks}_g{1:06d}"
        if not self.has_alias(self.chunks):
            if not self.client.has_collection(first):
                self._tolerate_exists(lambda: self.create_chunks(first, channels))
            self._tolerate_exists(lambda: self.client.create_alias(first, self.chunks))
        for name, fields in ((self.docs, _DOC_FIELDS), (self.texts, _TEXT_FIELDS), (self.meta, _META_FIELDS)):
            if not self.client.has_collection(name):
                self._tolerate_exists(lambda name=name, fields=fields: self._create_plain(name, fields))
        self.client.upsert(self.meta, [{"key": "manifest", "value": json.dumps(manifest, ensure_ascii=False),
                                        "marker": [0.0] * MARKER_DIM}])

    def has_alias(self, alias: str) -> bool:
        """Whether an alias exists (has_collection does not see aliases on every Milvus version)."""
        return alias in self.client.list_aliases().get("aliases", [])

    def _tolerate_exists(self, create: object) -> None:
        """Run a create call; another worker creating the same thing first is fine."""
        try:
            create()  # type: ignore[operator]
        except Exception as exc:
            if "exist" not in str(exc).lower():
                raise
            log.info("created by another worker meanwhile: %s", exc)

    def create_chunks(self, name: str, channels: dict[str, int]) -> None:
        """The passages collection: scalar fields, the BM25 function over bm25_text, one vector field per channel."""
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        for field, kind, extra in _CHUNK_FIELDS:
            schema.add_field(field, kind(DataType), **extra)
        schema.add_field("bm25_text", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True,
                         analyzer_params=ANALYZER)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["bm25_text"],
                                     output_field_names=["sparse"]))
        index = self.client.prepare_index_params()
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": config.BM25_K1, "bm25_b": config.BM25_B})
        for field, dim in channels.items():
            schema.add_field(field, DataType.FLOAT_VECTOR, dim=dim)
            index.add_index(field, index_type=self.target.index_type, metric_type="IP", params=_vector_params(
                self.target.index_type))
        for field in ("doc_id", "lang", "level", "issuer"):
            index.add_index(field, index_type="INVERTED")
        self._create(name, schema, index, num_shards=self.target.shards)

    def _create_plain(self, name: str, fields: tuple) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        for field, kind, extra in fields:
            schema.add_field(field, kind(DataType), **extra)
        schema.add_field("marker", DataType.FLOAT_VECTOR, dim=MARKER_DIM)
        index = self.client.prepare_index_params()
        index.add_index("marker", index_type="FLAT", metric_type="L2")
        self._create(name, schema, index)

    def _create(self, name: str, schema: object, index: object, **kwargs: object) -> None:
        # Indexes are created without waiting (pymilvus polls every 0.5 s otherwise, and its poll starts with a
        # call milvus-lite lacks); loading the collection waits for them where the server builds them.
        self.client.create_collection(name, schema=schema, consistency_level="Strong", **kwargs)
        self.client.create_index(name, index, sync=False)
        self.client.load_collection(name)


def _vector_params(index_type: str) -> dict[str, int]:
    # Build settings for the approximate types; FLAT needs none. Search-time settings: kb.milvus_search.
    return {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}.get(index_type, {})


def _v(n: int, **extra: object) -> dict[str, object]:
    return {"max_length": n, **extra}


# (field, DataType picker, add_field arguments): pickers defer the pymilvus import to first use.
_S = lambda t: t.VARCHAR  # noqa: E731
_I = lambda t: t.INT64  # noqa: E731
_CHUNK_FIELDS = (
    ("chunk_id", _S, {"is_primary": True, "max_length": 4096}),
    ("doc_id", _S, _v(4096)), ("ordinal", _I, {}), ("title", _S, _v(VARCHAR_MAX)), ("text", _S, _v(VARCHAR_MAX)),
    ("char_start", _I, {}), ("char_end", _I, {}), ("lang", _S, _v(8)),
    ("article", _S, _v(1024, nullable=True)), ("article_no", _I, {"nullable": True}),
    ("section", _S, _v(VARCHAR_MAX, nullable=True)), ("part", _I, {}), ("parts", _I, {}),
    ("page", _I, {"nullable": True}), ("page_end", _I, {"nullable": True}), ("hash", _S, _v(64)),
    # Filter columns: the document's metadata on each of its passages (Milvus filters rows, it has no joins).
    ("level", _S, _v(256)), ("issuer", _S, _v(2048)), ("published", _I, {}), ("effective", _I, {}),
    ("stated", _S, _v(32)),  # validity as the metadata states it ('' when it states none)
    ("in_force_from", _I, {}), ("in_force_until", _I, {}),  # YYYYMMDD; 0 unknown start, OPEN_END no end
    ("implied", _S, _v(32)),  # the status the end implies once passed: 已修改 or 已废止 ('' without an end)
    ("gone", lambda t: t.BOOL, {}),  # repealed or superseded with no known end date
)
_DOC_FIELDS = (
    ("doc_id", _S, {"is_primary": True, "max_length": 4096}), ("path", _S, _v(4096)), ("title", _S, _v(VARCHAR_MAX)),
    ("lang", _S, _v(8)), ("meta", _S, _v(VARCHAR_MAX)), ("page_spans", _S, _v(VARCHAR_MAX)),
    ("source_key", _S, _v(256)), ("n_chunks", _I, {}), ("n_parts", _I, {}),
    ("span", _S, _v(256)),  # in_force_until / implied / gone as last written to the passages (kb.milvus_build)
)
_TEXT_FIELDS = (("key", _S, {"is_primary": True, "max_length": 4200}), ("doc_id", _S, _v(4096)),
                ("part", _I, {}), ("text", _S, _v(VARCHAR_MAX)))
_META_FIELDS = (("key", _S, {"is_primary": True, "max_length": 64}), ("value", _S, _v(VARCHAR_MAX)))


def chunk_from_row(row: dict[str, object]) -> Chunk:
    """A Chunk from a passages row (nulls stay None)."""
    return Chunk(**{f: row.get(f) for f in CHUNK_FIELDS})  # type: ignore[arg-type]


def in_clause(field: str, values: list[str] | tuple[str, ...]) -> str:
    """`field in [...]` with values quoted as JSON strings (Milvus's expression grammar reads them)."""
    return f"{field} in [{', '.join(json.dumps(v, ensure_ascii=False) for v in values)}]"


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value, ensure_ascii=False)


@contextlib.contextmanager
def turn(where: MilvusTarget, timeout: float | None = None) -> Iterator[None]:
    """Builders of one milvus-lite file write in turns (a file lock beside it); a no-op for a server.

    Raises:
        KbError: another builder kept its turn longer than the timeout (KB_MILVUS_LOCK_TIMEOUT, seconds).
    """
    if not where.lite:
        yield
        return
    wait = float(os.environ.get("KB_MILVUS_LOCK_TIMEOUT", 3600)) if timeout is None else timeout
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
                    raise KbError(f"another build has been writing {where.uri} for over {wait:.0f}s; "
                                  "wait for it or raise KB_MILVUS_LOCK_TIMEOUT") from None
                time.sleep(0.2)
        yield
