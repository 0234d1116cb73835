"""Query -> Hits from a Milvus index: Searcher's interface and Hit contract, filters pushed down to Milvus.

Channels as in kb.search.searcher: BM25 (Milvus's BM25 function over a jieba-analysed field), e5 over passages in the
question's language (`dense`) and in the other (`dense_x`), and USE over the other language (`xling`) when
the index has it. Each channel is one Milvus search with the filter expression (kb.milvus.filters) and its
language condition. Fusion:

- 'client' (default): weighted reciprocal rank over the channels' results, exactly as kb.search.searcher (e5 weight
  1.5), reporting each hit's rank in every channel that found it.
- 'milvus': one hybrid_search call fused by Milvus's RRFRanker. Milvus's RRF has no channel weights and
  returns no per-channel ranks, so hits carry no `channels`; the level preference and the collapsing of
  identical passages still apply here.

A Chinese question through the question tower searches the field `dense_tuned` (kb.milvus.schema.ADAPTED): the
dense vectors with the Chinese passages through the tower file's passage adapter, written by the build, the
vectors the FAISS backend makes at load. The manifest records the tower they were made with (a new tower file
rebuilds them); an index built before the field existed searches the stored vectors until it is rebuilt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kb import config
from kb.catalog.filters import Filters, check_filters, known_values
from kb.catalog.resolve import Resolver
from kb.catalog.timeline import spans
from kb.chunk import Chunk, chunk_id, parse_chunk_id
from kb.embed.models import Embedder
from kb.embed.tower import TowerInfo
from kb.errors import IndexMissingError, QueryError
from kb.index.manifest import Channel, WeightsInfo
from kb.ingest.document import DocMeta, DocRow, Document
from kb.ingest.read import detect_lang
from kb.milvus.filters import expression
from kb.milvus.schema import CHUNK_FIELDS, bm25_text, chunk_from_row, reading_order
from kb.milvus.store import MilvusDB, MilvusTarget, doc_rows, in_clause, iterate, quote
from kb.search.base import SearcherBase
from kb.search.contract import Rankings
from kb.search.fusion import depth, fuse
from kb.search.hits import Hit, Reorder, hits_of
from kb.search.rerank import Similarity

# A channel's search: (vector field, query data, filter expression, limit).
Request = tuple[str, object, str, int]

log = logging.getLogger(__name__)

FUSIONS = ("client", "milvus")


class MilvusSearcher(SearcherBase):
    """Connects to a Milvus index once and answers queries like kb.search.searcher.Searcher (kb.search.contract)."""

    def __init__(
        self,
        where: MilvusTarget,
        model: str | None = None,
        embedders: dict[str, Embedder] | None = None,
        weights: dict[str, float] | None = None,
        fusion: str = "client",
        tuned: bool | None = None,
        rerank: bool | None = None,
    ) -> None:
        if fusion not in FUSIONS:
            raise QueryError(f"unknown fusion '{fusion}': use one of {', '.join(FUSIONS)}")
        rebuild = f"python -m kb build --backend milvus --uri {where.uri}"
        super().__init__(where.uri, rebuild, embedders, weights, tuned, rerank)
        self.target, self.fusion = where, fusion
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-milvus")
        if where.lite and not Path(where.uri).exists():  # opening would create an empty one
            raise IndexMissingError(
                f"no index at {where.uri}: run `python -m kb build --backend milvus --uri {where.uri}`"
            )
        self.db = MilvusDB(where)
        try:
            manifest = self.db.require_manifest()
            channels: dict[str, dict[str, object]] = manifest.get("channels") or {}
            self.channels = {ch: Channel.from_dict(info) for ch, info in channels.items()}
            self.question_tower = TowerInfo.from_dict(manifest.get("question_tower"))
            self.reranker = WeightsInfo.from_dict(manifest.get("reranker"))
            self.adapted = adapted_field(manifest)
            self.check_models(model)
            self._open()
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        """Read the document table (metadata for filters, facets, spans and cross-references)."""
        rows = doc_rows(self.db)
        self.docs = {
            d: DocRow(d, str(r["title"]), str(r["lang"]), DocMeta.from_dict(r["meta"]), int(str(r["n_chunks"])))
            for d, r in sorted(rows.items())
        }
        self.spans = spans(self.docs)
        self.levels, self.issuers = known_values(self.docs)
        self.prior = {d: config.LEVEL_PRIOR.get(r.meta.level or "", 1.0) for d, r in self.docs.items()}
        self.n = sum(d.chunks for d in self.docs.values())
        zh = self.db.client.query(self.db.chunks, filter='lang == "zh"', output_fields=["count(*)"])
        self.langs = {"zh": int(zh[0]["count(*)"]), "other": self.n - int(zh[0]["count(*)"])}
        self.stamp = self._stamp()
        self._articles: dict[tuple[str, int], list[Chunk]] = {}
        self.resolver = Resolver(self.docs, self)

    @property
    def passages(self) -> int:
        return self.n

    @property
    def generation(self) -> str:
        return self.stamp.replace(" ", "-") or "unbuilt"

    def _stamp(self) -> str:
        rows = self.db.client.query(self.db.meta, ids=["stamp"], output_fields=["value"])
        return str(rows[0]["value"]) if rows else ""

    def close(self) -> None:
        """Disconnect (a milvus-lite file becomes free for other processes)."""
        self._pool.shutdown(wait=False)
        self.db.close()

    def __enter__(self) -> MilvusSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> bool:
        """Re-read the document table if a build has written since; True when it did.

        Raises:
            ModelMismatchError: the build recorded another question tower than the shipped one.
        """
        if self._stamp() == self.stamp:
            return False
        manifest = self.db.require_manifest()
        recorded = TowerInfo.from_dict(manifest.get("question_tower"))
        self.check_tower(recorded, self.channels)
        with self._lock:
            self.question_tower = recorded
            self.reranker = WeightsInfo.from_dict(manifest.get("reranker"))
            self.adapted = adapted_field(manifest)
            self._open()
        return True

    def source(self, doc_id: str) -> tuple[Document, list[Chunk]]:
        """A document's full text and its chunks in reading order.

        Raises:
            QueryError: no such document in the index.
        """
        # Not ids=: pymilvus quotes ids without escaping, and a doc_id comes from a file name or a URL.
        rows = self.db.client.query(
            self.db.docs,
            filter=in_clause("doc_id", [doc_id]),
            output_fields=["doc_id", "path", "title", "lang", "meta", "page_spans"],
        )
        if not rows:
            raise QueryError(f"no such document in the index: {doc_id}")
        row = rows[0]
        pieces = sorted(
            iterate(self.db, self.db.texts, f"doc_id == {quote(doc_id)}", ["part", "text"]),
            key=lambda r: int(r["part"]),
        )
        doc = Document(
            doc_id=doc_id,
            path=str(row["path"]),
            title=str(row["title"]),
            lang=str(row["lang"]),
            text="".join(str(p["text"]) for p in pieces),
            meta=DocMeta.from_dict(json.loads(row["meta"])),
            page_spans=tuple(tuple(p) for p in json.loads(row["page_spans"])),
        )
        chunks = [
            chunk_from_row(r)
            for r in iterate(self.db, self.db.chunks, f"doc_id == {quote(doc_id)}", list(CHUNK_FIELDS))
        ]
        return doc, sorted(chunks, key=lambda c: c.ordinal)

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]:
        """The chunks of one article of one document (cross-reference targets; kb.catalog.resolve.ArticleSource)."""
        key = (doc_id, article_no)
        if key not in self._articles:
            rows = self.db.client.query(
                self.db.chunks,
                filter=f"doc_id == {quote(doc_id)} and article_no == {int(article_no)}",
                output_fields=list(CHUNK_FIELDS),
            )
            self._articles[key] = sorted((chunk_from_row(r) for r in rows), key=lambda c: c.ordinal)
        return self._articles[key]

    def _search(
        self, query: str, k: int, filters: Filters, mode: str, xrefs: bool, tuned: bool, reorder: Reorder | None = None
    ) -> list[Hit]:
        requests = self._requests(query, depth(k), filters, mode, tuned)
        weights = self.fusion_weights(query, tuned)
        if self.fusion == "milvus" and len(requests) > 1:
            return self._hits({}, self._hybrid(requests), query, k, filters.lang, xrefs, weights, reorder)
        ranked = self._with_memory(self._run(requests), query, depth(k), filters, mode, tuned)
        return self._hits(ranked, None, query, k, filters.lang, xrefs, weights, reorder)

    def _rankings(self, query: str, want: int, filters: Filters, mode: str, tuned: bool) -> Rankings:
        ranked = self._run(self._requests(query, want, filters, mode, tuned))
        return self._with_memory(ranked, query, want, filters, mode, tuned)

    def _with_memory(
        self, ranked: Rankings, query: str, want: int, filters: Filters, mode: str, tuned: bool
    ) -> Rankings:
        """The rankings with the memory channel (kb.search.memory) of a Chinese question through the tower, as the
        FAISS backend ranks it: the articles' chunks the filters let through (one query by primary key)."""
        ids = self.remembered(query, mode, tuned, self.resolver)
        if not ids:
            return ranked
        expr = expression(check_filters(filters, self.docs, self.levels, self.issuers))
        where = in_clause("chunk_id", ids) + (f" and ({expr})" if expr else "")
        kept = {str(r["chunk_id"]) for r in self.db.client.query(self.db.chunks, filter=where, output_fields=[])}
        listed = [c for c in ids if c in kept][:want]
        return {**ranked, "memory": listed} if listed else ranked

    def _fuse(self, ranked: Rankings, query: str, k: int, filters: Filters, weights: dict[str, float]) -> list[Hit]:
        return self._hits(ranked, None, query, k, filters.lang, False, weights)

    def _run(self, requests: dict[str, Request]) -> Rankings:
        """The channels' searches at once: a server answers them in parallel."""
        return dict(zip(requests, self._pool.map(lambda req: self._search_one(*req), requests.values())))

    def _requests(self, query: str, want: int, filters: Filters, mode: str, tuned: bool) -> dict[str, Request]:
        """channel -> (vector field, query data, filter expression, limit)."""
        expr = expression(check_filters(filters, self.docs, self.levels, self.issuers))
        # Passages in the question's language and in the other are ranked apart, as in kb.search.searcher; a
        # language the index has no passages in costs no search.
        zh = detect_lang(query) == "zh"
        same, other = ('lang == "zh"', 'lang != "zh"') if zh else ('lang != "zh"', 'lang == "zh"')
        has_same, has_other = (self.langs["zh"], self.langs["other"]) if zh else (self.langs["other"], self.langs["zh"])

        def both(part: str) -> str:
            return f"{expr} and ({part})" if expr else part

        out: dict[str, Request] = {}
        terms = bm25_text(query)
        if mode in ("hybrid", "keyword") and terms.strip():
            out["bm25"] = ("sparse", terms, expr, want)
        if mode in ("hybrid", "semantic"):
            if "dense" in self.channels:
                vec = self.question_vector(query, tuned).tolist()
                field = self.dense_field(query, tuned)
                if has_same:
                    out["dense"] = (field, vec, both(same), want)
                if has_other:
                    out["dense_x"] = (field, vec, both(other), want)
            if "xling" in self.channels and has_other:
                out["xling"] = ("xling", self.embedder("xling").query([query])[0].tolist(), both(other), want)
        return out

    def dense_field(self, query: str, tuned: bool) -> str:
        """The vector field the dense channel searches for a question: the adapted one for a Chinese question
        through the tower, when the index has it (kb.search.searcher.Searcher.passage_vectors' counterpart)."""
        return self.adapted if self.adapted and self.chinese_through_tower(query, tuned) else "dense"

    def _params(self, field: str, limit: int) -> dict[str, object]:
        if field == "sparse":
            return {"metric_type": "BM25"}
        extra = {"HNSW": {"ef": max(limit, 64)}, "IVF_FLAT": {"nprobe": 32}}.get(self.target.index_type, {})
        return {"metric_type": "IP", "params": extra}

    def _search_one(self, field: str, data: object, expr: str, limit: int) -> list[str]:
        """One channel: chunk_ids, best first."""
        res = self.db.client.search(
            self.db.chunks,
            data=[data],
            anns_field=field,
            limit=limit,
            filter=expr,
            output_fields=[],
            search_params=self._params(field, limit),
            consistency_level=self.target.consistency,
        )
        return [str(hit["chunk_id"]) for hit in res[0]]

    def _hybrid(self, requests: dict[str, Request]) -> dict[str, float]:
        """All channels in one hybrid_search, fused by Milvus's (unweighted) RRF."""
        from pymilvus import AnnSearchRequest, RRFRanker

        reqs = [
            AnnSearchRequest(
                data=[data], anns_field=field, param=self._params(field, limit), limit=limit, expr=expr or None
            )
            for field, data, expr, limit in requests.values()
        ]
        limit = min(sum(r[3] for r in requests.values()), 16_383)
        res = self.db.client.hybrid_search(
            self.db.chunks,
            reqs,
            RRFRanker(config.RRF_K),
            limit=limit,
            output_fields=[],
            consistency_level=self.target.consistency,
        )
        return {str(hit["chunk_id"]): float(hit["distance"]) for hit in res[0]}

    def _hits(
        self,
        ranked: dict[str, list[str]],
        fused: dict[str, float] | None,
        query: str,
        k: int,
        lang: str | None,
        xrefs: bool,
        weights: dict[str, float],
        reorder: Reorder | None = None,
    ) -> list[Hit]:
        # Passages of documents this searcher has not loaded (written by a build since) wait for refresh().
        ranked = {ch: [c for c in ids if parse_chunk_id(c)[0] in self.prior] for ch, ids in ranked.items()}
        if fused is not None:
            fused = {c: v for c, v in fused.items() if parse_chunk_id(c)[0] in self.prior}

        def neighbour(cid: str, offset: int) -> str | None:
            # Chunk ids number a document's passages in reading order; the document filters hold for all of
            # them once they hold for one, and the language is checked when the chunk is fetched.
            doc_id, n = parse_chunk_id(cid)
            return chunk_id(doc_id, n + offset) if 0 <= n + offset < self.docs[doc_id].chunks else None

        # Ties fall to reading order (the FAISS index's row order): earlier documents and articles first.
        result = fuse(
            ranked,
            weights,
            k,
            prior=lambda c: self.prior[parse_chunk_id(c)[0]],
            tie=lambda c: (reading_order(parse_chunk_id(c)[0]), parse_chunk_id(c)[1]),
            doc_of=lambda c: parse_chunk_id(c)[0],
            neighbour=neighbour,
            fetch=lambda ids: self._fetch(ids, lang),
            fused=fused,
        )
        return hits_of(result, query, self.docs, self.spans, self.resolver if xrefs else None, self, reorder)

    def _similarity(self, query: str, tuned: bool) -> Similarity | None:
        if "dense" not in self.channels:
            return None

        # the adapter's field for a question in any language through the tower, as the FAISS backend reads it
        # (kb.search.searcher.Searcher._similarity): its English rows equal the stored ones
        field = self.adapted if self.adapted and self.through_tower(tuned) else "dense"

        def sims(hits: Sequence[Hit]) -> np.ndarray | None:
            ids = [h.chunk.chunk_id for h in hits]
            rows = self.db.client.query(
                self.db.chunks,
                filter=in_clause("chunk_id", ids),
                output_fields=["chunk_id", field],
                consistency_level=self.target.consistency,
            )
            vectors = {str(r["chunk_id"]): r[field] for r in rows}
            if any(i not in vectors for i in ids):
                return None
            matrix = np.array([vectors[i] for i in ids], dtype=np.float32)
            return matrix @ self.question_vector(query, tuned).astype(np.float32)

        return sims

    def _fetch(self, ids: list[str], lang: str | None) -> dict[str, Chunk]:
        """Chunks by id (those of another language than the filter's left out: a lifted neighbour may be one)."""
        if not ids:
            return {}
        rows = self.db.client.query(
            self.db.chunks,
            filter=in_clause("chunk_id", ids),
            output_fields=list(CHUNK_FIELDS),
            consistency_level=self.target.consistency,
        )
        chunks = (chunk_from_row(r) for r in rows)
        return {c.chunk_id: c for c in chunks if lang is None or (c.lang == "zh") == (lang == "zh")}


def adapted_field(manifest: dict[str, object]) -> str | None:
    """The field of passage-adapted vectors a build wrote (kb.milvus.build.manifest_for), if any."""
    info = manifest.get("passage_adapter")
    return str(info["field"]) if isinstance(info, dict) and info.get("field") else None
