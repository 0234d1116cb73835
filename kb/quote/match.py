"""Locate a folded quote in folded documents: exact occurrences, ellipsis chains, and near matches.

Everything here works in folded offsets on candidate documents the quote index returns; kb/quote.py maps the
results back to original offsets and decides the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from kb.index.quotes import QuoteIndex

# Seeds are short substrings of the quote looked up in the trigram index: 5 folded characters of Chinese
# (two or three words) or 9 of English (about two words; folded English has no spaces). Shorter seeds hit
# too many documents, longer ones miss whenever a changed word falls inside them.
SEED_CJK = 5
SEED_LATIN = 9
MAX_SEEDS = 24
# A seed found in this many documents or more is too common to say where the quote comes from.
SEED_MAX_DOCS = 400
FUZZY_DOCS = 8
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Located:
    """A match in one document, in folded offsets: [start, end) and, for ellipsis chains, each part."""

    row: int
    start: int
    end: int
    similarity: float = 1.0
    parts: tuple[tuple[int, int], ...] = ()


def find_all(text: str, needle: str, cap: int) -> list[int]:
    """Start offsets of non-overlapping occurrences of needle in text, at most cap."""
    out: list[int] = []
    pos = text.find(needle)
    while pos >= 0 and len(out) < cap:
        out.append(pos)
        pos = text.find(needle, pos + max(1, len(needle)))
    return out


def chains(text: str, parts: list[str], max_gap: int, cap: int = 3) -> list[tuple[tuple[int, int], ...]]:
    """Occurrences of every part in order, each starting at most max_gap after the previous one ends.

    Returns up to cap chains, tightest first; each is the (start, end) of every part.
    """
    occurrences = [find_all(text, p, 200) for p in parts]
    if not all(occurrences):
        return []
    # For each occurrence of the current part, the tightest chain of the parts before it that can reach it.
    paths: list[tuple[int, tuple[tuple[int, int], ...]]] = [
        (p + len(parts[0]), ((p, p + len(parts[0])),)) for p in occurrences[0]
    ]
    for part, starts in zip(parts[1:], occurrences[1:]):
        nxt = []
        for p in starts:
            reach = [(end, path) for end, path in paths if end <= p <= end + max_gap]
            if reach:
                _, path = max(reach, key=lambda x: (x[0], x[1][0][0]))
                nxt.append((p + len(part), path + ((p, p + len(part)),)))
        paths = nxt
        if not paths:
            return []
    found = sorted((path for _, path in paths), key=lambda path: (path[-1][1] - path[0][0], path[0][0]))
    out: list[tuple[tuple[int, int], ...]] = []
    for path in found:  # chains sharing their first part are one finding
        if all(path[0][0] != other[0][0] for other in out):
            out.append(path)
        if len(out) == cap:
            break
    return out


def seeds(fq: str) -> list[tuple[int, str]]:
    """(offset in the quote, substring) pairs spread evenly over the folded quote."""
    width = SEED_CJK if len(_CJK.findall(fq)) * 2 >= len(fq) else SEED_LATIN
    if len(fq) <= width:
        return [(0, fq)] if len(fq) >= 3 else []
    last = len(fq) - width
    n = min(MAX_SEEDS, last + 1)
    offsets = sorted({round(i * last / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [(o, fq[o : o + width]) for o in offsets]


def near(index: QuoteIndex, fq: str, extra_rows: tuple[int, ...] = (), docs: int = FUZZY_DOCS) -> list[Located]:
    """The best alignment of the quote in each of the most promising documents, most similar first."""
    picked = seeds(fq)
    scores = index.seed_scores([s for _, s in picked], SEED_MAX_DOCS)
    for row in extra_rows:
        scores[row] = scores.get(row, 0.0) + 1.0
    best = sorted(scores, key=lambda r: (-scores[r], r))[:docs]
    out = []
    for row in best:
        text = index.folded(row).text
        region = _region(text, picked, len(fq))
        if region is None:
            region = (0, len(text)) if len(text) <= 4 * max(len(fq), 50) else None
        if region is None:
            continue
        start, end, sim = align(fq, text, *region)
        out.append(Located(row, start, end, sim))
    return sorted(out, key=lambda m: (-m.similarity, m.row))


def _region(text: str, picked: list[tuple[int, str]], length: int) -> tuple[int, int] | None:
    """The stretch of text where most seeds sit where the quote would put them."""
    implied: list[tuple[int, int]] = []  # (implied quote start, seed number)
    for n, (offset, seed) in enumerate(picked):
        implied.extend((p - offset, n) for p in find_all(text, seed, 20))
    if not implied:
        return None
    implied.sort()
    tol = max(8, length // 3)
    best, best_span, lo = 0, (0, 0), 0
    counts: dict[int, int] = {}
    for hi, (start, n) in enumerate(implied):
        counts[n] = counts.get(n, 0) + 1
        while implied[lo][0] < start - tol:
            m = implied[lo][1]
            counts[m] -= 1
            if not counts[m]:
                del counts[m]
            lo += 1
        if len(counts) > best:
            best, best_span = len(counts), (implied[lo][0], start)
    slack = max(10, length // 3)
    return max(0, best_span[0] - slack), min(len(text), best_span[1] + length + slack)


def align(fq: str, text: str, lo: int, hi: int) -> tuple[int, int, float]:
    """The substring of text[lo:hi] most similar to fq (Indel similarity, 0..1): (start, end, similarity)."""
    region = text[lo:hi]
    if len(region) <= len(fq):
        return lo, hi, Indel.normalized_similarity(fq, region)
    found = fuzz.partial_ratio_alignment(fq, region)
    if found is None:  # only for empty input, which the callers never pass
        return lo, hi, Indel.normalized_similarity(fq, region)
    start, end = lo + found.dest_start, lo + found.dest_end
    # partial_ratio compares windows as long as the quote: a dropped or added word leaves the true
    # passage longer or shorter, so both ends move until the similarity stops improving.
    reach = max(3, min(40, len(fq) // 4))
    best = Indel.normalized_similarity(fq, text[start:end])
    for _ in range(2):
        for e in range(max(start + 1, end - reach), min(hi, end + reach) + 1):
            sim = Indel.normalized_similarity(fq, text[start:e])
            if sim > best:
                best, end = sim, e
        for s in range(max(lo, start - reach), min(end - 1, start + reach) + 1):
            sim = Indel.normalized_similarity(fq, text[s:end])
            if sim > best:
                best, start = sim, s
    return start, end, best
