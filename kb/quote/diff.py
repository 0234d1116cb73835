"""What a quote changed against its source, word by word (English) and character by character (Chinese),
and the sentence around a location."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from kb.text.fold import fold_chars, pieces_between

# A diff token: a number (with its separators), a Latin word (with inner apostrophes or hyphens), or any other
# single visible character, so each Chinese character is its own token. Whitespace is never a token: a quote
# that differs only in spacing has an all-equal diff.
_LETTERS = r"[^\W\d_\u3040-\u9fff\uf900-\ufaff]+"  # letters of alphabetic scripts, not CJK
_TOKEN = re.compile(rf"\d+(?:[.,:/]\d+)*|{_LETTERS}(?:['’-]{_LETTERS})*|\S")
# Where a sentence ends: Chinese 。！？； (with closing quotes), English .!? before a space, or a blank line.
_SENTENCE_END = re.compile(r"[。！？；][”’」』）)]*|[.!?][\"'”’)]*(?=\s)|\n\s*\n")
CONTEXT_CHARS = 300

OPS = ("equal", "changed", "added", "dropped")


@dataclass(frozen=True)
class DiffOp:
    """One step of a diff: 'equal', 'changed' (quote has other words), 'added' (only in the quote) or
    'dropped' (only in the source); quote and source hold the original text of each side."""

    op: str
    quote: str
    source: str

    def to_dict(self) -> dict[str, str]:
        """JSON shape: {"op", "quote", "source"}."""
        return {"op": self.op, "quote": self.quote, "source": self.source}


def tokens(text: str) -> list[tuple[int, int]]:
    """Token spans: numbers, words, and every other visible character (each Chinese character) alone."""
    return [m.span() for m in _TOKEN.finditer(text)]


def word_diff(quote: str, source: str) -> tuple[DiffOp, ...]:
    """Token-level diff of a quote against its source; tokens compare in folded form (width, case, script)."""
    qt, st = tokens(quote), tokens(source)
    fq, fs = fold_chars(quote), fold_chars(source)
    qk = [fq[a:b] for a, b in qt]
    sk = [fs[a:b] for a, b in st]
    out: list[DiffOp] = []
    for op in Levenshtein.opcodes(qk, sk):
        q_text = _join(quote, qt[op.src_start : op.src_end])
        s_text = _join(source, st[op.dest_start : op.dest_end])
        kind = {"equal": "equal", "replace": "changed", "delete": "added", "insert": "dropped"}[op.tag]
        out.append(DiffOp(kind, q_text, s_text))
    return tuple(out)


def _join(text: str, spans: list[tuple[int, int]]) -> str:
    """The original text from the first to the last token (spacing kept as it was)."""
    return text[spans[0][0] : spans[-1][1]] if spans else ""


def render(diff: tuple[DiffOp, ...]) -> str:
    """A one-line diff for terminals: [-dropped-] {+added+} [-source-]{+quote+} for changes."""
    out = []
    for d in diff:
        if d.op == "equal":
            out.append(d.source)
        elif d.op == "changed":
            out.append(f"[-{d.source}-]{{+{d.quote}+}}")
        elif d.op == "added":
            out.append(f"{{+{d.quote}+}}")
        else:
            out.append(f"[-{d.source}-]")
    text = ""
    for piece in out:
        # Pieces of English text need a space between them; Chinese and punctuation do not.
        if text and piece and _spaced(text[-1]) and _spaced(piece[0]) and piece[0] not in ".,;:!?)":
            text += " "
        text += piece
    return text


def _spaced(ch: str) -> bool:
    return ch < "\u2e80" and not ch.isspace()


def sentence_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence(s) holding text[start:end], at most CONTEXT_CHARS more on each side."""
    lo = max(0, start - CONTEXT_CHARS)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, lo, start)]
    s = ends[-1] if ends else lo
    m = _SENTENCE_END.search(text, max(end, s), min(len(text), end + CONTEXT_CHARS))
    e = m.end() if m else min(len(text), end + CONTEXT_CHARS)
    while s < start and text[s].isspace():
        s += 1
    while e > end and text[e - 1].isspace():
        e -= 1
    return s, e


def sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of a quote (stripped, non-empty)."""
    return pieces_between(text, [(m.end(), m.end()) for m in _SENTENCE_END.finditer(text)])
