"""Cross-references -> chunks: which indexed document a reference names, and which chunk holds its article.

A title in 《》 or a short title finds its document by ``title_key``; among versions of one law, the one in
force when the citing text was made. A code filed in parts (民法典 合同编, 物权编 ...) is searched part by
part. A bare 第N条 belongs to the citing document, except in an amending decision (关于修改《X》的决定:
X's article) or when the citing document lacks the article and its title names a law (关于适用刑法分则规定
的犯罪的罪名的意见: 刑法's). 前款 is counted in 款: lines of the article, item lines （一） excepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kb.catalog.timeline import version_start
from kb.chunk import Chunk
from kb.ingest.document import DocRow
from kb.legal.meta import title_key
from kb.legal.pinpoint import book_title, cn, paragraph_starts
from kb.legal.structure import cn_number
from kb.legal.xref import NAME_END, Reference, find_references

_AMENDS = re.compile(r"修改《([^《》]{2,80})》")
_TITLE_IN = re.compile(r"《([^《》]{2,80})》")


@dataclass(frozen=True)
class Target:
    """Where a reference points: a document's article and the chunk holding it."""

    doc_id: str
    article_no: int
    chunk_id: str
    citation: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON shape."""
        return {
            "doc_id": self.doc_id,
            "article_no": self.article_no,
            "chunk_id": self.chunk_id,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class Resolved:
    """A reference and its target, or why it has none."""

    ref: Reference
    target: Target | None
    reason: str | None = None  # "not in the index", "no such article", "no previous paragraph"

    def to_dict(self) -> dict[str, object]:
        """The JSON shape hits carry under 'xrefs'."""
        return {
            "text": self.ref.text,
            "kind": self.ref.kind,
            "start": self.ref.start,
            "end": self.ref.end,
            "target": self.target.to_dict() if self.target else None,
            "reason": self.reason,
        }


class ArticleSource(Protocol):
    """Chunks of one article of one document, in reading order (the chunk store, or a list in memory)."""

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]: ...


class ChunkTable:
    """ArticleSource over chunks held in memory (measurement scripts, tests)."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._by: dict[tuple[str, int], list[Chunk]] = {}
        for c in chunks:
            if c.article_no is not None:
                self._by.setdefault((c.doc_id, c.article_no), []).append(c)

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]:
        """Chunks of an article, in reading order."""
        return self._by.get((doc_id, article_no), [])


class Resolver:
    """Turns References into Targets among the documents of an index."""

    def __init__(self, docs: Mapping[str, DocRow], source: ArticleSource) -> None:
        """docs: the doc table; source: where article chunks are read."""
        self.source = source
        self.titles = {d: row.title for d, row in docs.items()}
        self.starts = {d: version_start(row.meta) for d, row in docs.items()}
        self.by_key: dict[str, list[str]] = {}
        # A code filed in parts ("中华人民共和国民法典 合同编", ...) numbers its articles across the parts: a
        # reference to 民法典第一千一百六十八条 looks in each part.
        self.books: dict[str, list[str]] = {}
        for doc_id, title in self.titles.items():
            self.by_key.setdefault(title_key(title), []).append(doc_id)
            head = title.split()
            if len(head) > 1 and NAME_END.search(head[0]):
                self.books.setdefault(title_key(head[0]), []).append(doc_id)
        # Short titles written without 《》 must look like an instrument name (刑法, 消费者权益保护法), or
        # common words would match.
        self.short_keys = frozenset(k for k in [*self.by_key, *self.books] if NAME_END.search(k))

    def references(self, chunk: Chunk) -> list[Resolved]:
        """The resolved references made inside one chunk."""
        return [self.resolve(ref, chunk) for ref in find_references(chunk.text, self.short_keys)]

    def docs_for(self, law: str, citing: str) -> list[str]:
        """The indexed documents a title names: among versions, the one in force when the citing text was made
        (else the latest); for a code filed in parts, every part."""
        key = title_key(law)
        found = self.by_key.get(key, [])
        if not found:
            return sorted(self.books.get(key, []))
        if len(found) == 1:
            return found
        when = self.starts.get(citing)
        dated = sorted((self.starts[d] or "", d) for d in found)
        before = [d for s, d in dated if when and s and s <= when]
        return [before[-1] if before else dated[-1][1]]

    def _law_in_title(self, title: str) -> str:
        named = _TITLE_IN.findall(title)
        if named:
            return named[0]
        inside = [k for k in self.short_keys if k in title and title_key(title) != k]
        return max(inside, key=len) if inside else ""

    def resolve(self, ref: Reference, chunk: Chunk) -> Resolved:
        """Target of a reference made in chunk."""
        candidates, article_no, sub, paragraph = [chunk.doc_id], ref.article_no, ref.sub, ref.paragraph
        amended = _AMENDS.search(f"{chunk.section or ''} {chunk.title}") if ref.kind == "bare" else None
        if ref.kind in ("named", "short") or amended:
            # In an amending decision ("关于修改《X》的决定", or its section "一、修改《X》") a bare 第N条 is X's.
            candidates = self.docs_for(amended.group(1) if amended else str(ref.law), chunk.doc_id)
            if not candidates:
                return Resolved(ref, None, "not in the index")
        elif ref.kind == "bare":
            # A bare 第N条 that this document lacks, in a text whose title names one law ("关于适用刑法分则规定的
            # 犯罪的罪名的意见", "关于执行《刑法》确定罪名的补充规定"), is that law's article.
            candidates += self.docs_for(self._law_in_title(chunk.title), chunk.doc_id)
        elif ref.kind == "relative":
            if chunk.article_no is None:
                return Resolved(ref, None, "not inside an article")
            if ref.text == "前条":
                article_no, sub = chunk.article_no - 1, None
            else:
                article_no, sub = chunk.article_no, sub_of(chunk.article)
                if ref.back:
                    here = _paragraph_at(self.source.article_chunks(chunk.doc_id, chunk.article_no), chunk, ref.start)
                    paragraph = here - ref.back
                    if paragraph < 1:
                        return Resolved(ref, None, "no previous paragraph")
        assert article_no is not None
        for doc_id in candidates:
            parts = [c for c in self.source.article_chunks(doc_id, article_no) if sub_of(c.article) == sub]
            if parts:
                break
        else:
            return Resolved(ref, None, "no such article")
        target = _part_with_paragraph(parts, paragraph)
        label = target.article or f"第{cn(article_no)}条"
        cite = book_title(self.titles[doc_id]) + label + (f"第{cn(paragraph)}款" if paragraph else "")
        return Resolved(ref, Target(doc_id, article_no, target.chunk_id, cite))


def sub_of(label: str | None) -> int | None:
    """M of an article label 第N条之M; None for a plain 第N条."""
    m = re.search(r"之([一二三四五六七八九十]+)$", label or "")
    return cn_number(m.group(1)) if m else None


def _paragraph_at(parts: list[Chunk], chunk: Chunk, offset: int) -> int:
    """The 1-based paragraph number of an offset in chunk, counting the paragraphs of earlier parts."""
    before = sum(len(paragraph_starts(p.text, p.part > 0)) for p in parts if p.ordinal < chunk.ordinal)
    return before + sum(1 for s in paragraph_starts(chunk.text, chunk.part > 0) if s <= offset)


def _part_with_paragraph(parts: list[Chunk], paragraph: int | None) -> Chunk:
    if paragraph is None or len(parts) == 1:
        return parts[0]
    seen = 0
    for part in parts:
        seen += len(paragraph_starts(part.text, part.part > 0))
        if paragraph <= seen:
            return part
    return parts[-1]
