"""Chunk -> citation string and highlight spans: what a reader needs to find the passage again."""

from __future__ import annotations

from kb.chunk import Chunk
from kb.ingest.pdfpages import printed_page
from kb.text.lexical import token_spans, tokenize


def citation(chunk: Chunk, lang: str | None = None, page_labels: str = "") -> str:
    """A human citation: 《电子商务法》第三十八条, "Title", section 'X', or "Title", p. 37.

    Chinese titles take 《》 and the article number; English ones the section and the page (range), and the
    number printed on the page when it differs (page_labels: the document's extra["page_labels"]).
    """
    lang = lang or chunk.lang
    printed = printed_page(page_labels, chunk.page) if page_labels and chunk.page else None
    printed = printed if printed and printed != str(chunk.page) else None
    if lang == "zh" or chunk.article:
        out = f"《{chunk.title}》"
        if chunk.article:
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


def _pages(chunk: Chunk, dash: str) -> str:
    if chunk.page_end and chunk.page_end != chunk.page:
        return f"{chunk.page}{dash}{chunk.page_end}"
    return str(chunk.page)


def highlight_spans(text: str, query: str) -> tuple[tuple[int, int], ...]:
    """Character spans of text whose tokens occur in the query, merged where they touch."""
    wanted = set(tokenize(query))
    if not wanted:
        return ()
    spans: list[list[int]] = []
    for start, end, token in token_spans(text):
        if token in wanted:
            # Adjacent matches separated only by spaces or hyphens read as one phrase: "live-stream".
            if spans and (start <= spans[-1][1] or not text[spans[-1][1] : start].strip(" -")):
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
    return tuple((s, e) for s, e in spans)


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
