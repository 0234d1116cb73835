"""Markdown source -> the text a reader sees, at ingest: no escapes, emphasis marks, link targets or fences.

The stored document text is the rendered text, so chunk offsets index it exactly like any other document
(README, "What offsets index"). Heading lines keep their leading `#` (and setext underlines stay) because the
chunker names sections from them and leaves the heading lines out of passages; everything inside a line is
rendered. Plain text without Markdown (the Chinese statutes) comes back unchanged.
"""

from __future__ import annotations

import re

# Backslash escapes of CommonMark: any ASCII punctuation character.
_ESCAPE = re.compile(r"\\([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
# Escaped characters are parked on private-use code points while emphasis is removed, so `\*` stays a star.
_PARK = 0xF0000
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"\n]*\")?\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"\n]*\")?\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_CODE = re.compile(r"(`+)(?=\S)(.+?)(?<=\S)\1")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_RULE = re.compile(r"^[ \t]{0,3}(?:(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?")
# What makes a text Markdown rather than plain text that happens to hold a star.
_MARKERS = re.compile(r"\\[!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~]|\*\*\S|__\S|\]\([^)\s]+\)|^#{1,6}[ \t]\S|^```", re.M)


def looks_like_markdown(text: str) -> bool:
    """Escapes, strong emphasis, links, headings or fences: a few of them, or one **bold** pair, mean Markdown."""
    head = text[:200_000]
    return len(_MARKERS.findall(head)) >= 3 or _BOLD.search(head) is not None


def render_markdown(text: str) -> str:
    """The text with inline Markdown rendered (see the module docstring); line structure is kept."""
    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            out.append(line)
            continue
        if _RULE.match(line):
            out.append("")
            continue
        out.append(render_line(_QUOTE.sub("", line)))
    return "\n".join(out)


def render_line(line: str) -> str:
    """One line's inline Markdown rendered: escapes, emphasis, code spans, images and links."""
    codes: list[str] = []

    def park_code(m: re.Match[str]) -> str:
        codes.append(m.group(2))
        return chr(_PARK + 0x8000 + len(codes) - 1)

    line = _CODE.sub(park_code, line)  # code spans are literal: nothing inside is rendered
    line = _ESCAPE.sub(lambda m: chr(_PARK + ord(m.group(1))), line)
    line = _IMAGE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _AUTOLINK.sub(r"\1", line)
    for _ in range(3):  # nested emphasis (***x***, **_x_**)
        line = _STRIKE.sub(r"\1", _UNDERSCORE.sub(r"\1", _STAR.sub(r"\1", _BOLD.sub(r"\2", line))))
    line = re.sub("[\U000f0000-\U000f007f]", lambda m: chr(ord(m.group(0)) - _PARK), line)
    return re.sub("[\U000f8000-\U000fffff]", lambda m: codes[ord(m.group(0)) - _PARK - 0x8000], line)
