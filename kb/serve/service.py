"""What the HTTP API and the MCP tools answer, written once over one index: search, quote check, documents,
facets, an article with its neighbours, references made by and to a passage, versions of a law, health.

Every method returns a JSON shape of kb.serve.shapes and raises kb.errors.QueryError (bad input: 400) or
another KbError (the index: 503). A background thread takes up each generation a `kb build` publishes; searches
in flight finish on the generation they started on (kb.search.searcher snapshots it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from kb import config
from kb.backends import open_searcher
from kb.catalog.resolve import Resolved
from kb.chunk import Chunk, parse_chunk_id
from kb.errors import KbError, QueryError
from kb.legal.pinpoint import sub_of
from kb.legal.structure import cn_number
from kb.quote.check import QuoteChecker
from kb.search.base import SearcherBase
from kb.search.contract import Backend, SearchOptions
from kb.serve import shapes
from kb.serve.batch import BatchingEmbedder
from kb.serve.shapes import ArticleJSON, HealthJSON, ReferencesJSON, VersionJSON, VersionsJSON

log = logging.getLogger(__name__)

MAX_CITING = 200  # passages listed as citing one article (a much-cited article lists its first 200)
T = TypeVar("T")

MAX_K = 100  # hits a search may ask for: a page of results, not a dump of the index
MAX_QUOTE_K = 20
MAX_NEIGHBOURS = 5
REFRESH_SECONDS = 2.0  # how often a server looks for a generation a build has published


class Service:
    """One index opened for serving, shared by the HTTP routes and the MCP tools of a worker process."""

    def __init__(
        self, index_dir: Path, searcher: Backend | None = None, refresh: bool = True, batch: bool = True
    ) -> None:
        """batch: embed the questions of concurrent searches together (kb.serve.batch).

        Raises: IndexMissingError, IndexCorruptError, ModelMismatchError (each says the fix)."""
        self.index_dir = Path(index_dir)
        self.searcher = searcher or open_searcher("faiss", self.index_dir)
        if batch and isinstance(self.searcher, SearcherBase):
            self.searcher.query_wrapper = BatchingEmbedder
        self.quotes = QuoteChecker(self.index_dir, searcher=self.searcher)
        self._cache: dict[tuple[str, str], object] = {}
        self._cache_lock = threading.Lock()
        self._stop = threading.Event()
        if refresh:
            threading.Thread(target=self._watch, name="kb-refresh", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self.refresh()

    def refresh(self) -> bool:
        """Take up a newly published generation; the old one keeps serving if the new one cannot be opened."""
        try:
            changed = self.searcher.refresh()
            changed = self.quotes.refresh() or changed
        except KbError as exc:
            log.warning("new index generation not taken up, still serving %s: %s", self.searcher.generation, exc)
            return False
        if changed:
            log.info("serving generation %s", self.searcher.generation)
        return changed

    def search(self, q: str, k: int = 10, options: SearchOptions | None = None) -> list[shapes.HitJSON]:
        """The hits of `python -m kb search --json` for the same question, k and options."""
        check_k(k, MAX_K)
        return shapes.hits_json(self.searcher.search(q, k, **(options or {})))

    def quote(self, text: str, k: int = 5) -> shapes.QuoteJSON:
        check_k(k, MAX_QUOTE_K)
        return shapes.quote_json(self.quotes.check(text, k))

    def documents(self) -> list[shapes.DocumentJSON]:
        """The document table as JSON, built once per generation (3,423 rows of dates and versions each time
        was repeated work per request)."""
        return self._per_generation("documents", lambda: shapes.documents_json(self.searcher.documents()))

    def facets(self) -> shapes.FacetsJSON:
        return self._per_generation("facets", lambda: shapes.facets_json(self.searcher.facets()))

    def _per_generation(self, name: str, make: Callable[[], T]) -> T:
        generation = self.searcher.generation
        key = (generation, name)
        if key not in self._cache:
            value = make()
            with self._cache_lock:
                self._cache = {k: v for k, v in self._cache.items() if k[0] == generation}
                self._cache[key] = value
        return cast(T, self._cache[key])

    def article(
        self, doc_id: str | None, article: str | None, chunk_id: str | None, neighbours: int = 1
    ) -> ArticleJSON:
        """One article (by doc_id and 第X条 / its number, or by the chunk_id of one of its passages) with
        `neighbours` passages before and after it."""
        check_k(neighbours, MAX_NEIGHBOURS, name="neighbours", least=0)
        if chunk_id:
            doc_id, n = _parse_chunk(chunk_id)
            chunks = self._chunks(doc_id)
            if not 0 <= n < len(chunks):
                raise QueryError(f"no passage {chunk_id}: {doc_id} has passages #0 to #{len(chunks) - 1}")
            first = chunks[n]
            same = [c for c in chunks if first.article_no is not None and c.article_no == first.article_no]
            picked = same or [first]
        elif doc_id and article:
            chunks = self._chunks(doc_id)
            number = article_number(article)
            picked = [c for c in chunks if c.article_no == number]
            if not picked:
                known = sorted({c.article_no for c in chunks if c.article_no is not None})
                have = f"it has articles {known[0]} to {known[-1]}" if known else "it has no numbered articles"
                raise QueryError(f"{doc_id} has no article {article}: {have}")
        else:
            raise QueryError("give doc_id and article (第十条 or 10), or chunk_id")
        lo, hi = picked[0].ordinal, picked[-1].ordinal
        span = self.searcher.spans.get(picked[0].doc_id) if hasattr(self.searcher, "spans") else None
        return {
            "doc_id": picked[0].doc_id,
            "title": picked[0].title,
            "article": picked[0].article,
            "citation": shapes.passage_json(picked[0])["citation"],
            "passages": [shapes.passage_json(c) for c in picked],
            "before": [shapes.passage_json(c) for c in chunks[max(0, lo - neighbours) : lo]],
            "after": [shapes.passage_json(c) for c in chunks[hi + 1 : hi + 1 + neighbours]],
            "in_force": {"from": span.start if span else None, "until": span.end if span else None},
            "versions": list(span.versions) if span else [],
        }

    def references(self, chunk_id: str) -> ReferencesJSON:
        """The references a passage makes, resolved, and the passages of the index that cite its article."""
        doc_id, n = _parse_chunk(chunk_id)
        chunks = self._chunks(doc_id)
        if not 0 <= n < len(chunks):
            raise QueryError(f"no passage {chunk_id}: {doc_id} has passages #0 to #{len(chunks) - 1}")
        chunk = chunks[n]
        citing = self._citing(chunk, chunks)
        return {
            "passage": shapes.passage_json(chunk),
            "made": shapes.xrefs_json(self.searcher.references(chunk)),
            "cited_by": [{"passage": shapes.passage_json(c), "ref": shapes.xrefs_json([r])[0]} for c, r in citing],
        }

    def versions(self, doc_id: str) -> VersionsJSON:
        rows = {d["doc_id"]: d for d in self.documents()}
        if doc_id not in rows:
            raise QueryError(f"no such document in the index: {doc_id} (GET /documents lists them)")
        out: list[VersionJSON] = []
        for v in rows[doc_id]["versions"] or [doc_id]:
            row = rows.get(v)
            if row is None:
                continue
            meta = row["meta"]
            out.append(
                {
                    "doc_id": v,
                    "title": row["title"],
                    "published": meta["published"],
                    "effective": meta["effective"],
                    "validity": meta["validity"],
                    "in_force": row["in_force"],
                }
            )
        return {"doc_id": doc_id, "versions": out}

    def health(self) -> HealthJSON:
        s = self.searcher
        return {
            "status": "ok",
            "generation": s.generation,
            "passages": s.passages,
            "documents": len(getattr(s, "docs", {})),
            "channels": sorted(getattr(s, "channels", {})),
            "version": config.VERSION,
        }

    def _chunks(self, doc_id: str) -> list[Chunk]:
        return self.searcher.source(doc_id)[1]

    def _citing(self, chunk: Chunk, own: list[Chunk]) -> list[tuple[Chunk, Resolved]]:
        """Passages citing this passage's article: its own document's (本法第九条), then other documents' from the
        generation's cited-by table (kb.index.citedby), each with the reference as resolved; at most MAX_CITING.

        Raises:
            QueryError: the index has no cited-by table (built before it existed, or a backend without one).
        """
        if chunk.article_no is None:
            return []
        sub = sub_of(chunk.article)

        def aims(ref: Resolved) -> bool:
            t = ref.target
            return t is not None and t.doc_id == chunk.doc_id and t.article_no == chunk.article_no

        out = [(c, r) for c in own if c.article != chunk.article for r in self.searcher.references(c) if aims(r)]
        for row in self.searcher.citing(chunk.doc_id, chunk.article_no, sub):
            doc_id, n = parse_chunk_id(row.chunk_id)
            other = self._chunks(doc_id)[n]
            out += [(other, r) for r in self.searcher.references(other) if r.ref.start == row.start and aims(r)]
            if len(out) >= MAX_CITING:
                break
        return out[:MAX_CITING]


def check_k(k: int, most: int, name: str = "k", least: int = 1) -> None:
    """Raises QueryError when a count is out of range (the API's 4xx names the limit)."""
    if not least <= k <= most:
        raise QueryError(f"{name} must be between {least} and {most}, not {k}")


def article_number(article: str) -> int:
    """'第十条', '十', '10' or '第10条' -> 10.

    Raises:
        QueryError: not an article number.
    """
    body = article.strip().removeprefix("第").removesuffix("条").strip()
    number = cn_number(body) if body else None
    if not number:
        raise QueryError(f"'{article}' is not an article number: give 第十条, 十 or 10")
    return number


def _parse_chunk(chunk_id: str) -> tuple[str, int]:
    try:
        return parse_chunk_id(chunk_id)
    except ValueError:
        raise QueryError(
            f"'{chunk_id}' is not a chunk id: it looks like doc_id#N (search results carry them)"
        ) from None
