"""The Document a file becomes, its metadata (DocMeta), and its row in an index's document table (DocRow)."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

META_FIELDS = ("level", "issuer", "doc_number", "published", "effective", "validity", "region")
# extra["repeals"]: titles the text says it repeals, joined by this (a title never contains it).
REPEALS_SEP = "|"


@dataclass(frozen=True)
class DocMeta:
    """What is known about a document besides its text; None where unknown."""

    level: str | None = None
    issuer: str | None = None
    doc_number: str | None = None
    published: str | None = None
    effective: str | None = None
    validity: str | None = None
    region: str | None = None
    source_format: str = "txt"
    encoding: str | None = None
    sha256: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON (extra becomes a mapping)."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DocMeta:
        """Inverse of to_dict."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in known and k != "extra"}
        extra = data.get("extra") or {}
        return cls(**kwargs, extra=tuple(sorted((str(k), str(v)) for k, v in dict(extra).items())))


@dataclass(frozen=True)
class Document:
    """One source file as text; page_spans are (page, char_start, char_end) for PDFs.

    furniture: sorted (char_start, char_end) spans of a PDF's printed page numbers and running headers and footers
    (kb.ingest.pdfpages). They stay in the text, which reads as the pages print it; no passage includes one. Known
    when the file is read (the chunker uses them); an index stores the text, not these spans.
    """

    doc_id: str
    path: str
    title: str
    lang: str
    text: str
    meta: DocMeta = field(default_factory=DocMeta)
    page_spans: tuple[tuple[int, int, int], ...] = ()
    furniture: tuple[tuple[int, int], ...] = ()

    def clear_of_furniture(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of text[start:end] between furniture spans, in order (the whole range when none falls in it)."""
        out, pos = [], start
        first = max(0, bisect_right(self.furniture, (start, start)) - 1)
        for f_start, f_end in self.furniture[first:]:
            if f_start >= end:
                break
            if f_end <= pos:
                continue
            if f_start > pos:
                out.append((pos, f_start))
            pos = max(pos, f_end)
        if pos < end:
            out.append((pos, end))
        return out

    def page_at(self, offset: int) -> int | None:
        """Page number holding character offset (None for documents without pages)."""
        page = None
        for number, start, _end in self.page_spans:
            if start <= offset:
                page = number
            else:
                break
        return page


def blank_spans(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """The text with each span blanked by spaces (same length, line breaks kept): a PDF's text without its page
    furniture, for reading its title, language and metadata."""
    if not spans:
        return text
    parts, pos = [], 0
    for start, end in spans:
        parts += [text[pos:start], re.sub(r"[^\n]", " ", text[start:end])]
        pos = end
    return "".join([*parts, text[pos:]])


@dataclass(frozen=True)
class Skipped:
    """A corpus file that did not become a Document, and why."""

    doc_id: str
    reason: str


@dataclass(frozen=True)
class DocRow:
    """A document as an index's document table lists it: no text, its metadata and passage count."""

    doc_id: str
    title: str
    lang: str
    meta: DocMeta
    chunks: int

    @classmethod
    def from_dict(cls, doc_id: str, data: Mapping[str, Any]) -> DocRow:
        """A row from its JSON shape (missing language and count: '' and 0)."""
        meta = data.get("meta") or {}
        return cls(
            doc_id,
            str(data.get("title", "")),
            str(data.get("lang", "")),
            meta if isinstance(meta, DocMeta) else DocMeta.from_dict(meta),
            int(data.get("chunks", 0)),
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON shape (`kb docs --json`): meta as a plain dict."""
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "lang": self.lang,
            "meta": self.meta.to_dict(),
            "chunks": self.chunks,
        }
