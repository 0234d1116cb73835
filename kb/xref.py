"""Cross-references in Chinese legal texts: find "《X法》第N条", "本法第N条第M款", "前款" and resolve them to chunks.

A reference names a scope and a list of articles: 《中华人民共和国邮政法》第五十二条、第五十三条 is two
references; 第四十一条至第四十三条 is three; 第十六条第一款第四项 is article 16, paragraph (款) 1, item 4.
Scopes are a title in 《》, 本法 / 本条例 / 本规定 / 本办法 (this document), the short title of an indexed
document written without 《》 (消费者权益保护法第二十五条, common in judicial interpretations), or nothing
(a bare 第N条 inside an article means this document). 前款 / 前两款 / 前条 / 本条第M款 / a bare 第M款 are
relative to the article they stand in.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kb.chunk import Chunk
from kb.legal import cn_number, find_articles
from kb.legalmeta import title_key
from kb.timeline import DocRow, version_start

_N = "零〇一二三四五六七八九十百千两0-9０-９"
_TOKEN = re.compile(
    rf"(?P<art>第(?P<a>[{_N}]+)条(?:之(?P<sub>[一二三四五六七八九十]+))?)"
    rf"|(?P<para>第(?P<p>[{_N}]+)款)"
    rf"|(?P<item>第[（(]?(?P<i>[{_N}]+)[）)]?项)"
    r"|(?P<range>至|到)"
    r"|(?P<sep>、|以及|和|及|或者|或|与)"
)
_SCOPE = re.compile(
    r"《(?P<title>[^《》\n]{2,80})》"
    r"|(?P<self>本(?:法|条例|规定|办法|细则|解释|决定|规则|准则|通知|意见))(?=第)"
    r"|(?P<rel>前[一二两三四]?款|前条|本条(?!例)|本款)"
    rf"|(?P<bare>第[{_N}]+[条款])"
)
# A bare article reference preceded by a name like 食品安全法 cites that law, not this document.
_NAME_BEFORE = re.compile(r"[\u4e00-\u9fa5](?:法|法典|条例|规定|办法|细则|解释|决定)$")
_AMENDS = re.compile(r"修改《([^《》]{2,80})》")
_TITLE_IN = re.compile(r"《([^《》]{2,80})》")
_SELF_BEFORE = re.compile(r"本(?:法|条例|规定|办法|细则|解释|决定)$")
_ITEM_LINE = re.compile(r"[ \t\u3000]*[（(][一二三四五六七八九十]+[）)]")
_COUNTS = {"前款": 1, "前一款": 1, "前两款": 2, "前二款": 2, "前三款": 3, "前四款": 4}
KINDS = ("named", "self", "short", "bare", "relative")


@dataclass(frozen=True)
class Reference:
    """One cited article (or paragraph) as written; start/end are offsets in the scanned text."""

    start: int
    end: int
    text: str  # the whole citation it belongs to: "《中华人民共和国邮政法》第五十二条、第五十三条"
    kind: str  # one of KINDS
    law: str | None  # the title as written for named / short references
    article_no: int | None  # None for 前款 / 本条 (the containing article)
    sub: int | None = None  # 第十条之一 -> 1
    paragraph: int | None = None
    item: int | None = None
    back: int = 0  # 前款 = 1, 前两款 = 2, 前条 = 1 (article back)


@dataclass(frozen=True)
class Target:
    """Where a reference points: a document's article and the chunk holding it."""

    doc_id: str
    article_no: int
    chunk_id: str
    citation: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON shape."""
        return {"doc_id": self.doc_id, "article_no": self.article_no, "chunk_id": self.chunk_id,
                "citation": self.citation}


@dataclass(frozen=True)
class Resolved:
    """A reference and its target, or why it has none."""

    ref: Reference
    target: Target | None
    reason: str | None = None  # "not in the index", "no such article", "no previous paragraph"

    def to_dict(self) -> dict[str, object]:
        """The JSON shape hits carry under 'xrefs'."""
        return {"text": self.ref.text, "kind": self.ref.kind, "start": self.ref.start, "end": self.ref.end,
                "target": self.target.to_dict() if self.target else None, "reason": self.reason}


def find_references(text: str, known: Iterable[str] = ()) -> list[Reference]:
    """Every article reference in text (article headings excluded); known: title keys of indexed documents."""
    heads = {start for start, _, _ in find_articles(text)}
    keys = set(known)
    out: list[Reference] = []
    pos = 0
    while (m := _SCOPE.search(text, pos)) is not None:
        pos = m.end()
        if m.group("title"):
            refs = _list(text, m.end(), m.start(), "named", m.group("title"))
        elif m.group("self"):
            refs = _list(text, m.end(), m.start(), "self", None)
        elif m.group("rel"):
            refs = _relative(text, m)
        else:
            if m.start() in heads:
                continue
            before = text[max(0, m.start() - 30):m.start()]
            short = _known_suffix(before, keys)
            if short:
                refs = _list(text, m.start(), m.start() - len(short), "short", short)
            elif _NAME_BEFORE.search(before) and not _SELF_BEFORE.search(before):
                # Another instrument's article (食品安全法第一百三十一条) that no indexed title matches.
                refs = _list(text, m.start(), m.start(), "short", _guess_name(before))
                refs = [Reference(m.start() - len(r.law or ""), r.end, (r.law or "") + r.text, r.kind, r.law,
                                  r.article_no, r.sub, r.paragraph, r.item) for r in refs]
            else:
                refs = _list(text, m.start(), m.start(), "bare", None)
        if refs:
            out += refs
            pos = max(pos, refs[-1].end)
    return out


def _known_suffix(before: str, keys: set[str]) -> str | None:
    """The longest indexed short title that the text just before a 第N条 ends with."""
    for length in range(min(len(before), 30), 1, -1):
        if before[-length:] in keys:
            return before[-length:]
    return None


def _guess_name(before: str) -> str:
    """The instrument name ending just before a reference, cut after the verb or particle that precedes it."""
    m = re.search(r"[\u4e00-\u9fa5]+$", before)
    name = m.group(0) if m else before
    return re.split(r"依据|依照|根据|按照|违反|适用|参照|主张|属于|的|和|及|或者", name)[-1] or name


def _tokens(text: str, pos: int) -> Iterable[re.Match[str]]:
    while (m := _TOKEN.match(text, pos)) is not None:
        yield m
        pos = m.end()


def _list(text: str, pos: int, cite_start: int, kind: str, law: str | None) -> list[Reference]:
    """The articles (with 款 and 项) listed from pos on: 第十二条、第十三条 / 第八条至第十一条."""
    items: list[dict[str, int | None]] = []
    pending_range = False
    end = pos
    for m in _tokens(text, pos):
        if m.group("art"):
            number = cn_number(m.group("a"))
            if number is None:
                break
            first = items[-1]["article_no"] if pending_range and items else None
            if first is not None and number > first:  # 第八条至第十一条: the articles in between too
                items += [{"article_no": n, "sub": None, "paragraph": None, "item": None} for n in range(first + 1, number)]
            sub = cn_number(m.group("sub")) if m.group("sub") else None
            items.append({"article_no": number, "sub": sub, "paragraph": None, "item": None})
            pending_range = False
        elif m.group("para") or m.group("item"):
            if not items and kind != "bare":
                break
            if not items:  # a bare 第M款: a paragraph of the article it stands in
                items.append({"article_no": None, "sub": None, "paragraph": None, "item": None})
            key, value = ("paragraph", m.group("p")) if m.group("para") else ("item", m.group("i"))
            if items[-1][key] is not None and not pending_range:  # 第一款、第二款: a second ref to the same article
                items.append(dict(items[-1], paragraph=None, item=None))
            items[-1][key] = cn_number(value)
            pending_range = False
        elif m.group("range"):
            pending_range = True
            continue
        else:  # separator: the list goes on only if an article, 款 or 项 follows
            continue
        end = m.end()
    if not items:
        return []
    cite = text[cite_start:end]
    kind_of = "relative" if kind == "bare" and items[0]["article_no"] is None else kind
    return [Reference(start=cite_start, end=end, text=cite, kind=kind_of, law=law,
                      article_no=it["article_no"], sub=it["sub"], paragraph=it["paragraph"], item=it["item"])
            for it in items]


def _relative(text: str, m: re.Match[str]) -> list[Reference]:
    word = m.group("rel")
    if word == "前条":
        return [Reference(m.start(), m.end(), word, "relative", None, None, back=1)]
    if word.endswith("款") and word != "本款":
        return [Reference(m.start(), m.end(), word, "relative", None, None, back=_COUNTS.get(word, 1))]
    refs = _list(text, m.end(), m.start(), "bare", None)  # 本条第一款
    return [Reference(r.start, r.end, r.text, "relative", None, None, paragraph=r.paragraph, item=r.item)
            for r in refs if r.article_no is None and r.paragraph is not None]


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
        """docs: doc_id -> {'title', 'meta'} (a doc table); source: where article chunks are read."""
        self.source = source
        self.titles = {d: str(row["title"]) for d, row in docs.items()}
        self.starts = {d: version_start(row["meta"]) for d, row in docs.items()}
        self.by_key: dict[str, list[str]] = {}
        # A code filed in parts ("中华人民共和国民法典 合同编", ...) numbers its articles across the parts: a
        # reference to 民法典第一千一百六十八条 looks in each part.
        self.books: dict[str, list[str]] = {}
        for doc_id, title in self.titles.items():
            self.by_key.setdefault(title_key(title), []).append(doc_id)
            head = title.split()
            if len(head) > 1 and _NAME_BEFORE.search(head[0]):
                self.books.setdefault(title_key(head[0]), []).append(doc_id)
        # Short titles written without 《》 must look like an instrument name (刑法, 消费者权益保护法), or
        # common words would match.
        self.short_keys = frozenset(k for k in [*self.by_key, *self.books] if _NAME_BEFORE.search(k))

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
                article_no, sub = chunk.article_no, _sub_of(chunk.article)
                if ref.back:
                    here = _paragraph_at(self.source.article_chunks(chunk.doc_id, chunk.article_no), chunk, ref.start)
                    paragraph = here - ref.back
                    if paragraph < 1:
                        return Resolved(ref, None, "no previous paragraph")
        assert article_no is not None
        for doc_id in candidates:
            parts = [c for c in self.source.article_chunks(doc_id, article_no) if _sub_of(c.article) == sub]
            if parts:
                break
        else:
            return Resolved(ref, None, "no such article")
        target = _part_with_paragraph(parts, paragraph)
        label = target.article or f"第{_cn(article_no)}条"
        cite = f"《{self.titles[doc_id]}》{label}" + (f"第{_cn(paragraph)}款" if paragraph else "")
        return Resolved(ref, Target(doc_id, article_no, target.chunk_id, cite))


def _sub_of(label: str | None) -> int | None:
    m = re.search(r"之([一二三四五六七八九十]+)$", label or "")
    return cn_number(m.group(1)) if m else None


def _paragraphs(text: str, continued: bool = False) -> list[int]:
    """Offsets where each paragraph (款) of an article text starts; item lines （一） belong to their 款,
    and so does the opening item of a continued part (an overlong article split at its items)."""
    starts = [] if continued and _ITEM_LINE.match(text) else [0]
    for m in re.finditer(r"\n+", text):
        if m.end() < len(text) and not _ITEM_LINE.match(text, m.end()):
            starts.append(m.end())
    return starts


def _paragraph_at(parts: list[Chunk], chunk: Chunk, offset: int) -> int:
    """The 1-based paragraph number of an offset in chunk, counting the paragraphs of earlier parts."""
    before = sum(len(_paragraphs(p.text, p.part > 0)) for p in parts if p.ordinal < chunk.ordinal)
    return before + sum(1 for s in _paragraphs(chunk.text, chunk.part > 0) if s <= offset)


def _part_with_paragraph(parts: list[Chunk], paragraph: int | None) -> Chunk:
    if paragraph is None or len(parts) == 1:
        return parts[0]
    seen = 0
    for part in parts:
        seen += len(_paragraphs(part.text, part.part > 0))
        if paragraph <= seen:
            return part
    return parts[-1]


def _cn(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 20:
        return "十" + (digits[n % 10] if n % 10 else "")
    return digits[n // 10] + "十" + (digits[n % 10] if n % 10 else "")
