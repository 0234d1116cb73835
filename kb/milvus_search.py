"""Query -> Hits from a Milvus index: Searcher's interface and Hit contract, filters pushed down to Milvus.

Channels as in kb.search: BM25 (Milvus's BM25 function over a jieba-analysed field), e5 over passages in the
question's language (`dense`) and in the other (`dense_x`), and USE over the other language (`xling`) when
the index has it. Each channel is one Milvus search with the filter expression (kb.milvus_filters) and its
language condition. Fusion:

- 'client' (default): weighted reciprocal rank over the channels' results, exactly as kb.search (e5 weight
  1.5), reporting each hit's rank in every channel that found it.
- 'milvus': one hybrid_search call fused by Milvus's RRFRanker. Milvus's RRF has no channel weights and
  returns no per-channel ranks, so hits carry no `channels`; the level preference and the collapsing of
  identical passages still apply here.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kb import config, qtower
from kb.chunk import Chunk
from kb.embed import Embedder, load_embedder
from kb.errors import IndexMissingError, ModelMismatchError, QueryError
from kb.filters import Facets, Filters, facets
from kb.fusion import depth, fuse
from kb.ingest import DocMeta, Document, detect_lang
from kb.milvus_build import reading_order
from kb.milvus_filters import expression
from kb.milvus_schema import CHUNK_FIELDS, bm25_text, chunk_from_row
from kb.milvus_store import MilvusDB, MilvusTarget, doc_rows, iterate, quote
from kb.search import Hit, check_query, clean_query, hits_of
from kb.timeline import documents_in_force, spans
from kb.xref_resolve import Resolved, Resolver

log = logging.getLogger(__name__)

FUSIONS = ("client", "milvus")


@dataclass(frozen=True)
class MilvusIndex:
    """What the app reads of a loaded index (kb.loader.LoadedIndex.n and .gen.name): the passage count, and a
    generation name that changes with every build (a cache key for results)."""

    n: int
    gen: PurePosixPath


class MilvusSearcher:
    """Connects to a Milvus index once and answers queries like kb.search.Searcher."""

    def __init__(self, where: MilvusTarget, model: str | None = None, embedders: dict[str, Embedder] | None = None,
                 weights: dict[str, float] | None = None, fusion: str = "client", tuned: bool | None = None) -> None:
        if fusion not in FUSIONS:
            raise QueryError(f"unknown fusion '{fusion}': use one of {', '.join(FUSIONS)}")
        self.target, self.fusion = where, fusion
        self.tuned = config.TUNED if tuned is None else tuned  # the question tower (kb.qtower)
        self.weights = dict(weights or config.WEIGHTS)
        self._given = dict(embedders or {})
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-milvus")
        if where.lite and not Path(where.uri).exists():  # opening would create an empty one
            raise IndexMissingError(f"no index at {where.uri}: run `python -m kb build --backend milvus "
                                    f"--uri {where.uri}`")
        self.db = MilvusDB(where)
        try:
            self.manifest = self.db.require_manifest()
            self._check_models(model)
            self._open()
        except BaseException:
            self.db.close()
            raise

    def _check_models(self, model: str | None) -> None:
        channels = self.manifest.get("channels") or {}
        dense = channels.get("dense")
        short = {"multilingual-e5-small": "e5", "use-multilingual-v3": "use"}
        if model and dense and model not in (dense["model"], short.get(dense["model"])):
            raise ModelMismatchError(
                f"{self.target.uri} was built with model '{dense['model']}', not '{model}': search without --model, "
                f"or rebuild with `python -m kb build --backend milvus --uri {self.target.uri} --model {model}`")
        for channel, embedder in self._given.items():
            info = channels.get(channel)
            if info and (info["model"] != embedder.name or int(info["dim"]) != embedder.dim):
                raise ModelMismatchError(
                    f"{self.target.uri} channel '{channel}' was built with '{info['model']}' ({info['dim']} dims), "
                    f"not '{embedder.name}' ({embedder.dim}): rebuild with `python -m kb build --backend milvus`")

    def _open(self) -> None:
        """Read the document table (metadata for filters, facets, spans and cross-references)."""
        rows = doc_rows(self.db)
        self.docs = {d: {"doc_id": d, "title": r["title"], "lang": r["lang"], "meta": r["meta"],
                         "chunks": int(r["n_chunks"])} for d, r in sorted(rows.items())}  # type: ignore[call-overload]
        self.spans = spans(self.docs)
        self.levels = tuple(sorted({str(d["meta"].get("level")) for d in self.docs.values() if d["meta"].get("level")}))
        self.issuers = tuple(sorted({str(d["meta"].get("issuer")) for d in self.docs.values()
                                     if d["meta"].get("issuer")}))
        self.prior = {d: config.LEVEL_PRIOR.get(r["meta"].get("level") or "", 1.0) for d, r in self.docs.items()}
        self.n = sum(int(d["chunks"]) for d in self.docs.values())
        zh = self.db.client.query(self.db.chunks, filter='lang == "zh"', output_fields=["count(*)"])
        self.langs = {"zh": int(zh[0]["count(*)"]), "other": self.n - int(zh[0]["count(*)"])}
        self.stamp = self._stamp()
        self.index = MilvusIndex(self.n, PurePosixPath(self.stamp.replace(" ", "-") or "unbuilt"))
        self._articles: dict[tuple[str, int], list[Chunk]] = {}
        self.resolver = Resolver(self.docs, self)

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
        """Re-read the document table if a build has written since; True when it did."""
        if self._stamp() == self.stamp:
            return False
        with self._lock:
            self._open()
        return True

    def embedder(self, channel: str, tuned: bool = False) -> Embedder:
        """The embedder the index recorded for a channel, loaded on first use; tuned: with the question tower."""
        if channel in self._given:
            return self._given[channel]
        with self._lock:
            if channel not in self._embedders:
                self._embedders[channel] = load_embedder(str(self.manifest["channels"][channel]["model"]))
            if tuned and channel == "dense" and "dense+tower" not in self._embedders:
                self._embedders["dense+tower"] = qtower.wrap(self._embedders[channel], self.manifest,
                                                             Path(self.target.uri))
        return self._embedders["dense+tower" if tuned and channel == "dense" else channel]

    def documents(self) -> list[dict[str, object]]:
        """The indexed documents with metadata, chunk counts and when each is in force, as Searcher.documents."""
        return documents_in_force(self.docs, self.spans)

    def source(self, doc_id: str) -> tuple[Document, list[Chunk]]:
        """A document's full text and its chunks in reading order.

        Raises:
            QueryError: no such document in the index.
        """
        rows = self.db.client.query(self.db.docs, ids=[doc_id], output_fields=["doc_id", "path", "title", "lang",
                                                                                "meta", "page_spans"])
        if not rows:
            raise QueryError(f"no such document in the index: {doc_id}")
        row = rows[0]
        pieces = sorted(iterate(self.db, self.db.texts, f"doc_id == {quote(doc_id)}", ["part", "text"]),
                        key=lambda r: int(r["part"]))
        doc = Document(doc_id=doc_id, path=str(row["path"]), title=str(row["title"]), lang=str(row["lang"]),
                       text="".join(str(p["text"]) for p in pieces), meta=DocMeta.from_dict(json.loads(row["meta"])),
                       page_spans=tuple(tuple(p) for p in json.loads(row["page_spans"])))
        chunks = [chunk_from_row(r) for r in iterate(self.db, self.db.chunks, f"doc_id == {quote(doc_id)}",
                                                     list(CHUNK_FIELDS))]
        return doc, sorted(chunks, key=lambda c: c.ordinal)

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]:
        """The chunks of one article of one document (cross-reference targets; kb.xref_resolve.ArticleSource)."""
        key = (doc_id, article_no)
        if key not in self._articles:
            rows = self.db.client.query(self.db.chunks, filter=f"doc_id == {quote(doc_id)} and article_no == "
                                        f"{int(article_no)}", output_fields=list(CHUNK_FIELDS))
            self._articles[key] = sorted((chunk_from_row(r) for r in rows), key=lambda c: c.ordinal)
        return self._articles[key]

    def facets(self) -> Facets:
        """Levels, issuers, validity, regions and languages with document counts, and date ranges."""
        return facets(self.docs, self.spans)

    def references(self, chunk: Chunk) -> list[Resolved]:
        """The cross-references made in a passage, resolved to chunks of this index where it holds them."""
        return self.resolver.references(chunk)

    def search(self, query: str, k: int = 10, *, lang: str | None = None, docs: Sequence[str] | None = None,
               mode: str = "hybrid", include_repealed: bool = False, levels: Sequence[str] | None = None,
               issuers: Sequence[str] | None = None, validity: Sequence[str] | None = None,
               date_from: str | None = None, date_to: str | None = None, date_field: str = "published",
               as_of: str | None = None, xrefs: bool = True, tuned: bool | None = None) -> list[Hit]:
        """Rank passages for a question; arguments, results and errors as kb.search.Searcher.search."""
        query = clean_query(query)
        filters = Filters(lang=lang, docs=tuple(docs or ()), levels=tuple(levels or ()), issuers=tuple(issuers or ()),
                          validity=tuple(validity or ()), date_from=date_from, date_to=date_to,
                          date_field=date_field, as_of=as_of, include_repealed=include_repealed)
        requests = self._requests(query, depth(k), filters, mode, self.tuned if tuned is None else tuned)
        if self.fusion == "milvus" and len(requests) > 1:
            found, fused = {}, self._hybrid(requests)
        else:
            # The channels' searches run at once: a server answers them in parallel.
            found = dict(zip(requests, self._pool.map(lambda req: self._search(*req), requests.values())))
            fused = None
        return self._hits(found, fused, query, k, filters.lang, xrefs)

    def rankings(self, query: str, want: int, *, mode: str = "hybrid") -> dict[str, list[str]]:
        """Each channel's chunk_ids, best first, before fusion (kb.search.Searcher.rankings gives row numbers)."""
        requests = self._requests(clean_query(query), want, Filters(), mode, self.tuned)
        return dict(zip(requests, self._pool.map(lambda req: self._search(*req), requests.values())))

    def _requests(self, query: str, want: int, filters: Filters, mode: str, tuned: bool) -> dict[str, tuple]:
        """channel -> (vector field, query data, filter expression, limit)."""
        check_query(query, mode)
        expr = expression(filters, self.docs, self.levels, self.issuers)
        # Passages in the question's language and in the other are ranked apart, as in kb.search; a
        # language the index has no passages in costs no search.
        zh = detect_lang(query) == "zh"
        same, other = ('lang == "zh"', 'lang != "zh"') if zh else ('lang != "zh"', 'lang == "zh"')
        has_same, has_other = (self.langs["zh"], self.langs["other"]) if zh else (self.langs["other"], self.langs["zh"])

        def both(part: str) -> str:
            return f"{expr} and ({part})" if expr else part

        out: dict[str, tuple] = {}
        terms = bm25_text(query)
        if mode in ("hybrid", "keyword") and terms.strip():
            out["bm25"] = ("sparse", terms, expr, want)
        channels = self.manifest.get("channels") or {}
        if mode in ("hybrid", "semantic"):
            if "dense" in channels:
                vec = self.embedder("dense", tuned).query([query])[0].tolist()
                if has_same:
                    out["dense"] = ("dense", vec, both(same), want)
                if has_other:
                    out["dense_x"] = ("dense", vec, both(other), want)
            if "xling" in channels and has_other:
                out["xling"] = ("xling", self.embedder("xling").query([query])[0].tolist(), both(other), want)
        return out

    def _params(self, field: str, limit: int) -> dict[str, object]:
        if field == "sparse":
            return {"metric_type": "BM25"}
        extra = {"HNSW": {"ef": max(limit, 64)}, "IVF_FLAT": {"nprobe": 32}}.get(self.target.index_type, {})
        return {"metric_type": "IP", "params": extra}

    def _search(self, field: str, data: object, expr: str, limit: int) -> list[str]:
        """One channel: chunk_ids, best first."""
        res = self.db.client.search(self.db.chunks, data=[data], anns_field=field, limit=limit, filter=expr,
                                    output_fields=[], search_params=self._params(field, limit),
                                    consistency_level=self.target.consistency)
        return [str(hit["chunk_id"]) for hit in res[0]]

    def _hybrid(self, requests: dict[str, tuple]) -> dict[str, float]:
        """All channels in one hybrid_search, fused by Milvus's (unweighted) RRF."""
        from pymilvus import AnnSearchRequest, RRFRanker

        reqs = [AnnSearchRequest(data=[data], anns_field=field, param=self._params(field, limit), limit=limit,
                                 expr=expr or None) for field, data, expr, limit in requests.values()]
        limit = min(sum(r[3] for r in requests.values()), 16_383)
        res = self.db.client.hybrid_search(self.db.chunks, reqs, RRFRanker(config.RRF_K), limit=limit,
                                           output_fields=[], consistency_level=self.target.consistency)
        return {str(hit["chunk_id"]): float(hit["distance"]) for hit in res[0]}

    def _hits(self, ranked: dict[str, list[str]], fused: dict[str, float] | None, query: str, k: int,
              lang: str | None, xrefs: bool) -> list[Hit]:
        # Passages of documents this searcher has not loaded (written by a build since) wait for refresh().
        ranked = {ch: [c for c in ids if _doc_of(c)[0] in self.prior] for ch, ids in ranked.items()}
        if fused is not None:
            fused = {c: v for c, v in fused.items() if _doc_of(c)[0] in self.prior}

        def neighbour(cid: str, offset: int) -> str | None:
            # Chunk ids number a document's passages in reading order; the document filters hold for all of
            # them once they hold for one, and the language is checked when the chunk is fetched.
            doc_id, n = _doc_of(cid)
            return f"{doc_id}#{n + offset}" if 0 <= n + offset < int(self.docs[doc_id]["chunks"]) else None

        # Ties fall to reading order (the FAISS index's row order): earlier documents and articles first.
        result = fuse(ranked, self.weights, k, prior=lambda c: self.prior[_doc_of(c)[0]],
                      tie=lambda c: (reading_order(_doc_of(c)[0]), _doc_of(c)[1]), doc_of=lambda c: _doc_of(c)[0],
                      neighbour=neighbour, fetch=lambda ids: self._fetch(ids, lang), fused=fused)
        return hits_of(result, query, self.docs, self.spans, self.resolver if xrefs else None)

    def _fetch(self, ids: list[str], lang: str | None) -> dict[str, Chunk]:
        """Chunks by id (those of another language than the filter's left out: a lifted neighbour may be one)."""
        if not ids:
            return {}
        rows = self.db.client.query(self.db.chunks, ids=ids, output_fields=list(CHUNK_FIELDS),
                                    consistency_level=self.target.consistency)
        chunks = (chunk_from_row(r) for r in rows)
        return {c.chunk_id: c for c in chunks if lang is None or (c.lang == "zh") == (lang == "zh")}


def _doc_of(cid: str) -> tuple[str, int]:
    """A chunk id's document and passage number ("doc#12" -> ("doc", 12))."""
    doc_id, _, n = cid.rpartition("#")
    return doc_id, int(n)
