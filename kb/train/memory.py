"""The question memory from STARD's labelled questions (kb.embed.memory): built with a tower's question vectors, for
the shipped file (every question) and for each cross-validation fold (the other folds' questions only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kb.bench.evaluate import _stard_rows
from kb.embed.memory import Article, QuestionMemory, build
from kb.search.fusion import depth
from kb.search.memory import Answers
from kb.search.searcher import Searcher, memory_rows
from kb.train.tower import Head, Prepared


def remember(prep: Prepared, ids: Sequence[int], vectors: np.ndarray) -> QuestionMemory:
    """A memory of STARD questions `ids` (their tower vectors, in order) and the gold articles labelling each."""
    rows = _stard_rows(None)
    answered = [
        [a for g in rows[prep.group[i]]["gold"] if (a := Article.of(g["name"], g["text"])) is not None] for i in ids
    ]
    return build(vectors, answered)


def memory_rankings(
    searcher: Searcher, prep: Prepared, memory: QuestionMemory, ids: Sequence[int], vectors: np.ndarray
) -> dict[int, dict[str, list[int]]]:
    """Each question's memory channel as the search ranks it (kb.search.searcher): the rows of the articles
    answering its nearest memory questions, among those the default search may return."""
    answers = Answers(memory, searcher.index.resolver)
    out: dict[int, dict[str, list[int]]] = {}
    for i, vec in zip(ids, vectors):
        rows = memory_rows(searcher.index, answers.ranked(vec), prep.allowed, depth(100))
        out[i] = {"memory": rows} if rows else {}
    return out


def write_memory(path: Path, prep: Prepared, head: Head) -> dict[str, object]:
    """Rewrite a tower weight file with the memory of every STARD question through `head` (the file's own tower,
    as a search embeds with it: kb.train.ship.tower_head), its other tensors and metadata unchanged."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="np") as fh:
        tensors = {name: fh.get_tensor(name) for name in fh.keys() if not name.startswith("memory.")}  # noqa: SIM118
        about = fh.metadata() or {}
    ids = list(range(prep.n_stard))
    memory = remember(prep, ids, head.encode([prep.hidden[i] for i in ids]))
    mode = path.stat().st_mode
    save_file({**tensors, **memory.tensors()}, str(path), metadata=about)
    path.chmod(mode)  # safetensors writes a new file readable by its owner only
    return {"questions": len(memory), "articles": len(memory.articles)}
