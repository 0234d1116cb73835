"""The question memory: labelled training questions, embedded by the question tower, and the articles that answer
them. A new question near some of them is likely answered by their articles too (a worker asking about unpaid
wages after dismissal needs the articles the last such questions needed), so the search lists those articles as a
channel of its own (kb.search.memory). The memory travels inside the tower's weight file (kb.embed.tower): its
vectors are that tower's, and the file's sha256 in each index manifest covers both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kb.legal.structure import cn_number

TENSORS = ("memory.vectors", "memory.offsets", "memory.answers", "memory.articles")
# A gold article's name as STARD writes it: the instrument's title, then 第N条 or 第N条之M.
_NAME = re.compile(r"^(.+?)第([零〇一二三四五六七八九十百千两\d]+)条(?:之([一二三四五六七八九十]+))?$")
KEY_CHARS = 30  # an article's first characters (whitespace removed) that pick its version among a law's versions


@dataclass(frozen=True)
class Article:
    """An article a training question was answered with: where it stands and how its text begins."""

    law: str  # the instrument's title as the label names it ("劳动合同法", "最高人民法院关于适用《民法典》…的解释")
    number: int
    sub: int | None  # M of 第N条之M
    key: str  # the first KEY_CHARS characters of its text, whitespace removed

    @classmethod
    def of(cls, name: str, text: str) -> Article | None:
        """The article a label names ("劳动合同法第三十八条") with its text; None when the name is not one."""
        m = _NAME.match("".join(name.split()))
        number = cn_number(m.group(2)) if m else None
        if m is None or not number:
            return None
        sub = cn_number(m.group(3)) if m.group(3) else None
        return cls(m.group(1), number, sub, "".join(text.split())[:KEY_CHARS])


@dataclass(frozen=True)
class QuestionMemory:
    """n questions' unit vectors and, for question q, the articles answers[offsets[q]:offsets[q + 1]]."""

    vectors: np.ndarray  # (n, dim) float32
    offsets: np.ndarray  # (n + 1,) int64
    answers: np.ndarray  # indices into articles
    articles: tuple[Article, ...]

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, vec: np.ndarray, questions: int, floor: float) -> list[tuple[int, float]]:
        """Articles answering the `questions` questions nearest to a question vector (those at cosine `floor` or
        more), each scored by the summed similarity of the questions it answered; best first, then in file order.
        """
        if not len(self.vectors):
            return []
        sims = self.vectors @ np.asarray(vec, dtype=np.float32)
        take = min(questions, len(sims))
        top = np.argpartition(-sims, take - 1)[:take]
        score: dict[int, float] = {}
        for q in top[np.argsort(-sims[top], kind="stable")]:
            if sims[q] < floor:
                break
            for a in self.answers[self.offsets[q] : self.offsets[q + 1]]:
                score[int(a)] = score.get(int(a), 0.0) + float(sims[q])
        return sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))

    def tensors(self) -> dict[str, np.ndarray]:
        """The memory as weight-file tensors (vectors in float16; the articles as UTF-8 JSON bytes)."""
        rows = [[a.law, a.number, a.sub, a.key] for a in self.articles]
        return {
            "memory.vectors": self.vectors.astype(np.float16),
            "memory.offsets": self.offsets.astype(np.int64),
            "memory.answers": self.answers.astype(np.int64),
            "memory.articles": np.frombuffer(json.dumps(rows, ensure_ascii=False).encode(), dtype=np.uint8).copy(),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray]) -> QuestionMemory:
        """The memory of a weight file's tensors.

        Raises:
            ValueError: the tensors do not hold a memory (a garbled or foreign file).
        """
        vectors = np.asarray(tensors["memory.vectors"], dtype=np.float32)
        offsets = np.asarray(tensors["memory.offsets"], dtype=np.int64)
        answers = np.asarray(tensors["memory.answers"], dtype=np.int64)
        rows = json.loads(np.asarray(tensors["memory.articles"], dtype=np.uint8).tobytes().decode())
        articles = tuple(
            Article(str(law), int(no), None if sub is None else int(sub), str(key)) for law, no, sub, key in rows
        )
        if vectors.ndim != 2 or len(offsets) != len(vectors) + 1 or offsets[-1] != len(answers):
            raise ValueError(f"memory of {len(vectors)} questions with {len(offsets)} offsets, {len(answers)} answers")
        if len(answers) and not 0 <= int(answers.min()) <= int(answers.max()) < len(articles):
            raise ValueError(f"memory answers point outside its {len(articles)} articles")
        return cls(vectors, offsets, answers, articles)


def build(vectors: np.ndarray, answered: Sequence[Sequence[Article]]) -> QuestionMemory:
    """A memory of questions (their tower vectors, unit rows) and the articles answering each, articles shared."""
    index: dict[Article, int] = {}
    offsets, answers = [0], []
    for arts in answered:
        for a in dict.fromkeys(arts):
            answers.append(index.setdefault(a, len(index)))
        offsets.append(len(answers))
    return QuestionMemory(
        np.asarray(vectors, dtype=np.float32),
        np.array(offsets, dtype=np.int64),
        np.array(answers, dtype=np.int64),
        tuple(index),
    )
