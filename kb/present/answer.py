"""Hits -> an answer: the few passages that best answer a question, grouped by document, each with its key sentence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kb.cite import highlight_spans
from kb.present.sentences import Similarity, sentence_scores, sentence_spans
from kb.search.searcher import Hit
from kb.text.lexical import tokenize

# Two passages whose distinct tokens overlap this much (Jaccard) say the same thing (a clause repeated
# in two versions of a law, or an English article quoting itself); only the better-ranked is kept.
NEAR_DUPLICATE = 0.6
# Passages scoring below this share of the best one are too weak to be part of an answer.
MIN_RELATIVE_SCORE = 0.35
# A passage sharing no word with the question belongs in an answer only if a semantic channel ranked it
# this high (a paraphrase or a translation); otherwise it is a heading or boilerplate that fused in.
SEMANTIC_TOP = 10
# The channels that match meaning, or the question's words translated, rather than its own words ("near" marks a
# passage lifted for standing next to a hit).
SEMANTIC = ("dense", "dense_x", "xling", "bm25_x")


@dataclass(frozen=True)
class Point:
    """One passage of an answer and the sentence in it that matches the question best."""

    hit: Hit
    sentence: str
    sentence_start: int  # offsets in the document text, like the chunk's
    sentence_end: int
    highlights: tuple[tuple[int, int], ...]  # spans within `sentence`
    score: float = 0.0  # how well the sentence answers (kb.present.sentences.sentence_scores)


@dataclass(frozen=True)
class AnswerGroup:
    """The points one document contributes, in rank order."""

    doc_id: str
    title: str
    points: tuple[Point, ...]

    @property
    def best_rank(self) -> int:
        return self.points[0].hit.rank


def answer(
    hits: list[Hit],
    query: str,
    max_docs: int = 5,
    per_doc: int = 3,
    max_points: int = 8,
    similarity: Similarity | None = None,
) -> list[AnswerGroup]:
    """Group the strongest distinct passages by document, best document first.

    Args:
        hits: ranked hits for the question (e.g. the top 20).
        similarity: question-sentence similarity (kb.present.sentences.embedding_similarity over the index's
            dense model); None: sentences are chosen by words and answer type alone.
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
        if not hit.highlights and not any(ch in SEMANTIC and rank <= SEMANTIC_TOP for ch, rank in hit.channels):
            continue
        tokens = frozenset(tokenize(hit.chunk.text))
        if any(_overlap(tokens, other) >= NEAR_DUPLICATE for _, other in kept):
            continue
        group = groups.get(hit.chunk.doc_id)
        if group is None:
            if len(groups) == max_docs:
                continue
            group = groups[hit.chunk.doc_id] = []
        if len(group) < per_doc:  # only kept passages have their sentences scored (e5 runs on these alone)
            group.append(key_point(hit, query, similarity))
            kept.append((hit, tokens))
    return [AnswerGroup(doc_id, group[0].hit.chunk.title, tuple(group)) for doc_id, group in groups.items()]


def key_point(hit: Hit, query: str, similarity: Similarity | None = None) -> Point:
    """The passage's sentence that best answers the question (kb.present.sentences; the first one on a tie)."""
    text = hit.chunk.text
    spans = sentence_spans(text) or [(0, len(text))]
    scores = sentence_scores(query, [text[s:e] for s, e in spans], similarity)
    best = int(np.argmax(scores))
    start, end = spans[best]
    sentence = text[start:end]
    base = hit.chunk.char_start
    return Point(
        hit=hit,
        sentence=sentence,
        sentence_start=base + start,
        sentence_end=base + end,
        highlights=highlight_spans(sentence, query),
        score=float(scores[best]),
    )


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
