"""新旧对照: two versions of a law, article by article.

Articles are aligned by content, not number: a monotone alignment (the order of a law survives a revision)
maximises the summed similarity of matched pairs above ALIGN_MIN, so an inserted article shifts the numbers
after it without breaking the pairs; what is left is then paired out of order when similar enough (MOVE_MIN)
and called moved. A matched pair is unchanged (same text, spacing aside) or changed, with a character-level
(Chinese) / word-level (English) diff from kb.quote.diff; the rest is added or deleted.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from kb.chunk import Chunk
from kb.ingest.document import Document
from kb.legal.structure import legal_segments
from kb.quote.diff import DiffOp, word_diff
from kb.research.laws import Version

# Similarity (rapidfuzz's normalised Indel ratio, 0..1) from which two articles may be the same article revised.
# Measured on 公司法 2018/2023, 民事诉讼法 2021/2023 and 立法法 2015/2023 (docs/BENCHMARKS.md): pairs below 0.5
# were different provisions in the hand-checked sample.
ALIGN_MIN = 0.5
# Out of order, a pair must be closer still: a moved article is usually moved whole.
MOVE_MIN = 0.6
STATUSES = ("unchanged", "changed", "moved", "added", "deleted")
# Spacing and invisible characters (LawRefBook leaves zero-width spaces at some article ends) are not changes.
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACE = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]+")


@dataclass(frozen=True)
class Article:
    """One article of a version: its label (第十条之一), number, body text (label stripped) and first chunk."""

    label: str
    number: int
    text: str
    chunk_id: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {"label": self.label, "number": self.number, "text": self.text, "chunk_id": self.chunk_id}


@dataclass(frozen=True)
class Pair:
    """An old article and its new counterpart (either None when added or deleted), with status and diff.

    diff: kb.quote.diff ops with the new text on the 'quote' side and the old on the 'source' side ('added':
    only in the new version, 'dropped': only in the old one).
    """

    status: str
    old: Article | None
    new: Article | None
    similarity: float
    diff: tuple[DiffOp, ...] = ()

    @property
    def renumbered(self) -> bool:
        return self.old is not None and self.new is not None and self.old.label != self.new.label

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "status": self.status,
            "renumbered": self.renumbered,
            "similarity": round(self.similarity, 3),
            "old": self.old.to_dict() if self.old else None,
            "new": self.new.to_dict() if self.new else None,
            "diff": [d.to_dict() for d in self.diff],
        }


@dataclass(frozen=True)
class Comparison:
    """Two versions of a law compared: the pairs in the new version's order (deleted ones where they stood)."""

    old: Version
    new: Version
    pairs: tuple[Pair, ...]

    def counts(self) -> dict[str, int]:
        """Articles per status, and how many matched articles changed number."""
        counts = Counter(p.status for p in self.pairs)
        return {**{s: counts.get(s, 0) for s in STATUSES}, "renumbered": sum(p.renumbered for p in self.pairs)}

    def summary(self) -> str:
        """修订 2018 -> 2023: 42 articles changed, 15 added, 3 deleted, 2 moved, 160 unchanged (120 renumbered)."""
        c = self.counts()
        return (
            f"{self.new.title} {self.old.year or '?'} -> {self.new.year or '?'}: {c['changed']} articles "
            f"changed, {c['added']} added, {c['deleted']} deleted, {c['moved']} moved, {c['unchanged']} "
            f"unchanged ({c['renumbered']} renumbered)"
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `python -m kb diff --json`."""
        return {
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "counts": self.counts(),
            "summary": self.summary(),
            "pairs": [p.to_dict() for p in self.pairs],
        }


def articles(doc: Document, chunks: list[Chunk]) -> list[Article]:
    """The articles of a document in reading order (empty for a text without 第X条 articles)."""
    first: dict[str, str] = {}
    for c in chunks:
        if c.article:
            first.setdefault(c.article, c.chunk_id)
    out = []
    for seg in legal_segments(doc.text):
        if seg.article is None or seg.article_no is None:
            continue
        body = _INVISIBLE.sub("", doc.text[seg.start + len(seg.article) : seg.end]).strip()
        out.append(Article(seg.article, seg.article_no, body, first.get(seg.article)))
    return out


def _plain(text: str) -> str:
    return _SPACE.sub("", text)


def align(old: list[Article], new: list[Article]) -> list[Pair]:
    """Pair the articles of two versions (module docstring); pairs in the new order, deleted ones after the
    new article that follows their old neighbour."""
    if not old or not new:
        return [*(_pair(None, b, 0.0) for b in new), *(_pair(a, None, 0.0) for a in old)]
    sim = (
        cdist(
            [_plain(a.text) for a in old], [_plain(b.text) for b in new], scorer=fuzz.ratio, dtype=np.float32, workers=1
        )
        / 100.0
    )
    matched = _monotone(sim)
    used_old = {i for i, _ in matched}
    used_new = {j for _, j in matched}
    moved: list[tuple[int, int]] = []
    free = [
        (float(sim[i, j]), i, j)
        for i in range(len(old))
        if i not in used_old
        for j in range(len(new))
        if j not in used_new and sim[i, j] >= MOVE_MIN
    ]
    for score, i, j in sorted(free, reverse=True):
        if i not in used_old and j not in used_new:
            moved.append((i, j))
            used_old.add(i)
            used_new.add(j)
    of_new = {j: (i, False) for i, j in matched} | {j: (i, True) for i, j in moved}
    out: list[Pair] = []
    deleted = sorted(i for i in range(len(old)) if i not in used_old)
    last_old = -1
    for j, b in enumerate(new):
        if j in of_new:
            i, is_moved = of_new[j]
            if not is_moved:
                out += [_pair(old[d], None, 0.0) for d in deleted if last_old < d < i]
                last_old = i
            out.append(_pair(old[i], b, float(sim[i, j]), moved=is_moved))
        else:
            out.append(_pair(None, b, 0.0))
    out += [_pair(old[d], None, 0.0) for d in deleted if d > last_old]
    return out


def _monotone(sim: np.ndarray) -> list[tuple[int, int]]:
    """The order-keeping pairs maximising the summed (similarity - ALIGN_MIN) over pairs above ALIGN_MIN."""
    n, m = sim.shape
    gain = np.where(sim > ALIGN_MIN, sim - ALIGN_MIN, -1.0)
    score = np.zeros((n + 1, m + 1), dtype=np.float64)
    for i in range(1, n + 1):
        row, prev, g = score[i], score[i - 1], gain[i - 1]
        # Without a match at (i, j): the best of skipping old i (prev[j]) or new j (row[j - 1]); a running
        # maximum along the row does the latter in one pass.
        take = prev[:-1] + g
        best = np.maximum(prev[1:], take)
        row[1:] = np.maximum.accumulate(np.concatenate(([row[0]], best)))[1:]
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if score[i, j] == score[i - 1, j]:
            i -= 1
        elif score[i, j] == score[i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]


def _pair(a: Article | None, b: Article | None, similarity: float, moved: bool = False) -> Pair:
    if a is None:
        return Pair("added", None, b, 0.0)
    if b is None:
        return Pair("deleted", a, None, 0.0)
    same = _plain(a.text) == _plain(b.text)
    status = "moved" if moved else ("unchanged" if same else "changed")
    return Pair(status, a, b, similarity, () if same else word_diff(b.text, a.text))


def compare_texts(
    old: Version, new: Version, old_doc: tuple[Document, list[Chunk]], new_doc: tuple[Document, list[Chunk]]
) -> Comparison:
    """Compare two versions given their documents and chunks."""
    return Comparison(old, new, tuple(align(articles(*old_doc), articles(*new_doc))))
