"""The research views' HTML: two versions of an article side by side, changes marked, every character escaped."""

from __future__ import annotations

import html

from kb.research.compare import Pair

_COLUMN = "white-space:pre-wrap;font-size:0.95rem;line-height:1.6;"
_DEL = "<del style='background:#fdd;color:#900'>{}</del>"
_INS = "<ins style='background:#dfd;color:#060;text-decoration:underline'>{}</ins>"
STATUS_COLOUR = {
    "unchanged": "#666",
    "changed": "#b36b00",
    "moved": "#5a3fc0",
    "added": "#1a7f37",
    "deleted": "#c62828",
}


def diff_columns_html(pair: Pair) -> tuple[str, str]:
    """(old, new) as inert HTML: in the old column the text the new version dropped is struck through, in the new
    column the text it added is underlined; an added or deleted article is marked whole."""
    if pair.old is None or pair.new is None:
        article = pair.new or pair.old
        assert article is not None
        marked = (_INS if pair.old is None else _DEL).format(html.escape(article.text))
        return ("", _div(marked)) if pair.old is None else (_div(marked), "")
    if not pair.diff:
        return _div(html.escape(pair.old.text)), _div(html.escape(pair.new.text))
    old, new = [], []
    for d in pair.diff:
        if d.op == "equal":
            old.append(html.escape(d.source))
            new.append(html.escape(d.quote))
        if d.op in ("changed", "dropped"):
            old.append(_DEL.format(html.escape(d.source)))
        if d.op in ("changed", "added"):
            new.append(_INS.format(html.escape(d.quote)))
    return _div("".join(old)), _div("".join(new))


def _div(body: str) -> str:
    return f"<div class='kb-passage' style='{_COLUMN}'>{body}</div>"


def status_html(pair: Pair, label: str) -> str:
    """A coloured status word (label: the interface's name for it) with the article numbers."""
    old = html.escape(pair.old.label) if pair.old else "—"
    new = html.escape(pair.new.label) if pair.new else "—"
    colour = STATUS_COLOUR[pair.status]
    return (
        f"<div><b style='color:{colour}'>{html.escape(label)}</b> &nbsp; {old} → {new}"
        + (f" &nbsp; <span style='color:#888'>{pair.similarity:.2f}</span>" if pair.old and pair.new else "")
        + "</div>"
    )
