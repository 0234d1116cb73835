"""English -> Chinese senses learned from translation pairs: a measured experiment for the `bm25_x` channel.

The dictionary (kb.text.bilingual, CC-CEDICT read backwards) often lacks the legal sense of an English word:
"fraud" glosses 诈欺, 诈骗罪 and 骗案 there, never 欺诈. Our English translations of STARD train questions, each
beside its Chinese original, show which Chinese words an English word stands for in legal questions. For each
English stem and pair of adjacent stems of a translation, and each jieba word (2+ characters) of its original,
the Dice coefficient of their co-occurrence across the pairs; a word is kept for a key (at most `per_key`) when
they co-occur in `min_count` pairs or more with Dice ≥ `min_dice`, and is read before the dictionary's senses.

Not searched with yet: `scripts/train.py senses-cv` measures it on held-out folds (docs/BENCHMARKS.md, session
19), and what shipping it needs is written there. The settings were fixed before any fold was scored.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

from kb.text.bilingual import Glossary, stems
from kb.text.lexical import tokenize

# Above every dictionary weight (1.0 for a whole gloss), so a learned word is read first.
LEARNED = 2.0


def english_keys(text: str) -> set[str]:
    """The stems of an English text and its pairs of adjacent stems, as the glossary's keys are written."""
    words = stems(text)
    return set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


def chinese_words(text: str) -> set[str]:
    """The jieba words of 2+ characters of a Chinese text, as BM25 indexes them."""
    return {t for t in tokenize(text) if len(t) >= 2} - set(stems(text))


def learn(
    pairs: Iterable[tuple[str, str]], min_count: int = 3, min_dice: float = 0.3, per_key: int = 2
) -> dict[str, list[str]]:
    """English key -> its learned Chinese words, best first, from (English, Chinese) pairs of the same question."""
    keys: Counter[str] = Counter()
    words: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    for english, chinese in pairs:
        ks, ws = english_keys(english), chinese_words(chinese)
        keys.update(ks)
        words.update(ws)
        both.update(itertools.product(ks, ws))
    found: dict[str, list[tuple[float, str]]] = {}
    for (key, word), n in both.items():
        dice = 2 * n / (keys[key] + words[word])
        if n >= min_count and dice >= min_dice:
            found.setdefault(key, []).append((dice, word))
    return {key: [w for _, w in sorted(ranked, key=lambda c: (-c[0], c[1]))[:per_key]] for key, ranked in found.items()}


def with_senses(glossary: Glossary, learned: dict[str, list[str]]) -> Glossary:
    """The glossary with the learned words of each key read before the dictionary's senses (best first)."""
    table = {key: dict(slot) for key, slot in glossary.table.items()}
    tokens = dict(glossary.tokens)
    for key, words in learned.items():
        slot = table.setdefault(key, {})
        for rank, word in enumerate(words):
            slot[word] = LEARNED - 0.01 * rank
            tokens.setdefault(word, (word,))
    return Glossary(table, tokens)
