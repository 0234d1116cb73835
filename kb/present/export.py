"""Hits -> text a reader takes away: plain citations, Markdown with quoted passages, CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
import re

from kb.search.searcher import Hit

CSV_COLUMNS = (
    "rank",
    "citation",
    "passage",
    "source_path",
    "page",
    "page_end",
    "doc_id",
    "title",
    "article",
    "section",
    "char_start",
    "char_end",
    "level",
    "issuer",
    "published",
    "score",
)


def citations_text(hits: list[Hit]) -> str:
    """One numbered citation per line, ready to paste."""
    return "\n".join(f"{h.rank}. {h.citation} ({h.path})" for h in hits)


def to_markdown(hits: list[Hit], query: str) -> str:
    """A Markdown report: the question, then each citation with its passage as a block quote.

    Passages are quoted line by line, and characters Markdown would read as syntax at a line start
    (#, >, -, +, digits with a dot) are escaped, so a passage never turns into a heading or list.
    """
    lines = [f"# {md_escape(query)}", ""]
    for h in hits:
        lines.append(f"## {h.rank}. {md_escape(h.citation)}")
        lines.append("")
        lines.extend("> " + md_escape(line) if line.strip() else ">" for line in h.chunk.text.splitlines())
        lines.append("")
        c = h.chunk
        page = ""
        if c.page:
            page = f", pp. {c.page}–{c.page_end}" if c.page_end and c.page_end != c.page else f", p. {c.page}"
        lines.append(f"Source: `{h.path}`{page}, characters {h.chunk.char_start}–{h.chunk.char_end}")
        lines.append("")
    return "\n".join(lines)


def to_csv(hits: list[Hit]) -> bytes:
    """CSV in UTF-8 with a byte-order mark, so spreadsheet programs show Chinese text correctly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for h in hits:
        c, m = h.chunk, h.meta
        writer.writerow(
            [
                h.rank,
                *map(_cell, (h.citation, c.text, h.path)),
                c.page or "",
                c.page_end or "",
                *map(_cell, (c.doc_id, c.title, c.article or "", c.section or "")),
                c.char_start,
                c.char_end,
                *map(_cell, (m.level or "", m.issuer or "", m.published or "")),
                f"{h.score:.6f}",
            ]
        )
    return out.getvalue().encode("utf-8-sig")


# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK, =cmd|...).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading ' keeps a formula-like start from being evaluated."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def md_escape(text: str) -> str:
    """Escape Markdown and HTML syntax so text shows literally, yet stays readable as plain text.

    Inline syntax (emphasis, code, links, tags, tables, entities) is escaped everywhere; block syntax
    (headings, quotes, lists, rules) only where it would act: at the start of the text.
    """
    text = _INLINE.sub(r"\\\g<0>", text)
    return _BLOCK.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def md_text(text: str) -> str:
    """md_escape, and no autolinks: for text from a document or a link shown in the app, which must never
    make the browser fetch or link anything."""
    return _AUTOLINK.sub(_JOINER, md_escape(text))


_INLINE = re.compile(r"[\\`*_{}\[\]<>|~&$]")
# GitHub-flavoured Markdown (Streamlit's) links bare URLs, www. names and e-mail addresses even when escaped; an
# invisible word joiner inside '://', after 'www' and before '@' keeps them text.
_AUTOLINK = re.compile(r"(?<=[A-Za-z0-9])(?=://)|(?<=[wW][wW][wW])(?=\.)|(?=@)")
_JOINER = "\u2060"
_BLOCK = re.compile(r"^(\s*\d*)((?<=\d)[.)]|(?<!\d)[#>+=-])")
