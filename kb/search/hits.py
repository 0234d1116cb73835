"""Hits: one ranked, cited passage, and the one function both backends build them with."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kb.catalog.resolve import ArticleSource, Resolved, Resolver
from kb.catalog.timeline import Span
from kb.chunk import Chunk
from kb.cite import citation, highlight_spans, pinpoint
from kb.ingest.document import DocMeta, DocRow
from kb.ingest.scans import passage_source
from kb.legal.pinpoint import Place
from kb.search.fusion import Fused


@dataclass(frozen=True)
class Hit:
    """One ranked passage with everything needed to cite and show it."""

    chunk: Chunk
    score: float
    rank: int
    citation: str
    highlights: tuple[tuple[int, int], ...]
    channels: tuple[tuple[str, int], ...]
    meta: DocMeta
    path: str
    also_in: tuple[str, ...] = ()
    span: Span | None = None  # when the text is in force, and the other versions of the same law
    xrefs: tuple[Resolved, ...] = ()  # references made in this passage and the chunks they point to
    place: Place | None = None  # the 款 / 项 cited when the passage or the question's words single one out

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `python -m kb search --json`."""
        c, span = self.chunk, self.span
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "doc_id": c.doc_id,
            "title": c.title,
            "citation": self.citation,
            "article": c.article,
            "section": c.section,
            "page": c.page,
            "page_end": c.page_end,
            "char_start": c.char_start,
            "char_end": c.char_end,
            "lang": c.lang,
            "chunk_id": c.chunk_id,
            "text": c.text,
            "highlights": [list(s) for s in self.highlights],
            "channels": dict(self.channels),
            "path": self.path,
            "also_in": list(self.also_in),
            "meta": {
                k: getattr(self.meta, k)
                for k in ("level", "issuer", "doc_number", "published", "effective", "validity", "region")
            },
            "in_force": {"from": span.start if span else None, "until": span.end if span else None},
            "versions": list(span.versions) if span else [],
            "xrefs": [r.to_dict() for r in self.xrefs],
            "pinpoint": self.place.to_dict() if self.place else None,
            # `ocr` when the passage was read from a scanned page, `text` from a PDF's text layer (issue 20)
            "source": passage_source(dict(self.meta.extra), c.page, c.page_end),
        }


# What a backend's hit list goes through before its hits are completed: the reranker (kb.search.rerank), which
# reads only each hit's passage, rank and channels, re-orders and re-scores them and keeps the k asked for.
Reorder = Callable[[list["Hit"]], list["Hit"]]


def hits_of(
    result: Fused,
    query: str,
    docs: Mapping[str, DocRow],
    spans: Mapping[str, Span],
    resolver: Resolver | None,
    source: ArticleSource | None = None,
    reorder: Reorder | None = None,
) -> list[Hit]:
    """Hits for a fused list (either backend): citation (with its 款 where one is singled out: kb.cite.pinpoint),
    highlights, metadata as shown, in-force span, and the passage's cross-references when a resolver is given.

    Args:
        source: where the other parts of a split article are read, to number its 款.
        reorder: applied to the hits before their highlights, 款, citation and references are made, so these
            are made only for the hits it keeps (the reranker scores 100 candidates and keeps 10: making them for
            30 was a tenth of a loaded server's CPU). Each hit's own fields do not depend on the others'.
    """
    hits = [_bare(result, key, rank, docs, spans) for rank, key in enumerate(result.order, start=1)]
    if reorder is not None:
        hits = reorder(hits)
    return [_completed(hit, query, resolver, source) for hit in hits]


def _bare(result: Fused, key: object, rank: int, docs: Mapping[str, DocRow], spans: Mapping[str, Span]) -> Hit:
    """A hit with its passage, rank, score, channels, metadata and span; no highlights, 款, citation or references."""
    chunk = result.chunk(key)
    doc, span = docs.get(chunk.doc_id), spans.get(chunk.doc_id)
    meta = doc.meta if doc else DocMeta()
    if span and meta.validity is None and span.validity:  # derived from later versions or repeals
        meta = dataclasses.replace(meta, validity=span.validity)
    return Hit(
        chunk=chunk,
        score=result.scores[key],
        rank=rank,
        citation="",
        highlights=(),
        channels=tuple(result.channels.get(key, ())),
        meta=meta,
        path=chunk.doc_id,
        also_in=result.also_in(key),
        span=span,
    )


def _completed(hit: Hit, query: str, resolver: Resolver | None, source: ArticleSource | None) -> Hit:
    chunk, meta = hit.chunk, hit.meta
    marks = highlight_spans(chunk.text, query)
    parts = [chunk]
    if chunk.parts > 1 and chunk.article_no is not None and source is not None:
        parts = [p for p in source.article_chunks(chunk.doc_id, chunk.article_no) if p.article == chunk.article]
        parts = parts or [chunk]
    place = pinpoint(chunk, parts, marks)
    return dataclasses.replace(
        hit,
        citation=citation(chunk, place=place, page_labels=str(dict(meta.extra).get("page_labels", ""))),
        highlights=marks,
        xrefs=tuple(resolver.references(chunk)) if resolver is not None else (),
        place=place,
    )
