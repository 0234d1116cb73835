"""Figures for the research tools (docs/BENCHMARKS.md, "Research tools"): version comparison, cited-by, pinpoint.

    # 新旧对照 of laws in a LawRefBook import; writes a sample of aligned pairs to judge by hand, and scores a
    # judged sample (its 'verdict' column: ok / wrong) when one is given:
    .venv/bin/python scripts/bench_research.py versions --corpus corpus/lawrefbook \
        --law 公司法:2018:2023 --law 民事诉讼法:2021:2023 --law 立法法:2015:2023 \
        --sample 60 --sample-out sample.tsv [--judged docs/research/alignment_judged.tsv]
    # cited-by over a built index (read only: the table is written to a temporary folder when the index has
    # none): counts for well-known articles, lookup time, a sample of citing passages to judge:
    .venv/bin/python scripts/bench_research.py citedby --index INDEX --sample 50 --sample-out cites.tsv \
        [--judged docs/research/citedby_judged.tsv]
    # every part of every split article cited with its 款, and the citation parsed back:
    .venv/bin/python scripts/bench_research.py pinpoint --index INDEX
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kb.catalog.resolve import Resolver
from kb.cite import pinpoint
from kb.errors import KbError
from kb.index.build import build
from kb.index.citedby import CITEDBY_FILE, CitedByTable, write_citedby
from kb.index.generations import current_generation, read_manifest
from kb.index.manifest import Manifest
from kb.index.store import open_store
from kb.legal.pinpoint import Place, book_title, paragraph_starts, parse_citation
from kb.research.citing import cited_by
from kb.research.laws import Laws, cited_title
from kb.research.versions import compare_versions
from kb.search.searcher import Searcher

WELL_KNOWN = (
    "《中华人民共和国民法典》第一千一百六十五条",
    "《中华人民共和国民法典》第一百四十三条",
    "《中华人民共和国民法典》第五百七十七条",
    "《中华人民共和国民法典》第一千一百九十八条",
    "《中华人民共和国刑法》第二百六十四条",
    "《中华人民共和国刑法》第六十七条",
    "《中华人民共和国民事诉讼法》第一百二十二条",
    "《中华人民共和国行政处罚法》第三十三条",
    "《中华人民共和国电子商务法》第三十八条",
    "《中华人民共和国消费者权益保护法》第五十五条",
)
FIELDS_PAIRS = ("law", "status", "old", "new", "similarity", "old_text", "new_text", "verdict", "note")
FIELDS_CITES = ("older", "target", "citing", "reference", "context", "chunk_id", "verdict", "note")


def _law_corpus(corpus: Path, laws: list[str], out: Path) -> Path:
    """A corpus of just the versions named (files whose name starts with the law), with their metadata rows."""
    names = {spec.split(":")[0] for spec in laws}
    out.mkdir(parents=True)
    with (corpus / "metadata.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if Path(r["doc_id"]).name.split("(")[0] in names]
    for r in keep:
        (out / r["doc_id"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / r["doc_id"], out / r["doc_id"])
    with (out / "metadata.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    return out


def versions(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = _law_corpus(args.corpus, args.law, Path(tmp) / "corpus")
        build(corpus, Path(tmp) / "index", {}, cache_dir=None)  # BM25 only: the comparison reads the store
        searcher = Searcher(Path(tmp) / "index")
        laws = Laws(searcher.documents())
        figures: dict[str, object] = {}
        pairs = []
        for spec in args.law:
            name, since, until = spec.split(":")
            t0 = time.perf_counter()
            result = compare_versions(searcher, name, since, until, laws)
            seconds = time.perf_counter() - t0
            old_n = sum(p.old is not None for p in result.pairs)
            new_n = sum(p.new is not None for p in result.pairs)
            figures[spec] = {
                **result.counts(),
                "articles_old": old_n,
                "articles_new": new_n,
                "seconds": round(seconds, 2),
                "summary": result.summary(),
            }
            pairs += [(name, p) for p in result.pairs if p.old and p.new]
    if args.sample_out:
        rng = random.Random(args.seed)
        # The hard cases first: every moved pair, changed pairs of low similarity, renumbered pairs (where a
        # number-based alignment fails); then any other matched pair.
        moved = [x for x in pairs if x[1].status == "moved"]
        low = [x for x in pairs if x[1].status == "changed" and x[1].similarity < 0.8]
        renumbered = [x for x in pairs if x[1].renumbered and x not in moved and x not in low]
        rest = [x for x in pairs if x not in moved and x not in low and x not in renumbered]
        quota = args.sample // 4
        take = moved[:quota] + rng.sample(low, min(len(low), quota))
        take += rng.sample(renumbered, min(len(renumbered), quota))
        take += rng.sample(rest, min(len(rest), args.sample - len(take)))
        with args.sample_out.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t")
            w.writerow(FIELDS_PAIRS)
            for name, p in take:
                assert p.old and p.new
                w.writerow(
                    [
                        name,
                        p.status,
                        p.old.label,
                        p.new.label,
                        f"{p.similarity:.3f}",
                        " ".join(p.old.text.split()),
                        " ".join(p.new.text.split()),
                        "",
                        "",
                    ]
                )
    if args.judged:
        figures["alignment_precision"] = _precision(args.judged)
    return figures


def _precision(path: Path) -> dict[str, object]:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if "older" in rows[0]:  # cited-by samples: the current citations and the older ones scored apart
        return {
            kind: _score([r for r in rows if r["older"] == flag]) for kind, flag in (("current", "0"), ("older", "1"))
        }
    return _score(rows)


def _score(rows: list[dict[str, str]]) -> dict[str, object]:
    judged = [r for r in rows if r["verdict"] in ("ok", "wrong")]
    ok = sum(r["verdict"] == "ok" for r in judged)
    return {"judged": len(judged), "ok": ok, "precision": round(ok / len(judged), 3) if judged else None}


def _table(index: Path, tmp: Path) -> tuple[CitedByTable, float]:
    """The index's cited-by table, or one written now from its store (seconds it took)."""
    gen = current_generation(index)
    manifest = Manifest.from_dict(read_manifest(gen))
    if manifest.cited_by:
        return CitedByTable(gen / str(manifest.cited_by["file"])), 0.0
    store = open_store(gen, manifest)
    t0 = time.perf_counter()
    docs = {d.doc_id: d for d in store.doc_table()}
    write_citedby(tmp / CITEDBY_FILE, store, Resolver(docs, store), [], None, {})
    return CitedByTable(tmp / CITEDBY_FILE), time.perf_counter() - t0


class _WithTable(Searcher):
    """A searcher answering `citing` from a table given to it (for an index built before the table existed)."""

    def __init__(self, index: Path, table: CitedByTable) -> None:
        super().__init__(index)
        self.table = table

    def citing(self, doc_id: str, article_no: int, sub: int | None = None, paragraph: int | None = None) -> list:  # type: ignore[override]
        return self.table.citing(doc_id, article_no, sub, paragraph)


def citedby(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        table, built = _table(args.index, Path(tmp))
        searcher = _WithTable(args.index, table)
        laws = Laws(searcher.documents())
        counts: dict[str, object] = {}
        calls = []
        for text in WELL_KNOWN:
            try:
                t0 = time.perf_counter()
                result = cited_by(searcher, text, laws=laws)
                calls.append((time.perf_counter() - t0) * 1000)
            except KbError as exc:
                counts[text] = f"error: {exc}"
                continue
            passages = [p for _, ps in result.groups for p in ps]
            counts[text] = {
                "version": result.version.doc_id,
                "passages": result.count,
                "of_earlier_versions": sum(p.via is not None for p in passages),
                "by_level": {lv: len(ps) for lv, ps in result.groups},
            }
        times = []
        for text in WELL_KNOWN * 5:
            place = parse_citation(text)
            assert place and place.law
            docs = laws.documents(place.law)
            t0 = time.perf_counter()
            for v in docs:
                table.citing(v.doc_id, place.article_no)
            times.append((time.perf_counter() - t0) * 1000)
        figures: dict[str, object] = {
            "table_seconds": round(built, 1),
            "counts": counts,
            # the table lookup alone, and the whole library call (finding the article, aligning earlier versions)
            "lookup_ms": {"median": round(statistics.median(times), 2), "max": round(max(times), 2)},
            "cited_by_call_ms": {"median": round(statistics.median(calls), 1), "max": round(max(calls), 1)},
        }
        if args.sample_out:
            _citing_sample(table, laws, args)
        if args.judged:
            figures["citing_precision"] = _precision(args.judged)
    return figures


def _citing_sample(table: CitedByTable, laws: Laws, args: argparse.Namespace) -> None:
    """args.sample resolved references drawn at random from the whole table, to judge by hand, and half as many
    of those made before the version they resolve to (marked older: judged and scored apart)."""
    import sqlite3

    db = sqlite3.connect(f"file:{table.path}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT older, target_doc, article_no, sub, paragraph, citing_doc, citing_article, text, context, "
        "citing_chunk FROM refs WHERE target_doc IS NOT NULL ORDER BY rowid"
    ).fetchall()
    db.close()
    rng = random.Random(args.seed)
    current = [r for r in rows if not r[0]]
    older = [r for r in rows if r[0]]
    take = rng.sample(current, min(args.sample, len(current))) + rng.sample(older, min(args.sample // 2, len(older)))
    with args.sample_out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(FIELDS_CITES)
        for old, target, article, sub, paragraph, citing, citing_article, text, context, chunk_id in take:
            version = laws.rows.get(target)
            cited = Place(
                cited_title(version.title) if version else target, article, sub, (paragraph,) if paragraph else ()
            ).citation()
            title = laws.rows[citing].title if citing in laws.rows else citing
            w.writerow(
                [
                    old,
                    f"{cited} ({version.year if version else '?'})",
                    book_title(title) + (citing_article or ""),
                    text,
                    " ".join(context.split()),
                    chunk_id,
                    "",
                    "",
                ]
            )


def pinpoints(args: argparse.Namespace) -> dict[str, object]:
    """Every part of every split article: cited with its 款 when the article has several, with its 项 when a
    single 款 was split at its items; and each citation parsed back to the same place."""
    gen = current_generation(args.index)
    store = open_store(gen, Manifest.from_dict(read_manifest(gen)))
    counts = {
        "parts": 0,
        "multi_paragraph_parts": 0,
        "cited_with_paragraph": 0,
        "single_paragraph_parts": 0,
        "cited_with_items": 0,
        "sentence_split_no_pinpoint": 0,
        "parsed_back": 0,
        "cited": 0,
    }
    misses: list[str] = []
    for doc_id in store.entries:
        by_article: dict[str, list] = {}
        for c in store.doc_chunks(doc_id):
            if c.article and c.parts > 1:
                by_article.setdefault(c.article, []).append(c)
        for parts in by_article.values():
            paragraphs = sum(len(paragraph_starts(p.text, p.part > 0)) for p in parts)
            for c in parts:
                counts["parts"] += 1
                place = pinpoint(c, parts)
                if paragraphs > 1:
                    counts["multi_paragraph_parts"] += 1
                    if place is not None and place.paragraphs:
                        counts["cited_with_paragraph"] += 1
                    elif len(misses) < 5:
                        misses.append(c.chunk_id)
                else:
                    counts["single_paragraph_parts"] += 1
                    if place is not None and place.items:
                        counts["cited_with_items"] += 1
                    else:
                        counts["sentence_split_no_pinpoint"] += 1
                if place is not None:
                    counts["cited"] += 1
                    counts["parsed_back"] += parse_citation(place.citation()) == place
    return {**counts, "multi_paragraph_misses": misses}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    v = sub.add_parser("versions")
    v.add_argument("--corpus", type=Path, required=True)
    v.add_argument("--law", action="append", required=True, help="NAME:FROM:TO, e.g. 公司法:2018:2023")
    c = sub.add_parser("citedby")
    c.add_argument("--index", type=Path, required=True)
    for s in (v, c):
        s.add_argument("--sample", type=int, default=60)
        s.add_argument("--sample-out", type=Path)
        s.add_argument("--judged", type=Path)
        s.add_argument("--seed", type=int, default=19)
    n = sub.add_parser("pinpoint")
    n.add_argument("--index", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        figures = {"versions": versions, "citedby": citedby, "pinpoint": pinpoints}[args.what](args)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
