"""Chinese legal structure: 编 / 章 / 节 headings, 第X条 articles, and numbered policy headings."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = "零〇一二三四五六七八九十百千万两0-9０-９"
_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}

# A heading line: optional Markdown '#', then 第N编 / 分编 / 章 / 节 and its name.
_HEADING = re.compile(rf"^[ \t\u3000]*(?:#+[ \t]*)?(第[{_NUM}]+(分编|编|章|节))(?:[ \t\u3000]+.*)?$", re.M)
_HEADING_LEVEL = {"编": 0, "分编": 1, "章": 2, "节": 3}
# An article: 第N条 (or 第N条之一) at a line start, or after a sentence end in a badly wrapped text.
# "依照本法第六十一条" has neither a line start nor a sentence end before it, so it never matches.
_ARTICLE = re.compile(
    rf"(?:^|(?<=[。；！？\n]))[ \t\u3000]*(?:#+[ \t]*)?(第([{_NUM}]+)条(?:之([一二三四五六七八九十]+))?)([ \t\u3000]*)",
    re.M,
)
# Numbered headings of 意见 / 方案 / 规划: 一、 （一） 1. 1、 (1)
_POLICY_HEADING = re.compile(
    r"^[ \t\u3000]*(?:#+[ \t]*)?([一二三四五六七八九十百]+、|[（(][一二三四五六七八九十百]+[）)]|\d{1,2}[.、．](?!\d))",
    re.M,
)


def cn_number(text: str) -> int | None:
    """Parse a Chinese or Arabic numeral ('三十八', '一百零五', '38') to int."""
    text = text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    if text.isdigit():
        return int(text)
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        elif ch in _UNITS:
            unit = _UNITS[ch]
            if unit == 10000:
                total += (section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
        else:
            return None
    return total + section + (digit or 0)


@dataclass(frozen=True)
class Segment:
    """A span of the document: an article, a preamble, or a policy section, with its heading path."""

    start: int
    end: int
    headings: tuple[str, ...]
    article: str | None = None
    article_no: int | None = None


def _heading_spans(text: str) -> list[tuple[int, int, int, str]]:
    """(line start, line end, level, heading text) for every 编/章/节 line."""
    out = []
    for m in _HEADING.finditer(text):
        label = re.sub(r"[ \t\u3000]+", " ", m.group(0).strip().lstrip("#").strip())
        out.append((m.start(), m.end(), _HEADING_LEVEL[m.group(2)], label))
    return out


def find_articles(text: str) -> list[tuple[int, str, int]]:
    """(start offset, label, number) of every real article start, references excluded.

    An article is accepted when its number is followed by a space (the usual layout), or when it
    continues the sequence (previous + 1) with the text running straight on; so a line that happens
    to begin with a cross-reference such as "第六十一条规定的..." does not split an article.
    """
    found: list[tuple[int, str, int]] = []
    prev = 0
    for m in _ARTICLE.finditer(text):
        number = cn_number(m.group(2))
        if number is None:
            continue
        spaced = bool(m.group(4)) or m.end() >= len(text) or text[m.end()] == "\n"
        at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
        sub = m.group(3)
        follows = number == prev + 1 or (sub is not None and number == prev) or (number == 1 and prev == 0)
        if (at_line_start and (spaced or follows)) or (not at_line_start and spaced and follows):
            if found and number < prev and number != 1:
                continue
            start = m.start(1)
            found.append((start, m.group(1), number))
            prev = number
    return found


def legal_segments(text: str) -> list[Segment]:
    """Split a statute into preamble + one segment per article, each with its 编/章/节 path."""
    articles = find_articles(text)
    headings = _heading_spans(text)
    boundaries = sorted(
        [(a[0], "a", i) for i, a in enumerate(articles)] + [(h[0], "h", i) for i, h in enumerate(headings)]
    )
    segments: list[Segment] = []
    first = boundaries[0][0] if boundaries else len(text)
    if text[:first].strip():
        segments.append(Segment(0, first, ("序言",) if articles else ()))
    path: list[str | None] = [None, None, None, None]
    for j, (start, kind, i) in enumerate(boundaries):
        end = boundaries[j + 1][0] if j + 1 < len(boundaries) else len(text)
        if kind == "h":
            _, h_end, level, label = headings[i]
            path[level] = label
            for deeper in range(level + 1, 4):
                path[deeper] = None
            # Text under a heading but before its first article (rare) is its own segment.
            if text[h_end:end].strip():
                segments.append(Segment(h_end, end, tuple(p for p in path if p)))
            continue
        _, label, number = articles[i]
        segments.append(Segment(start, end, tuple(p for p in path if p), label, number))
    return segments


def policy_segments(text: str) -> list[Segment]:
    """Split a document without articles at its numbered headings (一、 / （一） / 1.)."""
    marks = [(m.start(), m.group(1)) for m in _POLICY_HEADING.finditer(text)]
    if not marks:
        return [Segment(0, len(text), ())]
    segments: list[Segment] = []
    if text[: marks[0][0]].strip():
        segments.append(Segment(0, marks[0][0], ()))
    top: str | None = None
    for j, (start, mark) in enumerate(marks):
        end = marks[j + 1][0] if j + 1 < len(marks) else len(text)
        line_end = text.find("\n", start)
        line = text[start : line_end if line_end != -1 else end].strip().lstrip("#").strip()
        # Policy headings run up to their first full stop: "（一）培育农村电商人才。开展……".
        heading = re.split(r"[。：:；]", line, maxsplit=1)[0][:40]
        if mark.endswith("、") and not mark[0].isdigit():
            top = heading
            path: tuple[str, ...] = (heading,)
        else:
            path = (top, heading) if top else (heading,)
        segments.append(Segment(start, end, path))
    return segments
