"""The memory channel: the articles that answered the training questions nearest to a question (kb.embed.memory),
found among one index's documents.

An article is found by its law's title (any version; the search's filters then keep the versions it may show)
and its number, and kept where its text begins as the training label's did: a renumbered or rewritten article
of another version is not the one that answered the question.
"""

from __future__ import annotations

import threading

import numpy as np

from kb import config
from kb.catalog.resolve import Resolver, sub_of
from kb.embed.memory import Article, QuestionMemory
from kb.legal.meta import title_key

PRC = "中华人民共和国"


def loose_title(title: str) -> str:
    """A title without 中华人民共和国 anywhere in it: the labels write "关于适用《民法典》…", the corpus
    "关于适用《中华人民共和国民法典》…"."""
    return title_key(title).replace(PRC, "")


class Answers:
    """Where a memory's articles stand in one index generation: looked up on first use, then kept (a memory
    holds about 1,300 articles)."""

    def __init__(self, memory: QuestionMemory, resolver: Resolver) -> None:
        self.memory, self.resolver = memory, resolver
        self.docs: dict[str, list[str]] = {}
        for doc_id, title in resolver.titles.items():
            self.docs.setdefault(loose_title(title), []).append(doc_id)
            head = title.split()
            if len(head) > 1:  # a code filed in parts ("中华人民共和国民法典 合同编") numbers across its parts
                self.docs.setdefault(loose_title(head[0]), []).append(doc_id)
        self._found: dict[int, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def chunk_ids(self, article: int) -> tuple[str, ...]:
        """The chunks (in any version of its law) whose text begins as the article's label does."""
        with self._lock:
            found = self._found.get(article)
        if found is None:
            found = self._find(self.memory.articles[article])
            with self._lock:
                self._found[article] = found
        return found

    def _find(self, article: Article) -> tuple[str, ...]:
        out = []
        for doc_id in self.docs.get(loose_title(article.law), []):
            for chunk in self.resolver.source.article_chunks(doc_id, article.number):
                if sub_of(chunk.article) == article.sub and article.key in "".join(chunk.text.split()):
                    out.append(chunk.chunk_id)
        return tuple(out)

    def ranked(
        self, vec: np.ndarray, questions: int = config.MEMORY_QUESTIONS, floor: float = config.MEMORY_FLOOR
    ) -> list[str]:
        """Chunk ids of the articles answering the questions nearest to a question vector, best first."""
        return [cid for a, _ in self.memory.nearest(vec, questions, floor) for cid in self.chunk_ids(a)]
