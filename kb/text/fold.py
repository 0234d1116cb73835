"""Text folding for the quote check: one spelling for text that differs only in form, mapped back to the original.

Two texts fold to the same string when they differ only in whitespace and line breaks, full-width vs half-width
characters (Unicode NFKC), curly vs straight quotes, traditional vs simplified Chinese (OpenCC, character by
character), or letter case. Any other difference, one character or one digit, survives folding. Every folded
character keeps the offset of the original character it came from, so matches are reported in original offsets.
"""

from __future__ import annotations

import importlib.metadata
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np

# Bump when the folding rules change: a quote index built with other rules is refused, not misread.
FOLD_VERSION = "1"

# Quote marks of every style fold to the ASCII ones; 「」『』 are the quotation marks of traditional Chinese text.
_QUOTES = {**dict.fromkeys("“”„‟〝〞〟「」", '"'), **dict.fromkeys("‘’‚‛『』", "'")}
# Zero-width characters and the soft hyphen are invisible in the source: they never count as a difference.
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))
# An ellipsis marks an omission: … or …… (U+2026), ⋯, three or more dots or 。, optionally in brackets.
ELLIPSIS = re.compile(r"[\[［(（]?(?:…+|⋯+|\.{3,}|。{3,}|\.\s\.\s\.)[\]］)）]?")


@dataclass(frozen=True, eq=False)
class Folded:
    """Folded text and, for each of its characters, the offset of the original character it came from."""

    text: str
    origin: np.ndarray  # int32, len(text) entries, non-decreasing

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original [start, end) covered by folded [start, end) (end > start)."""
        return int(self.origin[start]), int(self.origin[end - 1]) + 1


def fold_signature() -> str:
    """What the folding depends on besides this module: an index folded otherwise must be rebuilt."""
    return f"{FOLD_VERSION}/opencc-{importlib.metadata.version('opencc')}/unicode-{unicodedata.unidata_version}"


@cache
def _t2s() -> dict[str, str]:
    """Traditional -> simplified for single characters; phrase rules are left out so folding stays per character
    (a slice of a document folds to the same string as that slice of the folded document)."""
    import opencc

    chars = [chr(c) for lo, hi in _CJK_RANGES for c in range(lo, hi + 1)]
    converted = opencc.OpenCC("t2s").convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # an entry spanning the separator: convert one by one instead
        converter = opencc.OpenCC("t2s")
        converted = [converter.convert(c) for c in chars]
    return {c: s for c, s in zip(chars, converted) if s != c and len(s) == 1}


@cache
def _tables() -> tuple[dict[int, str], dict[str, str], re.Pattern[str], re.Pattern[str]]:
    """(one-to-one translate table, multi-character foldings, scanner, scanner that also joins hyphens)."""
    codepoints = [
        c for lo, hi in ((0, 0xD7FF), (0xE000, 0xFFFF), *_CJK_RANGES[3:], (0x2F800, 0x2FA1F)) for c in range(lo, hi + 1)
    ]
    chars = [chr(c) for c in codepoints if chr(c) not in _INVISIBLE and not chr(c).isspace() and c != 10]
    # All characters in one pass, each on its own line (so nothing composes across characters): the
    # per-character loop this replaces cost 0.3 s at every start of the CLI.
    table = str.maketrans({**_QUOTES, **_t2s()})
    folded = unicodedata.normalize("NFKC", "\n".join(chars)).translate(table).lower().split("\n")
    if len(folded) != len(chars):
        raise RuntimeError("NFKC produced a line break")  # cannot happen with Unicode's current tables
    one: dict[int, str] = {}
    multi: dict[str, str] = {}
    for ch, out in zip(chars, folded):
        if out == ch:
            continue
        if len(out) == 1 and not out.isspace():
            one[ord(ch)] = out
        else:
            multi[ch] = "".join(out.split())
    cls = "".join(re.escape(c) for c in multi)
    base = rf"(?P<ws>[\s{_INVISIBLE}]+)" + (rf"|(?P<mx>[{cls}])" if cls else "")
    # A hyphen at a line end between letters, as pasted from a PDF: "eco-\nnomic" reads "economic".
    hyphen = r"(?P<hy>(?<=[^\W\d_])-[ \t]*\n\s*(?=[^\W\d_]))|"
    return one, multi, re.compile(base), re.compile(hyphen + base)


def fold(text: str, join_hyphens: bool = False) -> Folded:
    """Fold text for matching, keeping the original offset of every folded character.

    Whitespace is dropped, except one space between two digits so that "20 19" never equals "2019".
    With join_hyphens, a hyphen at a line end between letters is dropped too (used for pasted quotes:
    the PDF reader already joined broken words in the documents).
    """
    one, multi, scanner, hyphen_scanner = _tables()
    t1 = text.translate(one)
    pieces: list[str] = []
    starts: list[int] = []  # original offset of each piece's first character
    lengths: list[int] = []
    steps: list[int] = []  # 1: piece characters map to consecutive originals; 0: all to the same one

    def add(piece: str, start: int, length: int, step: int) -> None:
        pieces.append(piece)
        starts.append(start)
        lengths.append(length)
        steps.append(step)

    pos = 0
    for m in (hyphen_scanner if join_hyphens else scanner).finditer(t1):
        a, b = m.span()
        if a > pos:
            add(t1[pos:a], pos, a - pos, 1)
        kind = m.lastgroup
        if kind == "ws":
            if a > 0 and b < len(t1) and t1[a - 1] in "0123456789" and t1[b] in "0123456789":
                add(" ", a, 1, 1)
        elif kind == "mx":
            out = multi[t1[a]]
            if out:
                add(out, a, len(out), 0)
        pos = b
    if pos < len(t1):
        add(t1[pos:], pos, len(t1) - pos, 1)
    return Folded("".join(pieces), _origin(starts, lengths, steps))


def _origin(starts: list[int], lengths: list[int], steps: list[int]) -> np.ndarray:
    """Expand pieces into one original offset per folded character, without a Python loop per character."""
    if not starts:
        return np.zeros(0, dtype=np.int32)
    lens = np.asarray(lengths, dtype=np.int64)
    first = np.concatenate(([0], np.cumsum(lens)[:-1]))
    within = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(first, lens)
    return (np.repeat(np.asarray(starts, dtype=np.int64), lens) + within * np.repeat(np.asarray(steps), lens)).astype(
        np.int32
    )


def trim(text: str) -> str:
    """Text without leading and trailing whitespace or invisible characters (a pasted quote's edges)."""
    return text.strip().strip(_INVISIBLE).strip()


def fold_chars(text: str) -> str:
    """Fold character by character without dropping anything: same length as text (for word-level diffs)."""
    return text.translate(_tables()[0])


def split_ellipsis(quote: str) -> list[tuple[int, int]] | None:
    """Spans of the quote's parts around ellipses, or None when it has no ellipsis."""
    marks = list(ELLIPSIS.finditer(quote))
    if not marks:
        return None
    return pieces_between(quote, [m.span() for m in marks])


def pieces_between(text: str, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans of the non-blank pieces of text around cuts (start, end, in order), each without edge whitespace."""
    out, pos = [], 0
    for start, end in [*cuts, (len(text), len(text))]:
        piece = text[pos:start]
        if piece.strip():
            out.append((pos + len(piece) - len(piece.lstrip()), pos + len(piece.rstrip())))
        pos = end
    return out
