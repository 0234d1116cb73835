"""款 (paragraphs) and 项 (items) inside an article, and pinpoint citations: 《电子商务法》第三十八条第二款.

A 款 is a line of an article; item lines （一） belong to the 款 they follow. A pinpoint citation names the
article, then the 款 and 项 where known; `parse_citation` reads one back (kb.legal.xref does the parsing), so
a citation string and the place it names travel together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kb.legal.structure import cn_number
from kb.legal.xref import find_references

ITEM_LINE = re.compile(r"[ \t\u3000]*[（(]([一二三四五六七八九十]+)[）)]")
_DIGITS = "零一二三四五六七八九"


def paragraph_starts(text: str, continued: bool = False) -> list[int]:
    """Offsets where each 款 of an article text starts; item lines （一） belong to their 款, and so does the
    opening item of a continued part (an overlong article split at its items)."""
    starts = [] if continued and ITEM_LINE.match(text) else [0]
    for m in re.finditer(r"\n+", text):
        if m.end() < len(text) and not ITEM_LINE.match(text, m.end()):
            starts.append(m.end())
    return starts


def item_starts(text: str) -> list[tuple[int, int]]:
    """(offset, item number) of every item line （一） in a text."""
    out = []
    for m in re.finditer(r"(?:^|\n)([ \t\u3000]*[（(]([一二三四五六七八九十]+)[）)])", text):
        number = cn_number(m.group(2))
        if number:
            out.append((m.start(1), number))
    return out


def sub_of(article: str | None) -> int | None:
    """The 之N of an article label: 第十条之一 -> 1; None for a plain article."""
    return cn_number(article.split("之")[1]) if article and "之" in article else None


def cn(n: int) -> str:
    """A Chinese numeral for 1..9999 as laws write it: 三十八, 一百零五, 一千一百六十五."""
    if n < 10:
        return _DIGITS[n]
    out = ""
    zero = False
    for unit, name in ((1000, "千"), (100, "百"), (10, "十")):
        d, n = divmod(n, unit)
        if d:
            if zero:
                out += "零"
            out += ("" if unit == 10 and d == 1 and not out else _DIGITS[d]) + name
            zero = False
        elif out:
            zero = True
    if n:
        out += ("零" if zero else "") + _DIGITS[n]
    return out


def book_title(title: str) -> str:
    """A title in 书名号, with the 《》 inside it as 〈〉 (GB/T 15834): 《最高人民法院关于适用〈中华人民共和国民法典〉
    时间效力的若干规定》, which reads back as one title."""
    return "《" + title.replace("《", "〈").replace("》", "〉") + "》"


def _run(numbers: tuple[int, ...], unit: str) -> str:
    """第一款、第二款 / 第一项至第十一项 (three or more consecutive numbers as a range)."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"第{cn(numbers[i])}{unit}至第{cn(numbers[j])}{unit}")
        else:
            out += [f"第{cn(n)}{unit}" for n in numbers[i : j + 1]]
        i = j + 1
    return "、".join(out)


@dataclass(frozen=True)
class Place:
    """A cited place: the law as written, its article (第十条之一: sub 1), and the 款 and 项 named."""

    law: str | None
    article_no: int
    sub: int | None = None
    paragraphs: tuple[int, ...] = ()
    items: tuple[int, ...] = ()

    def label(self) -> str:
        """第三十八条第二款 (第三十八条第二款、第三款; 第十条之一第一款第三项; 第三百三十条第一项至第十一项)."""
        out = f"第{cn(self.article_no)}条" + (f"之{cn(self.sub)}" if self.sub else "")
        return out + _run(self.paragraphs, "款") + _run(self.items, "项")

    def citation(self) -> str:
        """《law》第X条第M款第K项."""
        return (book_title(self.law) if self.law else "") + self.label()

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "law": self.law,
            "article_no": self.article_no,
            "sub": self.sub,
            "paragraphs": list(self.paragraphs),
            "items": list(self.items),
        }


_PIECE = re.compile(r"(至|到)?第[（(]?([零〇一二三四五六七八九十百千两0-9]+)[）)]?(款|项)")


def parse_citation(text: str) -> Place | None:
    """The place a citation names (the first article of it): 《电子商务法》第三十八条第二款 -> article 38, 款 2;
    None when the text names no article."""
    refs = [r for r in find_references(text) if r.article_no is not None]
    if not refs:
        return None
    first = refs[0]
    assert first.article_no is not None
    # The 款 and 项 after the article, ranges (第一项至第十一项) spelled out; the list ends where the reference does.
    tail = text[first.start : first.end]
    tail = tail[tail.index("条", tail.rfind("》") + 1) + 1 :] if "条" in tail else ""
    numbers: dict[str, list[int]] = {"款": [], "项": []}
    for m in _PIECE.finditer(tail):
        n = cn_number(m.group(2))
        bucket = numbers[m.group(3)]
        if n is None:
            continue
        if m.group(1) and bucket and n > bucket[-1]:
            bucket.extend(range(bucket[-1] + 1, n + 1))
        else:
            bucket.append(n)
    law = first.law.replace("〈", "《").replace("〉", "》") if first.law else None
    return Place(law, first.article_no, first.sub, tuple(numbers["款"]), tuple(numbers["项"]))
