"""Which sentence of a passage answers the question: e5 similarity, with the words and the kind of answer asked for.

Word overlap alone quoted "除前款所列商品外…不适用无理由退货" for 网购商品无理由退货期限 (it shares the most words),
not the sentence with 七日内退货. The score of a sentence is

    cos(e5 question, e5 sentence)                       what it is about (kb.embed, already loaded for search)
    + LEXICAL * weighted share of question words         the words asked about, each weighted by how few of the
                                                         passage's sentences hold it; a later 款 inherits the words
                                                         of the article's first sentence (its subject) at INHERIT
    + ANSWER_TYPE * (sentence holds what was asked for)  a duration for 期限/多久/how long, a figure for 多少/how
                                                         many, a definition (是指/所称/means) for 定义/what is

The weights were chosen on tests/data/answer_sentences.tsv (docs/BENCHMARKS.md gives that in-sample figure and a
held-out one). Without a dense model (the hashing embedder of tests) the other two terms decide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kb.text.lexical import tokenize

# Sentence ends: Chinese 。；！？, English . ! ? before a space, a blank line, or a line break before a list item
# or heading; other line breaks (a PDF's line ends, wrapped Markdown) are not sentence ends.
_END = re.compile(
    r"[。；！？]|[.!?](?=\s)|\n\s*\n|\n(?=\s*(?:[-*•#]|[（(]|\d+[.)、]|第[一二三四五六七八九十百零〇]+条))"
)
LEXICAL = 0.3
INHERIT = 0.75
ANSWER_TYPE = 0.1

_NUM = r"[0-9０-９一二三四五六七八九十百千万两]+"
# (what the question asks for, what a sentence holding it looks like)
ANSWER_TYPES = (
    (
        re.compile(r"期限|多久|几日|几天|多少日|多少天|多长时间|how long|how many days|\bwhen\b", re.I),
        re.compile(_NUM + r"\s*(?:日|天|个月|年|小时|周)|\b\d+\s*(?:days?|months?|years?|hours?)\b", re.I),
    ),
    (
        re.compile(r"多少|几|罚款|how many|how much|what share|what percentage|what proportion", re.I),
        re.compile(_NUM + r"|\d|percent|%", re.I),
    ),
    (
        re.compile(r"定义|是指|什么是|含义|\bwhat is\b|\bdefin|\bmeaning\b", re.I),
        re.compile(r"是指|所称|\bmeans\b|\brefers? to\b|\bdefined\b", re.I),
    ),
)

# (question, sentences) -> similarity per sentence
Similarity = Callable[[str, list[str]], np.ndarray]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence of a passage, surrounding whitespace excluded."""
    spans, start = [], 0
    for m in _END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            out.append((s, e))
    return out


def embedding_similarity(embedder: object) -> Similarity:
    """Cosine of e5's question and sentence vectors; the numpy engine when the embedder has one (no torch)."""
    engine: Any = getattr(embedder, "question_engine", lambda: None)() or embedder
    asked: dict[str, np.ndarray] = {}  # the question's vector, once for all its passages

    def similarity(question: str, sentences: list[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0)
        if question not in asked:
            asked.clear()
            asked[question] = engine.query([question])[0]
        q = asked[question]
        return np.asarray(engine.passage(sentences), dtype=np.float64) @ q

    return similarity


def backend_similarity(backend: object) -> Similarity | None:
    """embedding_similarity over a search backend's dense model, or None when its index has no dense channel."""
    try:
        return embedding_similarity(backend.embedder("dense"))  # type: ignore[attr-defined]
    except (KeyError, AttributeError):
        return None


def lexical(question: str, sentences: Sequence[str]) -> np.ndarray:
    """Share of the question's words in each sentence, weighted by rarity within the passage (see module doc)."""
    wanted = set(tokenize(question))
    words = [set(tokenize(s)) for s in sentences]
    n = len(sentences)
    weight = {w: math.log(1 + n / (1 + sum(w in s for s in words))) for w in wanted}
    total = sum(weight.values()) or 1.0
    subject = wanted & words[0] if words else set()
    out = []
    for i, own in enumerate(words):
        score = sum(weight[w] for w in wanted & own)
        if i:
            score += INHERIT * sum(weight[w] for w in subject - own)
        out.append(score / total)
    return np.array(out)


def answer_type(question: str, sentences: Sequence[str]) -> np.ndarray:
    """1 for each kind of answer the question asks for that a sentence holds (see ANSWER_TYPES)."""
    out = np.zeros(len(sentences))
    for asks, holds in ANSWER_TYPES:
        if asks.search(question):
            out += np.array([1.0 if holds.search(s) else 0.0 for s in sentences])
    return out


def sentence_scores(question: str, sentences: list[str], similarity: Similarity | None = None) -> np.ndarray:
    """The score of each sentence as an answer to the question (module doc)."""
    if not sentences:
        return np.zeros(0)
    score = LEXICAL * lexical(question, sentences) + ANSWER_TYPE * answer_type(question, sentences)
    if similarity is not None:
        score = score + similarity(question, sentences)
    return score
