"""Passages and documents as inert HTML: every character of the source escaped, only our own tags added."""
from __future__ import annotations

import html

from kb.chunk import Chunk


def passage_html(text: str, spans: tuple[tuple[int, int], ...], style: str = "") -> str:
    """Text as inert HTML: every character escaped, the given spans wrapped in <mark>."""
    out, pos = [], 0
    for start, end in spans:
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return (f"<div class='kb-passage' style='white-space:pre-wrap;font-size:0.95rem;line-height:1.6;{style}'>"
            + "".join(out) + "</div>")


def document_html(text: str, chunks: list[Chunk], focus: int) -> str:
    """The whole document as escaped text, the focused passage marked, scrolled into view on load.

    The only script is this one; the document's own text, markup included, is escaped and inert.
    """
    parts, pos = [], 0
    for n, chunk in enumerate(chunks):
        if chunk.char_start > pos:
            parts.append(html.escape(text[pos:chunk.char_start]))
        style = " style='background:#fff3c4;outline:2px solid #c9a227'" if n == focus else ""
        # English chunks overlap; each character is drawn once, in the first chunk that holds it.
        parts.append(f"<span id='c{n}'{style}>{html.escape(text[max(pos, chunk.char_start):chunk.char_end])}</span>")
        pos = max(pos, chunk.char_end)
    parts.append(html.escape(text[pos:]))
    return ("<div style='white-space:pre-wrap;font:15px/1.7 \"Noto Sans CJK SC\",sans-serif'>" + "".join(parts)
            + f"</div><script>document.getElementById('c{focus}').scrollIntoView({{block:'center'}});</script>")
