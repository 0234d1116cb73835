"""The Milvus collections' schema: fields, the BM25 analyzer and what it reads, indexes, row <-> Chunk.

- `<name>_chunks_gNNNNNN` (behind the alias `<name>_chunks`): one row per passage, keyed by chunk_id: the
  passage and its provenance, `bm25_text` that Milvus's BM25 function (jieba analyzer) turns into the sparse
  field `sparse`, one vector field per channel (`dense` e5, `xling` USE) and the filter columns.
- `<name>_docs`: one row per document: title, metadata, page spans, source key and chunk count.
- `<name>_texts`: each document's full text in pieces under Milvus's VARCHAR limit (the source view).
- `<name>_meta`: the manifest (models, dimensions, chunking, analyzer) and the last build's stamp.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from kb import config
from kb.chunk import Chunk
from kb.milvus.store import MilvusDB
from kb.text.lexical import EN_STOPWORDS, ZH_STOPWORDS

FORMAT = 1
VARCHAR_MAX = 65_535  # bytes: Milvus's limit for one VARCHAR value
TEXT_PIECE_CHARS = 16_000  # 4 bytes per character at most in UTF-8, so a piece always fits

# The dense vectors with the Chinese passages through the question tower's passage adapter (kb.milvus.build),
# searched for a Chinese question through the tower as the FAISS backend searches its adapted copy.
ADAPTED = "dense_tuned"
MARKER_DIM = 2  # Milvus wants a vector field in every collection; docs, texts and meta carry a constant one
MARKER = [0.0] * MARKER_DIM
# Passage fields read back into a Chunk (kb.chunk.Chunk's own names).
CHUNK_FIELDS = (
    "chunk_id",
    "doc_id",
    "title",
    "ordinal",
    "text",
    "char_start",
    "char_end",
    "lang",
    "article",
    "article_no",
    "section",
    "part",
    "parts",
    "page",
    "page_end",
)
# Milvus's jieba tokenizer emits punctuation as tokens; stopping them keeps BM25's document lengths honest.
_PUNCT = "，。、；：？！“”‘’（）《》【】〔〕「」『』—…·,.;:?!\"'()[]{}<>-_/\\|@#$%^&*+=~`"
STOP_WORDS = sorted(ZH_STOPWORDS | EN_STOPWORDS | set(_PUNCT) | {"——", "……"})
# milvus-lite 3.2.2 applies only the stop filter (it skips filters it lacks); a server also removes punctuation.
ANALYZER = {
    "tokenizer": {"type": "jieba", "mode": "search"},
    "filter": ["removepunct", {"type": "stop", "stop_words": STOP_WORDS}],
}
ANALYZER_VERSION = "jieba-search+stop+client-snowball-en/1"
_EN_RUN = re.compile(r"[a-z0-9]+(?:['’][a-z0-9]+)*")


@lru_cache(maxsize=1)
def _stem():
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


def reading_order(doc_id: str) -> tuple[str, ...]:
    """The order walk_corpus yields documents in (path components), which ties are broken by."""
    return tuple(doc_id.split("/"))


def bm25_text(text: str) -> str:
    """What Milvus's analyzer reads: NFKC, lower case, English words as Snowball stems without stopwords.

    Chinese is left whole for the server-side jieba analyzer; English is stemmed here because milvus-lite's
    analyzers have no stemmer, so "training" would miss "train" (kb.text.lexical does the same for bm25s).
    """
    stem = _stem()

    def one(m: re.Match[str]) -> str:
        word = m.group(0)
        return "" if word in EN_STOPWORDS else stem(word.replace("’", "'"))

    return _EN_RUN.sub(one, unicodedata.normalize("NFKC", text).lower())


def chunk_from_row(row: dict[str, object]) -> Chunk:
    """A Chunk from a passages row (nulls stay None)."""
    return Chunk(**{f: row.get(f) for f in CHUNK_FIELDS})  # type: ignore[arg-type]


def generation_name(db: MilvusDB, n: int) -> str:
    """The physical passages collection of generation n."""
    return f"{db.chunks}_g{n:06d}"


def create_collections(db: MilvusDB, manifest: dict[str, object], channels: dict[str, int]) -> None:
    """Create whatever collections are missing (several workers may race to it) and store the manifest.

    Args:
        channels: vector field -> dimension.
    """
    first = generation_name(db, 1)
    if not db.has_alias(db.chunks):
        if not db.client.has_collection(first):
            db.tolerate_exists(lambda: create_chunks(db, first, channels))
        db.tolerate_exists(lambda: db.client.create_alias(first, db.chunks))
    for name, fields in ((db.docs, _DOC_FIELDS), (db.texts, _TEXT_FIELDS), (db.meta, _META_FIELDS)):
        if not db.client.has_collection(name):
            db.tolerate_exists(lambda name=name, fields=fields: _create_plain(db, name, fields))
    store_manifest(db, manifest)


def store_manifest(db: MilvusDB, manifest: dict[str, object]) -> None:
    """Write the manifest: what the passages were built with, read by every searcher and the next build."""
    db.client.upsert(
        db.meta, [{"key": "manifest", "value": json.dumps(manifest, ensure_ascii=False), "marker": MARKER}]
    )


def create_chunks(db: MilvusDB, name: str, channels: dict[str, int]) -> None:
    """A passages collection: scalar fields, the BM25 function over bm25_text, one vector field per channel."""
    from pymilvus import DataType, Function, FunctionType

    schema = db.client.create_schema(auto_id=False, enable_dynamic_field=False)
    for field, kind, extra in _CHUNK_FIELDS:
        schema.add_field(field, kind(DataType), **extra)
    schema.add_field(
        "bm25_text", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True, analyzer_params=ANALYZER
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["bm25_text"], output_field_names=["sparse"]
        )
    )
    index = db.client.prepare_index_params()
    index.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": config.BM25_K1, "bm25_b": config.BM25_B},
    )
    index_kind = db.target.index_type
    # Build settings for the approximate types; FLAT needs none. Search-time settings: kb.milvus.search.
    params = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}.get(index_kind, {})
    for field, dim in channels.items():
        schema.add_field(field, DataType.FLOAT_VECTOR, dim=dim)
        index.add_index(field, index_type=index_kind, metric_type="IP", params=params)
    for field in ("doc_id", "lang", "level", "issuer"):
        index.add_index(field, index_type="INVERTED")
    _create(db, name, schema, index, num_shards=db.target.shards)


def _create_plain(db: MilvusDB, name: str, fields: tuple) -> None:
    from pymilvus import DataType

    schema = db.client.create_schema(auto_id=False, enable_dynamic_field=False)
    for field, pick, extra in fields:
        schema.add_field(field, pick(DataType), **extra)
    schema.add_field("marker", DataType.FLOAT_VECTOR, dim=MARKER_DIM)
    index = db.client.prepare_index_params()
    index.add_index("marker", index_type="FLAT", metric_type="L2")
    _create(db, name, schema, index)


def _create(db: MilvusDB, name: str, schema: object, index: object, **kwargs: object) -> None:
    # Indexes are created without waiting (pymilvus polls every 0.5 s otherwise, and its poll starts with a
    # call milvus-lite lacks); loading the collection waits for them where a server builds them.
    db.client.create_collection(name, schema=schema, consistency_level="Strong", **kwargs)
    db.client.create_index(name, index, sync=False)
    db.client.load_collection(name)


def _v(n: int, **extra: object) -> dict[str, object]:
    return {"max_length": n, **extra}


# (field, DataType picker, add_field arguments): pickers defer the pymilvus import to first use.
_S = lambda t: t.VARCHAR
_I = lambda t: t.INT64
# (field name, DataType picker, add_field arguments)
Field = tuple[str, Callable[[Any], Any], dict[str, Any]]
_CHUNK_FIELDS: tuple[Field, ...] = (
    ("chunk_id", _S, {"is_primary": True, "max_length": 4096}),
    ("doc_id", _S, _v(4096)),
    ("ordinal", _I, {}),
    ("title", _S, _v(VARCHAR_MAX)),
    ("text", _S, _v(VARCHAR_MAX)),
    ("char_start", _I, {}),
    ("char_end", _I, {}),
    ("lang", _S, _v(8)),
    ("article", _S, _v(1024, nullable=True)),
    ("article_no", _I, {"nullable": True}),
    ("section", _S, _v(VARCHAR_MAX, nullable=True)),
    ("part", _I, {}),
    ("parts", _I, {}),
    ("page", _I, {"nullable": True}),
    ("page_end", _I, {"nullable": True}),
    ("hash", _S, _v(64)),
    # Filter columns: the document's metadata on each of its passages (Milvus filters rows, it has no joins).
    ("level", _S, _v(256)),
    ("issuer", _S, _v(2048)),
    ("published", _I, {}),
    ("effective", _I, {}),
    ("stated", _S, _v(32)),  # validity as the metadata states it ('' when it states none)
    ("in_force_from", _I, {}),
    ("in_force_until", _I, {}),  # YYYYMMDD; 0 unknown start, OPEN_END no end
    ("implied", _S, _v(32)),  # the status the end implies once passed: 已修改 or 已废止 ('' without an end)
    ("gone", lambda t: t.BOOL, {}),  # repealed or superseded with no known end date
)
_DOC_FIELDS: tuple[Field, ...] = (
    ("doc_id", _S, {"is_primary": True, "max_length": 4096}),
    ("path", _S, _v(4096)),
    ("title", _S, _v(VARCHAR_MAX)),
    ("lang", _S, _v(8)),
    ("meta", _S, _v(VARCHAR_MAX)),
    ("page_spans", _S, _v(VARCHAR_MAX)),
    ("source_key", _S, _v(256)),
    ("n_chunks", _I, {}),
    ("n_parts", _I, {}),
    ("span", _S, _v(256)),  # the span columns as last written to the passages (kb.milvus.build)
)
_TEXT_FIELDS: tuple[Field, ...] = (
    ("key", _S, {"is_primary": True, "max_length": 4200}),
    ("doc_id", _S, _v(4096)),
    ("part", _I, {}),
    ("text", _S, _v(VARCHAR_MAX)),
)
_META_FIELDS: tuple[Field, ...] = (("key", _S, {"is_primary": True, "max_length": 64}), ("value", _S, _v(VARCHAR_MAX)))
