"""Document -> Chunks: one per article for statutes, numbered sections for policies, headed windows for English."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from kb import config
from kb.errors import IngestError
from kb.ingest.document import Document
from kb.ingest.read import detect_lang, read_document
from kb.legal.structure import Segment, find_articles, legal_segments, policy_segments

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter


@dataclass(frozen=True)
class Chunk:
    """A passage with exact provenance: document.text[char_start:char_end] == text."""

    chunk_id: str
    doc_id: str
    title: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    lang: str
    article: str | None = None
    article_no: int | None = None
    section: str | None = None
    part: int = 0
    parts: int = 1
    page: int | None = None
    page_end: int | None = None

    def index_text(self) -> str:
        """What BM25 and the encoders see: title, heading path and article before the passage."""
        head = " ".join(x for x in (self.title, self.section, self.article) if x)
        return f"{head}\n{self.text}" if head else self.text


# Milvus's VARCHAR limit, in bytes: a passage's index text (title, headings, text) must fit it on every backend.
MAX_PASSAGE_BYTES = 65_535
# Sentence ends for Chinese (。；！？) and English (. ! ? followed by a space).
_SENT_END = re.compile(r"[。；！？]|[.!?](?=\s)")
_EN_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$|^(\S.{0,150})\n(?:=+|-{3,})[ \t]*$", re.M)


def read_passages(corpus: Path, doc_id: str, overrides: dict[str, str] | None = None) -> tuple[Document, list[Chunk]]:
    """Read one corpus file and chunk it: what every index backend stores for a file.

    Raises:
        IngestError: the file cannot be read, is unreadable on disk, or gives no passages; the reason is one line.
    """
    try:
        doc = read_document(corpus, doc_id, overrides)
    except OSError as exc:
        raise IngestError(doc_id, f"unreadable ({exc.strerror or exc})") from exc
    chunks = chunk_document(doc)
    if not chunks:
        raise IngestError(doc_id, "no passages after chunking")
    too_long = next(
        (c for c in chunks if len(c.index_text().encode("utf-8", "surrogatepass")) > MAX_PASSAGE_BYTES), None
    )
    if too_long is not None:  # Milvus stores a passage in one 65,535-byte field; both backends refuse it alike
        raise IngestError(
            doc_id,
            f"passage {too_long.ordinal} with its headings is over {MAX_PASSAGE_BYTES} bytes "
            "(a heading thousands of characters long?)",
        )
    return doc, chunks


def chunk_id(doc_id: str, ordinal: int) -> str:
    """The id of a document's passage number `ordinal` (from 0, in reading order): "doc#12"."""
    return f"{doc_id}#{ordinal}"


def parse_chunk_id(cid: str) -> tuple[str, int]:
    """A chunk id's document and passage number ("doc#12" -> ("doc", 12))."""
    doc_id, _, n = cid.rpartition("#")
    return doc_id, int(n)


def chunk_document(doc: Document) -> list[Chunk]:
    """Split a document by its structure; every chunk is an exact slice of doc.text that holds no page furniture
    (a passage that would run over a running header or printed page number ends before it, the next starts after)."""
    text = doc.text
    if doc.lang == "zh" and len(find_articles(text)) >= 3:
        spans = _pieces(legal_segments(text), doc, config.ZH_MAX_CHARS)
    elif doc.lang == "zh":
        spans = _pieces(policy_segments(text), doc, config.ZH_MAX_CHARS)
    else:
        spans = _english(doc)
    chunks = []
    for n, (start, end, seg, part, parts) in enumerate(spans):
        page = doc.page_at(start) if doc.page_spans else None
        page_end = doc.page_at(end - 1) if doc.page_spans else None
        piece = text[start:end]
        chunks.append(
            Chunk(
                chunk_id=chunk_id(doc.doc_id, n),
                doc_id=doc.doc_id,
                title=doc.title,
                ordinal=n,
                text=piece,
                char_start=start,
                char_end=end,
                lang=detect_lang(piece) if doc.lang == "en" else doc.lang,
                article=seg.article,
                article_no=seg.article_no,
                section=" / ".join(seg.headings) or None,
                part=part,
                parts=parts,
                page=page,
                page_end=page_end,
            )
        )
    return chunks


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    # Any Unicode whitespace (form feeds from PDFs and Word, NEL, thin spaces), not only the common kinds:
    # a chunk must never be blank.
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pieces(segments: list[Segment], doc: Document, limit: int) -> list[tuple[int, int, Segment, int, int]]:
    """Trim each segment; cut it at page furniture; split overlong ones at 款 (line breaks), then at sentence ends."""
    text = doc.text
    out = []
    for seg in segments:
        ranges = []
        for clear_start, clear_end in doc.clear_of_furniture(seg.start, seg.end):
            start, end = _trim(text, clear_start, clear_end)
            if start < end:
                ranges += _split_range(text, start, end, limit)
        for part, (s, e) in enumerate(ranges):
            out.append((s, e, seg, part if len(ranges) > 1 else 0, len(ranges)))
    return out


def _split_range(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Greedy packing of paragraphs (then sentences) into pieces of at most `limit` characters."""
    if end - start <= limit:
        return [(start, end)]
    cuts = [m.end() + start for m in re.finditer(r"\n+", text[start:end])]
    units = _units(start, end, cuts)
    fine: list[tuple[int, int]] = []
    for s, e in units:
        if e - s <= limit:
            fine.append((s, e))
            continue
        sent = [m.end() + s for m in _SENT_END.finditer(text[s:e])]
        for s2, e2 in _units(s, e, sent):
            # A sentence longer than the limit is cut at the limit: rare, and still an exact slice.
            fine.extend((p, min(p + limit, e2)) for p in range(s2, e2, limit))
    pieces: list[tuple[int, int]] = []
    cur_s, cur_e = fine[0]
    for s, e in fine[1:]:
        if e - cur_s <= limit:
            cur_e = e
        else:
            pieces.append((cur_s, cur_e))
            cur_s, cur_e = s, e
    pieces.append((cur_s, cur_e))
    trimmed = [_trim(text, s, e) for s, e in pieces]
    return [(s, e) for s, e in trimmed if s < e]


def _units(start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [start] + [c for c in cuts if start < c < end] + [end]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@lru_cache(maxsize=1)
def _splitter() -> RecursiveCharacterTextSplitter:
    """langchain's splitter, imported when English text is first chunked (half a second a search never needs)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        chunk_size=config.EN_CHUNK_CHARS,
        chunk_overlap=config.EN_CHUNK_OVERLAP,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
        add_start_index=True,
        strip_whitespace=True,
    )


def _english(doc: Document) -> list[tuple[int, int, Segment, int, int]]:
    """Sections at Markdown / setext headings; windows within a section (cut at page furniture) by the token budget,
    with overlap."""
    text = doc.text
    marks = [
        (
            m.start(),
            m.end(),
            len(m.group(1)) if m.group(1) else (1 if m.group(0).rstrip().endswith("=") else 2),
            (m.group(2) or m.group(3)).strip().strip("*_ ").replace("\\", ""),
        )
        for m in _EN_HEADING.finditer(text)
    ]
    sections: list[tuple[int, int, tuple[str, ...]]] = []
    path: dict[int, str] = {}
    prev_end = 0
    current: tuple[str, ...] = ()
    for h_start, h_end, level, label in marks:
        sections.append((prev_end, h_start, current))
        path = {lvl: name for lvl, name in path.items() if lvl < level}
        path[level] = label
        current = tuple(path[k] for k in sorted(path))
        prev_end = h_end
    sections.append((prev_end, len(text), current))
    out = []
    for s, e, headings in sections:
        s, e = _trim(text, s, e)
        if s >= e:
            continue
        seg = Segment(s, e, headings[-2:])
        windows = []
        for clear_start, clear_end in doc.clear_of_furniture(s, e):
            windows += _windows(text, *_trim(text, clear_start, clear_end))
        for part, (ws, we) in enumerate(windows):
            out.append((ws, we, seg, part if len(windows) > 1 else 0, len(windows)))
    return out


def _windows(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """langchain's windows over text[start:end] as exact offsets ([] for an empty range)."""
    windows = []
    for d in _splitter().create_documents([text[start:end]]) if start < end else []:
        offset = start + d.metadata["start_index"]
        if text[offset : offset + len(d.page_content)] != d.page_content:  # splitter lost the place
            offset = text.find(d.page_content, start)
        windows.append((offset, offset + len(d.page_content)))
    return windows
