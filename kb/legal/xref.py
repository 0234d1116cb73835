"""Cross-references in Chinese legal texts: find "《X法》第N条", "本法第N条第M款", "前款" (kb.catalog.resolve
resolves them to chunks).

A reference names a scope and a list of articles: 《中华人民共和国邮政法》第五十二条、第五十三条 is two
references; 第四十一条至第四十三条 is three; 第十六条第一款第四项 is article 16, paragraph (款) 1, item 4.
Scopes are a title in 《》, 本法 / 本条例 / 本规定 / 本办法 (this document), the short title of an indexed
document written without 《》 (消费者权益保护法第二十五条, common in judicial interpretations), or nothing
(a bare 第N条 inside an article means this document). 前款 / 前两款 / 前条 / 本条第M款 / a bare 第M款 are
relative to the article they stand in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kb.legal.structure import cn_number, find_articles

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
# A bare article reference preceded by a name like 食品安全法 cites that law, not this document (also used to
# tell which indexed titles may be written without 《》).
NAME_END = re.compile(r"[\u4e00-\u9fa5](?:法|法典|条例|规定|办法|细则|解释|决定)$")
_SELF_BEFORE = re.compile(r"本(?:法|条例|规定|办法|细则|解释|决定)$")
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
            before = text[max(0, m.start() - 30) : m.start()]
            short = _known_suffix(before, keys)
            if short:
                refs = _list(text, m.start(), m.start() - len(short), "short", short)
            elif NAME_END.search(before) and not _SELF_BEFORE.search(before):
                # Another instrument's article (食品安全法第一百三十一条) that no indexed title matches.
                refs = _list(text, m.start(), m.start(), "short", _guess_name(before))
                refs = [
                    Reference(
                        m.start() - len(r.law or ""),
                        r.end,
                        (r.law or "") + r.text,
                        r.kind,
                        r.law,
                        r.article_no,
                        r.sub,
                        r.paragraph,
                        r.item,
                    )
                    for r in refs
                ]
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
                items += [
                    {"article_no": n, "sub": None, "paragraph": None, "item": None} for n in range(first + 1, number)
                ]
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
    return [
        Reference(
            start=cite_start,
            end=end,
            text=cite,
            kind=kind_of,
            law=law,
            article_no=it["article_no"],
            sub=it["sub"],
            paragraph=it["paragraph"],
            item=it["item"],
        )
        for it in items
    ]


def _relative(text: str, m: re.Match[str]) -> list[Reference]:
    word = m.group("rel")
    if word == "前条":
        return [Reference(m.start(), m.end(), word, "relative", None, None, back=1)]
    if word.endswith("款") and word != "本款":
        return [Reference(m.start(), m.end(), word, "relative", None, None, back=_COUNTS.get(word, 1))]
    refs = _list(text, m.end(), m.start(), "bare", None)  # 本条第一款
    return [
        Reference(r.start, r.end, r.text, "relative", None, None, paragraph=r.paragraph, item=r.item)
        for r in refs
        if r.article_no is None and r.paragraph is not None
    ]
