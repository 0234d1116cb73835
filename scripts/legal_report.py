"""Measure legal-structure extraction on a corpus folder: metadata against a gold table, cross-reference resolution.

    python scripts/legal_report.py meta [--corpus corpus] [--gold tests/data/zh_metadata_gold.csv] [--json]
    python scripts/legal_report.py xref [--corpus corpus] [--prefix zh/] [--within PREFIX] [--json]
    python scripts/legal_report.py rows --corpus corpus/lawrefbook [--json]

meta reads each gold document from its text alone (no metadata.csv, no sidecar) and prints, per field, the
precision (right among the values extracted), the coverage (values extracted among documents) and every
mismatch. xref finds the article references in the documents under --prefix, resolves them among all the
corpus's documents, and prints how many were found, how many name a document in the corpus, how many
resolved to a chunk holding the named article, the failures, and the article mentions no reference covers.
rows reads every document that a corpus's metadata.csv describes (a LawRefBook import) and counts the
documents whose metadata differs from their row in any non-empty level, date, validity or region cell.
No index and no model are needed: the corpus is read and chunked in memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kb.catalog.resolve import ChunkTable, Resolved, Resolver
from kb.chunk import Chunk, chunk_document
from kb.errors import KbError
from kb.ingest.document import DocRow
from kb.ingest.read import read_document, walk_corpus
from kb.ingest.sidecars import load_sidecars
from kb.legal.structure import cn_number, find_articles

ROOT = Path(__file__).resolve().parent.parent
META_FIELDS = ("level", "issuer", "published", "effective")
_MENTION = re.compile(r"第([零〇一二三四五六七八九十百千两0-9]+)条")


@dataclass
class MetaScore:
    """Per field: documents with a value extracted, how many of those match the gold, and the mismatches."""

    documents: int = 0
    extracted: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str | None, str]] = field(default_factory=list)  # doc, field, got, gold

    def precision(self, name: str) -> float:
        return self.right[name] / self.extracted[name] if self.extracted[name] else 0.0

    def coverage(self, name: str) -> float:
        return self.extracted[name] / self.documents if self.documents else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "documents": self.documents,
            "fields": {
                f: {
                    "extracted": self.extracted[f],
                    "right": self.right[f],
                    "precision": round(self.precision(f), 4),
                    "coverage": round(self.coverage(f), 4),
                }
                for f in META_FIELDS
            },
            "misses": [{"doc_id": d, "field": f, "got": g, "gold": w} for d, f, g, w in self.misses],
        }


def score_meta(corpus: Path, gold: Path) -> MetaScore:
    """Compare text-only extraction with the gold table (an empty gold cell: the value is unknown)."""
    score = MetaScore()
    with gold.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        meta = read_document(corpus, row["doc_id"]).meta  # no overrides: what the text says
        score.documents += 1
        for name in META_FIELDS:
            got, want = getattr(meta, name), row[name] or None
            if got is None:
                continue
            score.extracted[name] += 1
            if got == want:
                score.right[name] += 1
            else:
                score.misses.append((row["doc_id"], name, got, want or ""))
    return score


@dataclass
class XrefScore:
    """References found in the measured documents, by kind and outcome."""

    found: int = 0
    in_corpus: int = 0
    resolved: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    outside: Counter[str] = field(default_factory=Counter)  # titles cited that the corpus does not hold
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # chunk_id, reference, reason
    uncovered: list[tuple[str, str]] = field(default_factory=list)  # chunk_id, article mention no reference took
    resolved_refs: list[tuple[Chunk, Resolved]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.resolved / self.in_corpus if self.in_corpus else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "in_corpus": self.in_corpus,
            "resolved": self.resolved,
            "rate": round(self.rate, 4),
            "by_kind": dict(self.by_kind),
            "outside": dict(self.outside),
            "failures": [list(f) for f in self.failures],
            "uncovered": [list(u) for u in self.uncovered],
        }


def load_corpus(corpus: Path, within: str = "") -> tuple[dict[str, DocRow], list[Chunk]]:
    """Doc table rows and chunks of every readable file whose doc_id starts with `within` (unreadable ones
    are skipped, as a build does)."""
    sidecars = load_sidecars(corpus)
    docs: dict[str, DocRow] = {}
    chunks: list[Chunk] = []
    for doc_id, _ in walk_corpus(corpus):
        if not doc_id.startswith(within):
            continue
        try:
            doc = read_document(corpus, doc_id, sidecars.get(doc_id))
        except KbError:
            continue
        doc_chunks = chunk_document(doc)
        docs[doc_id] = DocRow(doc_id, doc.title, doc.lang, doc.meta, len(doc_chunks))
        chunks += doc_chunks
    return docs, chunks


def score_xref(corpus: Path, prefix: str, within: str = "") -> XrefScore:
    """Resolve every reference in the chunks of documents under prefix, among the documents under within."""
    docs, chunks = load_corpus(corpus, within)
    resolver = Resolver(docs, ChunkTable(chunks))
    score = XrefScore()
    for chunk in chunks:
        if not chunk.doc_id.startswith(prefix):
            continue
        results = resolver.references(chunk)
        covered = [(r.ref.start, r.ref.end) for r in results]
        heads = {s for s, _, _ in find_articles(chunk.text)}
        for m in _MENTION.finditer(chunk.text):
            if (
                m.start() not in heads
                and cn_number(m.group(1)) is not None
                and not any(s <= m.start() < e for s, e in covered)
            ):
                score.uncovered.append((chunk.chunk_id, chunk.text[max(0, m.start() - 12) : m.end() + 4]))
        for res in results:
            score.found += 1
            score.by_kind[res.ref.kind] += 1
            if res.reason == "not in the index":
                score.outside[str(res.ref.law)] += 1
                continue
            score.in_corpus += 1
            if res.target is not None:
                score.resolved += 1
                score.resolved_refs.append((chunk, res))
            else:
                score.failures.append((chunk.chunk_id, res.ref.text, str(res.reason)))
    return score


ROW_FIELDS = ("level", "published", "effective", "validity", "region")


def check_rows(corpus: Path) -> dict[str, object]:
    """Documents whose read metadata differs from a non-empty cell of their metadata.csv row."""
    sidecars = load_sidecars(corpus)
    differ: list[tuple[str, str, str | None, str]] = []
    filled: Counter[str] = Counter()
    unreadable: list[str] = []
    for doc_id, row in sorted(sidecars.items()):
        try:
            meta = read_document(corpus, doc_id, row).meta
        except KbError as exc:
            unreadable.append(f"{doc_id}: {exc}")
            continue
        for name in ROW_FIELDS:
            if row.get(name):
                filled[name] += 1
                if getattr(meta, name) != row[name]:
                    differ.append((doc_id, name, getattr(meta, name), row[name]))
    return {"rows": len(sidecars), "cells": dict(filled), "differ": [list(d) for d in differ], "unreadable": unreadable}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("meta", help="metadata extracted from text vs a gold table")
    m.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    m.add_argument("--gold", type=Path, default=ROOT / "tests" / "data" / "zh_metadata_gold.csv")
    m.add_argument("--json", action="store_true")
    x = sub.add_parser("xref", help="cross-reference resolution")
    x.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    x.add_argument("--prefix", default="zh/", help="measure references made in these documents (doc_id prefix)")
    x.add_argument("--within", default="", help="resolve among these documents only (doc_id prefix; default all)")
    x.add_argument("--json", action="store_true")
    r = sub.add_parser("rows", help="documents against their metadata.csv rows (a LawRefBook import)")
    r.add_argument("--corpus", type=Path, required=True)
    r.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.what == "rows":
            result = check_rows(args.corpus)
            if args.json:
                print(json.dumps(result, ensure_ascii=False, indent=1))
                return 0
            print(f"{result['rows']} rows; non-empty cells checked: {result['cells']}")
            print(
                f"documents differing from their row: {len({d[0] for d in result['differ']})}; "  # type: ignore[union-attr]
                f"unreadable: {len(result['unreadable'])}"
            )  # type: ignore[arg-type]
            for doc_id, name, got, want in result["differ"][:20]:  # type: ignore[index]
                print(f"  {doc_id} {name}: got {got}, row {want}")
            return 0
        if args.what == "meta":
            result = score_meta(args.corpus, args.gold)
            if args.json:
                print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
                return 0
            print(f"{result.documents} documents")
            for name in META_FIELDS:
                print(
                    f"{name:<10} precision {result.right[name]}/{result.extracted[name]} = "
                    f"{result.precision(name):.3f}   coverage {result.coverage(name):.3f}"
                )
            for doc_id, name, got, want in result.misses:
                print(f"  miss {doc_id} {name}: got {got}, gold {want or '(unknown)'}")
            return 0
        score = score_xref(args.corpus, args.prefix, args.within)
        if args.json:
            print(json.dumps(score.to_dict(), ensure_ascii=False, indent=1))
            return 0
        print(f"references found {score.found} ({', '.join(f'{k} {v}' for k, v in score.by_kind.most_common())})")
        print(
            f"naming a document in the corpus {score.in_corpus}; resolved to a chunk {score.resolved} "
            f"= {score.rate:.3f}"
        )
        print("cited, not in the corpus: " + ", ".join(f"{t} x{n}" for t, n in score.outside.most_common()))
        for chunk_id, text, reason in score.failures:
            print(f"  failed {chunk_id}: {text} ({reason})")
        for chunk_id, text in score.uncovered:
            print(f"  article mention no reference took, {chunk_id}: …{text}…")
        return 0
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
