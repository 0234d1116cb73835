"""Hits: one ranked, cited passage, and the one function both backends build them with."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from kb.catalog.resolve import Resolved, Resolver
from kb.catalog.timeline import Span
from kb.chunk import Chunk
from kb.cite import citation, highlight_spans
from kb.ingest.document import DocMeta, DocRow
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
        }


def hits_of(
    result: Fused, query: str, docs: Mapping[str, DocRow], spans: Mapping[str, Span], resolver: Resolver | None
) -> list[Hit]:
    """Hits for a fused list (either backend): citation, highlights, metadata as shown, in-force span, and the
    passage's cross-references when a resolver is given."""
    hits = []
    for rank, key in enumerate(result.order, start=1):
        chunk = result.chunk(key)
        doc, span = docs.get(chunk.doc_id), spans.get(chunk.doc_id)
        meta = doc.meta if doc else DocMeta()
        if span and meta.validity is None and span.validity:  # derived from later versions or repeals
            meta = dataclasses.replace(meta, validity=span.validity)
        hits.append(
            Hit(
                chunk=chunk,
                score=result.scores[key],
                rank=rank,
                citation=citation(chunk, page_labels=dict(meta.extra).get("page_labels", "")),
                highlights=highlight_spans(chunk.text, query),
                channels=tuple(result.channels.get(key, ())),
                meta=meta,
                path=chunk.doc_id,
                also_in=result.also_in(key),
                span=span,
                xrefs=tuple(resolver.references(chunk)) if resolver is not None else (),
            )
        )
    return hits
