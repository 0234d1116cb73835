"""Chunk -> citation string and highlight spans: what a reader needs to find the passage again."""

from __future__ import annotations

from functools import lru_cache

from kb.chunk import Chunk
from kb.text.lexical import token_spans, tokenize

# Top passages recur across questions (and a served index answers many): jieba-tokenising a passage for its
# highlights cost more than ranking it, so each passage's tokens are kept (bounded: ~2 MB at 4,096 passages).
_PASSAGE_CACHE = 4096


def citation(chunk: Chunk, lang: str | None = None) -> str:
    """A human citation: 《电子商务法》第三十八条, "Title", section 'X', or "Title", p. 37.

    Chinese titles take 《》 and the article number; English ones the section and the page (range).
    """
    lang = lang or chunk.lang
    if lang == "zh" or chunk.article:
        out = f"《{chunk.title}》"
        if chunk.article:
            out += chunk.article
            if chunk.parts > 1:
                out += f"（第{chunk.part + 1}部分，共{chunk.parts}部分）"
        elif chunk.section:
            out += chunk.section.split(" / ")[-1]
        if chunk.page:
            out += f"，第{_pages(chunk, '–')}页"
        return out
    out = chunk.title
    if chunk.section:
        out += f", section '{chunk.section.split(' / ')[-1]}'"
    if chunk.page:
        out += f", {'pp.' if chunk.page_end and chunk.page_end != chunk.page else 'p.'} {_pages(chunk, '–')}"
    return out


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
