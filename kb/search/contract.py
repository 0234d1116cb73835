"""The backend contract: what the CLI, the app and the benchmarks call on an index, whichever backend serves it.

`Backend` is all a caller may use. kb.search.base.SearcherBase implements what both backends share once (query
and filter checks, the model check, embedder loading, hit assembly); kb.search.searcher (the FAISS index
folder) and kb.milvus.search (a Milvus collection) only translate a query into their engine's searches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, Unpack

from kb.catalog.facets import Facets
from kb.catalog.resolve import Resolved
from kb.chunk import Chunk
from kb.embed.models import Embedder
from kb.index.citedby import Citing
from kb.ingest.document import Document
from kb.search.hits import Hit

MODES = ("hybrid", "keyword", "semantic")
# Channel -> chunk ids, best first: what `rankings` gives and `fuse` takes.
Rankings = dict[str, list[str]]


class SearchOptions(TypedDict, total=False):
    """What a search takes besides the question and k, written once: the CLI, the HTTP API, the MCP tool, the
    service and both backends pass it on by these names (each is explained at kb.search.base.SearcherBase.search).
    """

    lang: str | None
    docs: Sequence[str] | None
    mode: str
    include_repealed: bool
    levels: Sequence[str] | None
    issuers: Sequence[str] | None
    validity: Sequence[str] | None
    date_from: str | None
    date_to: str | None
    date_field: str
    as_of: str | None
    xrefs: bool
    tuned: bool | None
    rerank: bool | None


class Backend(Protocol):
    """A searchable index: ranked, cited passages and the documents behind them."""

    weights: dict[str, float]  # channel -> weight in the fusion (benchmarks tune them)
    tuned: bool  # questions through the question tower (kb.embed.tower) unless a search says otherwise
    rerank: bool  # the trained reranker (kb.search.rerank) re-orders the fused passages unless a search says otherwise

    @property
    def passages(self) -> int:
        """Live passages in the index."""
        ...

    @property
    def generation(self) -> str:
        """A name that changes with every build that changed the index (a cache key for results)."""
        ...

    def refresh(self) -> bool:
        """Take up what a build has written since this was opened; True when anything changed."""
        ...

    def search(self, query: str, k: int = 10, **options: Unpack[SearchOptions]) -> list[Hit]:
        """Rank passages for a question in Chinese or English (options: kb.search.base.SearcherBase.search).

        Raises:
            QueryError: empty query, unknown mode, or a filter value the index cannot answer.
        """
        ...

    def rankings(
        self,
        query: str,
        want: int,
        *,
        lang: str | None = None,
        docs: Sequence[str] | None = None,
        mode: str = "hybrid",
        include_repealed: bool = False,
        tuned: bool | None = None,
    ) -> Rankings:
        """Each channel's chunk ids, best first, before fusion (benchmarks tune the fusion on these)."""
        ...

    def fuse(self, ranked: Rankings, query: str, k: int, *, include_repealed: bool = False) -> list[Hit]:
        """Hits from channel rankings made by `rankings` (`kb.search.fusion.depth(k)` deep for `search`'s list)."""
        ...

    def documents(self) -> list[dict[str, Any]]:
        """The indexed documents with metadata, chunk counts and when each is in force (the `kb docs --json` rows)."""
        ...

    def source(self, doc_id: str) -> tuple[Document, list[Chunk]]:
        """A document's full text and its chunks in reading order.

        Raises:
            QueryError: no such document in the index.
        """
        ...

    def facets(self) -> Facets:
        """Levels, issuers, validity, regions and languages with document counts, and date ranges."""
        ...

    def references(self, chunk: Chunk) -> list[Resolved]:
        """The cross-references made in a passage, resolved to chunks of this index where it holds them."""
        ...

    def citing(
        self, doc_id: str, article_no: int, sub: int | None = None, paragraph: int | None = None
    ) -> list[Citing]:
        """Passages of other documents citing an article (kb.index.citedby), references to the whole article
        included when a 款 is asked for.

        Raises:
            QueryError: this index holds no cited-by table (built before it existed, or a Milvus collection).
        """
        ...

    def embedder(self, channel: str, tuned: bool = False) -> Embedder:
        """The embedder the index recorded for a channel, loaded on first use (tuned: with the question tower)."""
        ...

    def warm(self) -> None:
        """Load now what the first question would wait for (models, vocabularies); for a background thread."""
        ...
