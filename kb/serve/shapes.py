"""The JSON shapes of the CLI's `--json` and of the HTTP API and MCP tools, declared once.

The builders here are the only way either side turns a result into JSON, so `python -m kb search --json` and
`GET /search` print the same object; the TypedDicts are what the OpenAPI schema is generated from, and a test
validates real output against them with unknown keys forbidden (so the declaration cannot drift from the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, cast

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic reads these for the OpenAPI schema (typing's, not before 3.12)

from kb.catalog.facets import Facets
from kb.catalog.resolve import Resolved
from kb.chunk import Chunk
from kb.cite import citation
from kb.quote.result import QuoteReport
from kb.search.hits import Hit

STRICT = ConfigDict(extra="forbid")  # the schema lists every key: an undeclared one fails validation

InForce = TypedDict("InForce", {"from": str | None, "until": str | None})  # "from" is a keyword: functional form
with_config(STRICT)(InForce)


@with_config(STRICT)
class HitMeta(TypedDict):
    level: str | None
    issuer: str | None
    doc_number: str | None
    published: str | None
    effective: str | None
    validity: str | None
    region: str | None


@with_config(STRICT)
class Target(TypedDict):
    doc_id: str
    article_no: int
    chunk_id: str
    citation: str


@with_config(STRICT)
class Xref(TypedDict):
    """A reference made in a passage (`text` at `start`-`end` of the passage) and the article it points to."""

    text: str
    kind: str
    start: int
    end: int
    target: Target | None
    reason: str | None


@with_config(STRICT)
class PlaceJSON(TypedDict):
    """Where a text is: its document, citation, article, section, pages and character offsets in the document."""

    doc_id: str
    title: str
    citation: str
    article: str | None
    section: str | None
    page: int | None
    page_end: int | None
    char_start: int
    char_end: int
    lang: str
    text: str


@with_config(STRICT)
class PassageJSON(PlaceJSON):
    """One passage as stored, with what is needed to cite it and find it in its document."""

    chunk_id: str


@with_config(STRICT)
class BoxJSON(TypedDict):
    """Where a passage lies on a PDF page (kb.ingest.boxes.Box): PDF points from the page's top left."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float


@with_config(STRICT)
class PinpointJSON(TypedDict):
    """The 款 / 项 a hit singles out (kb.legal.pinpoint.Place): 《law》第<article_no>条[之<sub>]第<paragraphs>款…."""

    law: str
    article_no: int
    sub: int | None
    paragraphs: list[int]
    items: list[int]


@with_config(STRICT)
class HitJSON(PassageJSON):
    """One ranked, cited passage: `python -m kb search --json` list items, `GET /search` `hits`."""

    rank: int
    score: float
    highlights: list[list[int]]
    channels: dict[str, int]
    path: str
    also_in: list[str]
    meta: HitMeta
    in_force: InForce
    versions: list[str]
    xrefs: list[Xref]
    pinpoint: PinpointJSON | None
    source: str | None  # `ocr`: read from a scanned page; `text`: from a text layer; None: not a paged file
    boxes: NotRequired[list[BoxJSON]]  # `search --json --boxes` only


@with_config(STRICT)
class DiffJSON(TypedDict):
    op: str
    quote: str
    source: str


@with_config(STRICT)
class QuoteMatchJSON(PlaceJSON):
    """A place a quote (or a part of it) was found; `text` is what stands there."""

    kind: str
    label: str
    similarity: float | None
    context: str
    context_start: int
    diff: list[DiffJSON]
    parts: list[list[int]]
    quote_span: list[int] | None
    also_in: list[str]


@with_config(STRICT)
class QuoteJSON(TypedDict):
    """`python -m kb quote --json`, `POST /quote`."""

    quote: str
    verdict: str
    label: str
    note: str
    total: int
    matches: list[QuoteMatchJSON]


@with_config(STRICT)
class DocMetaJSON(TypedDict):
    level: str | None
    issuer: str | None
    doc_number: str | None
    published: str | None
    effective: str | None
    validity: str | None
    region: str | None
    source_format: str
    encoding: str | None
    sha256: str
    extra: dict[str, str]


@with_config(STRICT)
class DocumentJSON(TypedDict):
    """`python -m kb docs --json` list items, `GET /documents` `documents`."""

    doc_id: str
    title: str
    lang: str
    meta: DocMetaJSON
    chunks: int
    in_force: InForce
    versions: list[str]


@with_config(STRICT)
class FacetsJSON(TypedDict):
    """`python -m kb docs --facets`, `GET /facets`: values with document counts, and [first, last] dates."""

    levels: dict[str, int]
    issuers: dict[str, int]
    validity: dict[str, int]
    regions: dict[str, int]
    langs: dict[str, int]
    published: list[str | None]
    effective: list[str | None]
    documents: int
    unknown: dict[str, int]


@with_config(STRICT)
class ArticleJSON(TypedDict):
    """`GET /article`: the passages of one article, the passages around it, and the law's dates."""

    doc_id: str
    title: str
    article: str | None
    citation: str
    passages: list[PassageJSON]
    before: list[PassageJSON]
    after: list[PassageJSON]
    in_force: InForce
    versions: list[str]


@with_config(STRICT)
class CitingJSON(TypedDict):
    passage: PassageJSON
    ref: Xref


@with_config(STRICT)
class ReferencesJSON(TypedDict):
    """`GET /references`: what a passage cites (resolved to passages) and which passages cite its article."""

    passage: PassageJSON
    made: list[Xref]
    cited_by: list[CitingJSON]


@with_config(STRICT)
class VersionJSON(TypedDict):
    doc_id: str
    title: str
    published: str | None
    effective: str | None
    validity: str | None
    in_force: InForce


@with_config(STRICT)
class VersionsJSON(TypedDict):
    """`GET /versions`: every version of the law a document belongs to, oldest first."""

    doc_id: str
    versions: list[VersionJSON]


@with_config(STRICT)
class HealthJSON(TypedDict):
    status: str
    generation: str
    passages: int
    documents: int
    channels: list[str]
    version: str


def hits_json(hits: Sequence[Hit]) -> list[HitJSON]:
    """A search's hits, best first."""
    return [cast(HitJSON, h.to_dict()) for h in hits]


def quote_json(report: QuoteReport) -> QuoteJSON:
    return cast(QuoteJSON, report.to_dict())


def documents_json(rows: Sequence[dict[str, object]]) -> list[DocumentJSON]:
    return [cast(DocumentJSON, r) for r in rows]


def facets_json(facets: Facets) -> FacetsJSON:
    return cast(FacetsJSON, facets.to_dict())


def xrefs_json(refs: Sequence[Resolved]) -> list[Xref]:
    return [cast(Xref, r.to_dict()) for r in refs]


def passage_json(chunk: Chunk) -> PassageJSON:
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "title": chunk.title,
        "citation": citation(chunk),
        "article": chunk.article,
        "section": chunk.section,
        "page": chunk.page,
        "page_end": chunk.page_end,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "lang": chunk.lang,
        "text": chunk.text,
    }
