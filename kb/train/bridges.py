"""Learned vocabulary bridges: words of a layperson's question -> legal terms of the articles that answer it.

"老板不发工资" shares no word with "拖欠劳动报酬"; BM25 cannot find the article. From training pairs (a question and
the articles that answer it) we count how often a legal term appears in the answers of questions holding a lay
word, compared with how often it appears in answers at all (lift). A question's expansion is the terms its words
point to most strongly, searched by BM25 as a channel of its own with its own weight in the fusion.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kb.errors import ModelLoadError


@dataclass(frozen=True)
class Bridges:
    """Question token -> legal terms with their strength, best first."""

    table: dict[str, tuple[tuple[str, float], ...]]

    def expand(self, tokens: Sequence[str], n: int) -> list[str]:
        """The n legal terms the question's tokens point to most strongly, leaving out the question's own."""
        have = set(tokens)
        score: dict[str, float] = {}
        for token in have:
            for term, strength in self.table.get(token, ()):
                if term not in have:
                    score[term] = score.get(term, 0.0) + strength
        return [term for term, _ in sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def save(self, path: Path) -> None:
        rows = {t: [[u, round(s, 4)] for u, s in terms] for t, terms in sorted(self.table.items())}
        path.write_text(
            json.dumps(rows, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, path: Path) -> Bridges:
        """Raises ModelLoadError when the file is missing or not a bridge table."""
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            return cls({t: tuple((str(u), float(s)) for u, s in terms) for t, terms in rows.items()})
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(
                f"{path}: not a readable bridge table ({exc}); retrain with `python scripts/train.py fit`"
            ) from exc


def learn(
    questions: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str]],
    min_count: int = 2,
    min_lift: float = 3.0,
    per_token: int = 8,
) -> Bridges:
    """Bridges from tokenised questions and the tokens of their gold articles (one list per question).

    A pair (lay token t, legal term u) is kept when u is in the answers of at least `min_count` questions that
    hold t, is not in those questions themselves, and is `min_lift` times likelier there than in answers at
    large. Strength: P(u in answer | t in question) x log(lift).
    """
    n = len(questions)
    with_t: Counter[str] = Counter()
    in_answers: Counter[str] = Counter()
    pair: Counter[tuple[str, str]] = Counter()
    for q, a in zip(questions, answers):
        qs, terms = set(q), set(a)
        with_t.update(qs)
        in_answers.update(terms)
        for t in qs:
            for u in terms - qs:
                pair[(t, u)] += 1
    table: dict[str, list[tuple[str, float]]] = {}
    for (t, u), c in pair.items():
        if c < min_count or len(u) < 2:
            continue
        p = c / with_t[t]
        lift = p / (in_answers[u] / n)
        if lift >= min_lift:
            table.setdefault(t, []).append((u, p * math.log(lift)))
    return Bridges({t: tuple(sorted(terms, key=lambda x: (-x[1], x[0]))[:per_token]) for t, terms in table.items()})
