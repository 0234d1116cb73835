"""What the quote check reports: a verdict, and each location with its citation, offsets, context and diff."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from kb.chunk import Chunk
from kb.cite import citation
from kb.errors import IndexCorruptError
from kb.index.store import Store
from kb.ingest.document import Document
from kb.quote.diff import DiffOp, sentence_span

VERDICTS = ("verbatim", "normalized", "omissions", "altered", "not_found")
LABELS = {
    "verbatim": "verbatim",
    "normalized": "verbatim after normalisation",
    "omissions": "with omissions",
    "altered": "close but altered",
    "not_found": "not found",
    "paraphrase": "possible paraphrase",
    "translation": "possible source (translation)",
}


@dataclass(frozen=True)
class QuoteMatch:
    """A place the quote (or one part of it) was found, in original document offsets.

    kind is a verdict for this place (verbatim, normalized, omissions, altered) or, for a quote found nowhere,
    'paraphrase' / 'translation' (a nearby passage in the quote's own / the other language).
    """

    kind: str
    doc_id: str
    title: str
    citation: str
    article: str | None
    section: str | None
    page: int | None
    page_end: int | None
    char_start: int
    char_end: int
    text: str
    similarity: float | None  # 0..1 on folded text; None for a translation, where characters cannot compare
    context: str  # the sentence(s) around the match
    context_start: int
    lang: str
    diff: tuple[DiffOp, ...] = ()
    parts: tuple[tuple[int, int], ...] = ()  # omissions: where each part of the quote is
    quote_span: tuple[int, int] | None = None  # which part of the quote this place accounts for
    also_in: tuple[str, ...] = ()  # other documents with the same passage (versions, copies)

    @property
    def label(self) -> str:
        """Human wording of kind: 'verbatim after normalisation', 'possible source (translation)', ..."""
        return LABELS[self.kind]

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of one match in `python -m kb quote --json`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["label"] = self.label
        out["similarity"] = None if self.similarity is None else round(self.similarity, 4)
        out["diff"] = [d.to_dict() for d in self.diff]
        out["parts"] = [list(p) for p in self.parts]
        out["quote_span"] = list(self.quote_span) if self.quote_span else None
        out["also_in"] = list(self.also_in)
        return out


@dataclass(frozen=True)
class QuoteReport:
    """The verdict on one quote and its locations, best first."""

    quote: str
    verdict: str
    matches: tuple[QuoteMatch, ...]
    total: int = 0  # documents the quote was located in (exact, normalised, omissions), capped
    note: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.verdict]

    def to_dict(self) -> dict[str, object]:
        """The JSON object of `python -m kb quote --json`."""
        return {
            "quote": self.quote,
            "verdict": self.verdict,
            "label": self.label,
            "note": self.note,
            "total": self.total,
            "matches": [m.to_dict() for m in self.matches],
        }


def locate(
    store: Store,
    doc: Document,
    kind: str,
    s: int,
    e: int,
    similarity: float | None,
    diff: tuple[DiffOp, ...] = (),
    pieces: tuple[tuple[int, int], ...] = (),
) -> QuoteMatch:
    """A match at original offsets [s, e) of doc, cited to its article or section and to the page it is on."""
    chunks = _doc_chunks(store, doc.doc_id)
    first, last = _chunk_at(chunks, s, e), _chunk_at(chunks, e - 1, e)
    page, page_end = (doc.page_at(s), doc.page_at(e - 1)) if doc.page_spans else (None, None)
    cite = doc.title
    if first is not None:
        cite = citation(dataclasses.replace(first, page=page, page_end=page_end))
        if last is not None and _place(last) and _place(last) != _place(first):
            cite += f" – {_place(last)}"
    cs, ce = sentence_span(doc.text, s, e)
    return QuoteMatch(
        kind,
        doc.doc_id,
        doc.title,
        cite,
        first.article if first else None,
        first.section if first else None,
        page,
        page_end,
        s,
        e,
        doc.text[s:e],
        similarity,
        doc.text[cs:ce],
        cs,
        doc.lang,
        diff,
        pieces,
    )


def collapse(matches: list[QuoteMatch], k: int) -> tuple[QuoteMatch, ...]:
    """The first k distinct matches; the same passage in other documents (versions, copies) goes to also_in."""
    first: dict[tuple[str, str], QuoteMatch] = {}
    also: dict[tuple[str, str], list[str]] = {}
    for m in matches:
        key = (m.kind, "".join(m.context.split()))
        if key not in first:
            first[key], also[key] = m, []
        elif m.doc_id != first[key].doc_id and m.doc_id not in also[key]:
            also[key].append(m.doc_id)
    return tuple(dataclasses.replace(m, also_in=tuple(also[key])) for key, m in list(first.items())[:k])


def _place(chunk: Chunk) -> str:
    return chunk.article or (chunk.section or "").split(" / ")[-1]


def _chunk_at(chunks: list[Chunk], s: int, e: int) -> Chunk | None:
    """The chunk holding [s, e) whole if one does (English chunks overlap), else the one holding s."""
    holding = [c for c in chunks if c.char_start <= s < c.char_end]
    whole = [c for c in holding if e <= c.char_end]
    found = whole or holding
    return found[0] if found else None


def word_bounds(text: str, s: int, e: int) -> tuple[int, int]:
    """Widen [s, e) so it neither starts nor ends inside an English word."""

    def word(ch: str) -> bool:
        return ch.isalnum() and ch < "\u2e80"

    while 0 < s < len(text) and word(text[s - 1]) and word(text[s]):
        s -= 1
    while 0 < e < len(text) and word(text[e - 1]) and word(text[e]):
        e += 1
    return s, e


@lru_cache(maxsize=32)
def document(store: Store, doc_id: str) -> Document:
    """A stored document (the last few are kept in memory: a quote often lands in the same law again)."""
    doc = store.document(doc_id)
    if doc is None:
        raise IndexCorruptError(
            f"{doc_id} is in the quote index but not in the chunk store: rebuild with `python -m kb build`"
        )
    return doc


@lru_cache(maxsize=32)
def _doc_chunks(store: Store, doc_id: str) -> list[Chunk]:
    return store.doc_chunks(doc_id)
