"""Passages and documents as inert HTML: every character of the source escaped, only our own tags added."""

from __future__ import annotations

import html

from kb.chunk import Chunk
from kb.quote.result import QuoteMatch

_PASSAGE_STYLE = "white-space:pre-wrap;font-size:0.95rem;line-height:1.6;"
# Latin fonts first: a CJK font listed first also draws Latin punctuation, and its full-width ’ and “ turned
# "Economist’s" into "Economist’ s". Chinese characters fall through to the CJK fonts.
FONTS = (
    '"Source Sans Pro","Source Sans 3","Helvetica Neue",Arial,"Liberation Sans","DejaVu Sans",'
    '"Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",sans-serif'
)


def passage_html(text: str, spans: tuple[tuple[int, int], ...], style: str = "") -> str:
    """Text as inert HTML: every character escaped, the given spans wrapped in <mark>."""
    out, pos = [], 0
    for start, end in spans:
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return f"<div class='kb-passage' style='{_PASSAGE_STYLE}{style}'>" + "".join(out) + "</div>"


def document_html(text: str, chunks: list[Chunk], focus: int) -> str:
    """The whole document as escaped text, the focused passage marked, scrolled into view on load.

    The only script is this one; the document's own text, markup included, is escaped and inert.
    """
    parts, pos = [], 0
    for n, chunk in enumerate(chunks):
        if chunk.char_start > pos:
            parts.append(html.escape(text[pos : chunk.char_start]))
        style = " style='background:#fff3c4;outline:2px solid #c9a227'" if n == focus else ""
        # English chunks overlap; each character is drawn once, in the first chunk that holds it.
        parts.append(f"<span id='c{n}'{style}>{html.escape(text[max(pos, chunk.char_start) : chunk.char_end])}</span>")
        pos = max(pos, chunk.char_end)
    parts.append(html.escape(text[pos:]))
    return (
        f"<div style='white-space:pre-wrap;font:15px/1.7 {FONTS}'>"
        + "".join(parts)
        + _SCROLL.replace("FOCUS", f"c{focus}")
    )


# Scrolls only the frame's own view (scrollIntoView would also move the page around it), again whenever the
# frame is resized: it has no size while its expander is closed, and gets one when opened.
_SCROLL = (
    "<script>function kbGo(){var e=document.getElementById('FOCUS');if(e&&window.innerHeight){"
    "document.scrollingElement.scrollTop=e.offsetTop-window.innerHeight/3;}}"
    "window.addEventListener('resize',kbGo);window.addEventListener('load',kbGo);kbGo();</script>"
)


def quote_match_html(match: QuoteMatch) -> str:
    """A quote's location as inert HTML: the context with the match marked, or for an altered quote the diff
    (source words the quote dropped or changed struck through, words it added or changed underlined)."""
    if match.kind == "altered" and match.diff:
        out = []
        for d in match.diff:
            if d.op == "equal":
                out.append(html.escape(d.source))
            if d.op in ("changed", "dropped"):
                out.append(f"<del style='background:#fdd'>{html.escape(d.source)}</del>")
            if d.op in ("changed", "added"):
                out.append(f"<ins style='background:#dfd'>{html.escape(d.quote)}</ins>")
        body = " ".join(out)
    else:
        ctx = match.context
        start = max(0, match.char_start - match.context_start)
        end = max(start, match.char_end - match.context_start)
        body = html.escape(ctx[:start]) + "<mark>" + html.escape(ctx[start:end]) + "</mark>" + html.escape(ctx[end:])
    return f"<div class='kb-passage' style='{_PASSAGE_STYLE}'>{body}</div>"
