"""Hits -> an answer: the few passages that best answer a question, grouped by document, each with its key sentence."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kb.cite import highlight_spans
from kb.search.searcher import Hit
from kb.text.lexical import tokenize

# Sentence ends: Chinese 。；！？ and line breaks, English . ! ? before a space.
_SENTENCE = re.compile(r"[^。；！？\n]*?(?:[。；！？]|[.!?](?=\s)|\n|$)")
# Two passages whose distinct tokens overlap this much (Jaccard) say the same thing (a clause repeated
# in two versions of a law, or an English article quoting itself); only the better-ranked is kept.
NEAR_DUPLICATE = 0.6
# Passages scoring below this share of the best one are too weak to be part of an answer.
MIN_RELATIVE_SCORE = 0.35
# A passage sharing no word with the question belongs in an answer only if a semantic channel ranked it
# this high (a paraphrase or a translation); otherwise it is a heading or boilerplate that fused in.
SEMANTIC_TOP = 10
# The channels that match meaning rather than words ("near" marks a passage lifted for standing next to a hit).
SEMANTIC = ("dense", "dense_x", "xling")


@dataclass(frozen=True)
class Point:
    """One passage of an answer and the sentence in it that matches the question best."""

    hit: Hit
    sentence: str
    sentence_start: int  # offsets in the document text, like the chunk's
    sentence_end: int
    highlights: tuple[tuple[int, int], ...]  # spans within `sentence`


@dataclass(frozen=True)
class AnswerGroup:
    """The points one document contributes, in rank order."""

    doc_id: str
    title: str
    points: tuple[Point, ...]

    @property
    def best_rank(self) -> int:
        return self.points[0].hit.rank


def answer(hits: list[Hit], query: str, max_docs: int = 5, per_doc: int = 3, max_points: int = 8) -> list[AnswerGroup]:
    """Group the strongest distinct passages by document, best document first.

    Args:
        hits: ranked hits for the question (e.g. the top 20).
        max_docs: at most this many documents.
        per_doc: at most this many passages from one document.
        max_points: at most this many passages in all.
    """
    if not hits:
        return []
    floor = hits[0].score * MIN_RELATIVE_SCORE
    kept: list[tuple[Hit, frozenset[str]]] = []
    groups: dict[str, list[Point]] = {}
    for hit in hits:
        if hit.score < floor or len(kept) == max_points:
            break
        point = key_point(hit, query)
        if not point.highlights and not any(ch in SEMANTIC and rank <= SEMANTIC_TOP for ch, rank in hit.channels):
            continue
        tokens = frozenset(tokenize(hit.chunk.text))
        if any(_overlap(tokens, other) >= NEAR_DUPLICATE for _, other in kept):
            continue
        group = groups.get(hit.chunk.doc_id)
        if group is None:
            if len(groups) == max_docs:
                continue
            group = groups[hit.chunk.doc_id] = []
        if len(group) < per_doc:
            group.append(point)
            kept.append((hit, tokens))
    return [AnswerGroup(doc_id, group[0].hit.chunk.title, tuple(group)) for doc_id, group in groups.items()]


def key_point(hit: Hit, query: str) -> Point:
    """The passage's sentence holding the most distinct query terms (the first one on a tie)."""
    text = hit.chunk.text
    wanted = set(tokenize(query))
    best, best_score = (0, len(text)), -1
    for m in _SENTENCE.finditer(text):
        start, end = m.span()
        sentence = text[start:end]
        if not sentence.strip():
            continue
        score = len(wanted & set(tokenize(sentence)))
        if score > best_score:
            best, best_score = (start, end), score
    start, end = best
    # Leading whitespace is trimmed so the shown sentence and its offsets agree.
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    sentence = text[start:end]
    base = hit.chunk.char_start
    return Point(
        hit=hit,
        sentence=sentence,
        sentence_start=base + start,
        sentence_end=base + end,
        highlights=highlight_spans(sentence, query),
    )


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
