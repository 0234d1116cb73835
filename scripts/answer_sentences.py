"""How often the answer view quotes the sentence that answers the question (tests/data/answer_sentences.tsv).

For each question: search the index, take the passage of the expected document holding the expected sentence,
and compare the sentence the answer view picks in it (kb.present.answer.key_point) with the expected one. Also
says whether that passage is the answer's first point. Searches include superseded texts (include_repealed): the
table measures the choice of sentence, and some of its questions ask about laws since revised (zh04, zh08).

    python scripts/answer_sentences.py [--index index/] [--table tests/data/answer_sentences_heldout.tsv] [--show]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from kb.backends import open_searcher
from kb.errors import KbError
from kb.present.answer import answer, key_point
from kb.present.sentences import backend_similarity, sentence_spans
from kb.search.contract import Backend

TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer_sentences.tsv"
POOL = 20


@dataclass(frozen=True)
class Row:
    question: str
    doc_id: str
    start: str


@dataclass(frozen=True)
class Outcome:
    row: Row
    expected: str | None  # None: no retrieved passage of the document holds the sentence
    got: str | None
    first: bool  # the passage is the answer's first point

    @property
    def exact(self) -> bool:
        return self.expected is not None and self.got == self.expected


def rows(path: Path = TABLE) -> list[Row]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            question, doc_id, start = line.split("\t")
            out.append(Row(question, doc_id, start))
    return out


def evaluate(searcher: Backend, table: list[Row]) -> list[Outcome]:
    """One outcome per row (see the module docstring)."""
    outcomes = []
    similarity = backend_similarity(searcher)
    for row in table:
        hits = searcher.search(row.question, POOL, include_repealed=True)
        expected = got = None
        first = False
        for hit in hits:
            if hit.chunk.doc_id != row.doc_id:
                continue
            text = hit.chunk.text
            found = [text[s:e] for s, e in sentence_spans(text) if text[s:e].startswith(row.start)]
            if len(found) == 1:
                expected = found[0]
                got = key_point(hit, row.question, similarity).sentence
                groups = answer(hits, row.question, similarity=similarity)
                first = bool(groups) and groups[0].points[0].hit.chunk.chunk_id == hit.chunk.chunk_id
                break
        outcomes.append(Outcome(row, expected, got, first))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=TABLE, help="questions (default: the tuning table)")
    parser.add_argument("--show", action="store_true", help="print every question with the chosen sentence")
    args = parser.parse_args(argv)
    try:
        searcher = open_searcher("faiss", args.index)
        outcomes = evaluate(searcher, rows(args.table))
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for o in outcomes:
        if args.show or not o.exact:
            mark = "ok " if o.exact else ("-- " if o.expected is None else "XX ")
            print(f"{mark}{o.row.question}\n    want: {o.expected}\n    got:  {o.got}")
    for lang in ("zh", "en"):
        part = [o for o in outcomes if o.row.doc_id.startswith(lang)]
        exact = sum(o.exact for o in part)
        print(f"{lang}: {exact}/{len(part)} exact ({100 * exact / max(len(part), 1):.0f}%)")
    exact = sum(o.exact for o in outcomes)
    first = sum(o.first for o in outcomes)
    print(
        f"all: {exact}/{len(outcomes)} exact ({100 * exact / len(outcomes):.1f}%); expected passage first in the answer: {first}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
