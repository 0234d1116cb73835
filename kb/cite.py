"""Chunk -> citation string and highlight spans: what a reader needs to find the passage again."""

from __future__ import annotations

from functools import lru_cache

from kb.chunk import Chunk
from kb.ingest.pdfpages import printed_page
from kb.legal.pinpoint import Place, book_title, item_starts, paragraph_starts, sub_of
from kb.text.lexical import token_spans, tokenize

# The 款 (or 项) holding at least this share of the highlighted characters is where the question's words sit.
PINPOINT_SHARE = 0.8
# Top passages recur across questions (and a served index answers many): jieba-tokenising a passage for its
# highlights cost more than ranking it, so each passage's tokens are kept (bounded: ~2 MB at 4,096 passages).
_PASSAGE_CACHE = 4096


def citation(chunk: Chunk, lang: str | None = None, place: Place | None = None, page_labels: str = "") -> str:
    """A human citation: 《电子商务法》第三十八条, 《电子商务法》第三十八条第二款 (with a pinpoint place),
    "Title", section 'X', or "Title", p. 37 (printed p. 126).

    Chinese titles take 《》 and the article number; English ones the section and the page (range), and the
    number printed on the page when it differs (page_labels: the document's extra["page_labels"]).
    """
    lang = lang or chunk.lang
    printed = printed_page(page_labels, chunk.page) if page_labels and chunk.page else None
    printed = printed if printed and printed != str(chunk.page) else None
    if lang == "zh" or chunk.article:
        out = book_title(chunk.title)
        if chunk.article and place is not None:
            out += place.label()
        elif chunk.article:
            out += chunk.article
            if chunk.parts > 1:
                out += f"（第{chunk.part + 1}部分，共{chunk.parts}部分）"
        elif chunk.section:
            out += chunk.section.split(" / ")[-1]
        if chunk.page:
            out += f"，第{_pages(chunk, '–')}页" + (f"（印刷页码 {printed}）" if printed else "")
        return out
    out = chunk.title
    if chunk.section:
        out += f", section '{chunk.section.split(' / ')[-1]}'"
    if chunk.page:
        out += f", {'pp.' if chunk.page_end and chunk.page_end != chunk.page else 'p.'} {_pages(chunk, '–')}"
        out += f" (printed p. {printed})" if printed else ""
    return out


def pinpoint(chunk: Chunk, parts: list[Chunk], highlights: tuple[tuple[int, int], ...] = ()) -> Place | None:
    """The 款 (and 项) a passage of an article cites: the one 款 (项) where the question's highlighted words
    sit, else for a part of a split article the 款 it holds (and the 项 it holds of a 款 split across parts);
    None when nothing narrower than the article can be named.

    Args:
        parts: every chunk of the article in reading order (chunk among them; [chunk] for an unsplit article).
    """
    if chunk.article_no is None or not chunk.article:
        return None
    sub = sub_of(chunk.article)
    bounds_of: dict[int, list[tuple[int, int, int]]] = {}
    seen = 0
    for p in parts:
        bounds_of[p.ordinal] = _paragraph_bounds(p, seen)
        seen += len(paragraph_starts(p.text, p.part > 0))
    total = seen or 1
    bounds = bounds_of.get(chunk.ordinal) or _paragraph_bounds(chunk, 0)
    where = _holding(highlights, [(s, e) for s, e, _ in bounds])
    if where is not None:
        s, e, number = bounds[where]
        items = [(a, n) for a, n in item_starts(chunk.text) if s <= a < e]
        item_bounds = [(a, items[i + 1][0] if i + 1 < len(items) else e) for i, (a, _) in enumerate(items)]
        at = _holding(highlights, item_bounds) if items else None
        item = (items[at][1],) if at is not None else ()
        if total > 1 or item:
            return Place(chunk.title, chunk.article_no, sub, (number,) if total > 1 else (), item)
        return None
    if chunk.parts < 2:
        return None
    numbers = [n for _, _, n in bounds if n >= 1]
    shared = len(numbers) == 1 and any(
        numbers[0] in (n for _, _, n in b) for o, b in bounds_of.items() if o != chunk.ordinal
    )
    if shared:  # one 款 split across parts: name the 项 this part holds, if it holds items
        held = tuple(n for _, n in item_starts(chunk.text))
        if total > 1 or held:
            return Place(chunk.title, chunk.article_no, sub, tuple(numbers) if total > 1 else (), held)
        return None
    return Place(chunk.title, chunk.article_no, sub, tuple(numbers)) if total > 1 else None


def _paragraph_bounds(chunk: Chunk, before: int) -> list[tuple[int, int, int]]:
    """(start, end, 款 number) of each 款 in a chunk, counting on from `before` 款 in earlier parts; a continued
    part opening inside the previous part's last 款 starts with that 款."""
    starts = paragraph_starts(chunk.text, chunk.part > 0)
    spans = ([(0, before)] if not starts or starts[0] > 0 else []) + [(s, before + 1 + i) for i, s in enumerate(starts)]
    return [(s, spans[i + 1][0] if i + 1 < len(spans) else len(chunk.text), n) for i, (s, n) in enumerate(spans)]


def _holding(highlights: tuple[tuple[int, int], ...], ranges: list[tuple[int, int]]) -> int | None:
    """The range holding at least PINPOINT_SHARE of the highlighted characters, if one does."""
    marked = sum(e - s for s, e in highlights)
    if not marked:
        return None
    for i, (lo, hi) in enumerate(ranges):
        inside = sum(max(0, min(e, hi) - max(s, lo)) for s, e in highlights)
        if inside >= PINPOINT_SHARE * marked:
            return i
    return None


def _pages(chunk: Chunk, dash: str) -> str:
    if chunk.page_end and chunk.page_end != chunk.page:
        return f"{chunk.page}{dash}{chunk.page_end}"
    return str(chunk.page)


def highlight_spans(text: str, query: str) -> tuple[tuple[int, int], ...]:
    """Character spans of text whose tokens occur in the query, merged where they touch."""
    wanted = _query_tokens(query)
    if not wanted:
        return ()
    spans: list[list[int]] = []
    for start, end, token in _passage_tokens(text):
        if token in wanted:
            # Adjacent matches separated only by spaces or hyphens read as one phrase: "live-stream".
            if spans and (start <= spans[-1][1] or not text[spans[-1][1] : start].strip(" -")):
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
    return tuple((s, e) for s, e in spans)


@lru_cache(maxsize=256)
def _query_tokens(query: str) -> frozenset[str]:
    return frozenset(tokenize(query))


@lru_cache(maxsize=_PASSAGE_CACHE)
def _passage_tokens(text: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(token_spans(text))


def mark(text: str, spans: tuple[tuple[int, int], ...], before: str = "**", after: str = "**") -> str:
    """Text with each span wrapped in markers (for terminals and Markdown exports)."""
    out, pos = [], 0
    for s, e in spans:
        out.append(text[pos:s])
        out.append(before + text[s:e] + after)
        pos = e
    out.append(text[pos:])
    return "".join(out)


def snippet(
    text: str, spans: tuple[tuple[int, int], ...] | list[tuple[int, int]], width: int = 300, lead: int = 80
) -> str:
    """About `width` characters of a passage for one line of output, matches marked, whitespace collapsed. When the
    first match lies beyond the window, the window starts `lead` characters before it (at a word or clause
    boundary) so the reader sees why the passage was found; cuts are shown with "…"."""
    start = 0
    if spans and spans[0][1] > width - lead // 2:
        start = max(spans[0][0] - lead, 0)
        cut = max(text.rfind(" ", 0, start), text.rfind("，", 0, start), text.rfind("。", 0, start))
        start = cut + 1 if cut >= 0 and start - cut < 20 else start
    end = min(len(text), start + width)
    inside = [(max(s, start) - start, min(e, end) - start) for s, e in spans if s < end and e > start]
    body = " ".join(mark(text[start:end], tuple(inside)).split())
    return ("…" if start else "") + body + ("…" if end < len(text) else "")
