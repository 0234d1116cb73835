"""The CLI's commands: each takes the parsed arguments, prints, and returns the exit status (kb.cli parses)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from kb import config
from kb.errors import QueryError
from kb.index.report import BuildReport
from kb.search.contract import Backend, SearchOptions
from kb.serve.shapes import (  # one JSON shape for CLI and API
    BoxJSON,
    documents_json,
    facets_json,
    hits_json,
    quote_json,
)

if TYPE_CHECKING:
    from kb.chunk import Chunk
    from kb.ingest.boxes import Box


def build(args: argparse.Namespace) -> int:
    if args.backend == "milvus" or args.part:
        return _build_milvus(args)
    from tqdm import tqdm

    from kb.embed.models import build_embedders
    from kb.index.build import build

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total,
                desc=stage,
                unit="file" if stage == "read" else "passage",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=1.0,
            )
        bar.total = total
        bar.update(done - bar.n)  # update() keeps tqdm's rate estimate, and so the ETA, honest

    report = build(args.corpus, args.index, build_embedders(args.model, args.xling), progress, compact=args.compact)
    for bar in bars.values():
        bar.close()
    print(
        f"indexed {len(report.indexed)} files, reused {len(report.reused)} unchanged, "
        f"skipped {len(report.skipped)}, removed {len(report.removed)}; {report.chunks} passages, "
        f"{report.embedded} embedded, {report.seconds:.1f}s -> {args.index}/{report.generation}"
        f"{' (compacted)' if report.compacted else ''}"
    )
    print("stages: " + ", ".join(f"{stage} {secs:.1f}s" for stage, secs in report.stages.items()))
    _print_skipped(report)
    return 0


def _print_skipped(report: BuildReport) -> None:
    """One line per skipped or removed file; control characters in names escaped (kb.ingest.guard.printable)."""
    from kb.ingest.guard import printable

    for doc_id, reason in sorted(report.skipped.items()):
        print(f"  skipped {printable(doc_id)}: {printable(reason)}")
    for doc_id in report.removed:
        print(f"  removed {printable(doc_id)}")


def search(args: argparse.Namespace) -> int:
    from kb.cite import snippet
    from kb.ingest.guard import printable

    if bool(args.question) == bool(args.batch):
        print("error: give a question or --batch FILE (not both)", file=sys.stderr)
        return 2
    searcher = _open(args, model=args.model)
    filters = search_options(args)
    if args.batch:
        return _batch(args.batch, lambda q: hits_json(searcher.search(q, args.k, **filters)), lambda _: [])
    hits = searcher.search(_arg_text(args.question), args.k, **filters)
    if args.json:
        rows = hits_json(hits)
        if args.boxes:
            for row, hit in zip(rows, hits, strict=True):
                row["boxes"] = [
                    cast(BoxJSON, b.to_dict()) for b in _passage_boxes(searcher, hit.chunk.doc_id, hit.chunk)
                ]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    if args.format:
        from kb.present.references import export
        from kb.research.works import work_of_hit

        print(export([work_of_hit(h) for h in hits], args.format), end="")
        return 0
    narrowed = [
        f
        for f, v in (
            ("--lang", args.lang),
            ("--doc", args.docs),
            ("--level", args.levels),
            ("--issuer", args.issuers),
            ("--validity", args.validity),
            ("--as-of", args.as_of),
            ("--from", args.date_from),
            ("--to", args.date_to),
        )
        if v
    ]
    if not hits:
        print("no results" + (f" (try without {'/'.join(narrowed)})" if narrowed else ""))
    for h in hits:
        print(f"{h.rank:>2}. {printable(h.citation)}  [{printable(h.chunk.doc_id)}]  score {h.score:.4f}")
        if h.meta.validity in config.HIDDEN_VALIDITY or h.meta.validity == "尚未生效":
            print(f"    ({h.meta.validity})")
        print(f"    {snippet(h.chunk.text, h.highlights)}")
    return 0


def _batch_lines(path: Path) -> list[str] | None:
    """The lines of a --batch file (undecodable bytes as U+FFFD, so every line gets its answer), or None after
    saying on stderr why it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return None


def _batch(path: Path, answer: Callable[[str], object], empty: Callable[[str | None], object]) -> int:
    """One JSON line per line of a --batch file, in order, so line n of the answers is line n of the file: a
    blank line gets empty(None); a line the library refuses gets empty(its reason), and the reason goes to stderr
    (one bad line must not cost the answers to the others). Exit status 1 when any line was refused."""
    lines = _batch_lines(path)
    if lines is None:
        return 2
    failed = 0
    for n, line in enumerate(lines, start=1):
        try:
            out = answer(line) if line.strip() else empty(None)
        except QueryError as exc:
            print(f"line {n}: {exc}", file=sys.stderr)
            out, failed = empty(str(exc)), failed + 1
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _arg_text(text: str) -> str:
    """A command-line argument as text: bytes the locale could not decode (lone surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def quote(args: argparse.Namespace) -> int:
    from kb.ingest.guard import printable
    from kb.quote.check import QuoteChecker
    from kb.quote.diff import render

    if bool(args.text) == bool(args.batch):
        print("error: give a quote or --batch FILE (not both)", file=sys.stderr)
        return 2
    checker = QuoteChecker(args.index)
    if args.batch:
        return _batch(
            args.batch,
            lambda q: quote_json(checker.check(q, args.k)),
            lambda error: {"quote": "", "verdict": None, **({"error": error} if error else {})},
        )
    report = checker.check(_arg_text(args.text), args.k)
    if args.json:
        print(json.dumps(quote_json(report), ensure_ascii=False, indent=1))
        return 0
    print(report.label.upper() + (f" ({report.note})" if report.note else ""))
    for n, m in enumerate(report.matches, start=1):
        sim = "" if m.similarity is None else f", similarity {m.similarity:.2f}"
        print(
            f"{n:>2}. {m.label}: {printable(m.citation)}  [{printable(m.doc_id)}]  "
            f"chars {m.char_start}-{m.char_end}{sim}"
        )
        if m.also_in:
            print(f"    also in {len(m.also_in)} more: {', '.join(m.also_in[:3])}{' …' if len(m.also_in) > 3 else ''}")
        shown = (
            render(m.diff)
            if m.kind in ("altered", "omissions")
            else _marked(m.context, m.char_start - m.context_start, m.char_end - m.context_start)
        )
        print(f"    {' '.join(shown.split())[:400]}")
    return 0


def _marked(text: str, start: int, end: int) -> str:
    start, end = max(0, start), min(len(text), end)
    return f"{text[:start]}**{text[start:end]}**{text[end:]}"


def check(args: argparse.Namespace) -> int:
    from kb.index.verify import verify

    problems = verify(args.corpus, args.index, sample=args.sample, quick=args.quick)
    from kb.ingest.guard import printable

    for line in problems:
        print(printable(line), file=sys.stderr)
    if problems:
        print(
            f"index {args.index} does not match {args.corpus}: rebuild with "
            f"`python -m kb build --corpus {args.corpus} --index {args.index}`",
            file=sys.stderr,
        )
        return 1
    print(f"index {args.index} matches corpus {args.corpus}")
    return 0


def docs(args: argparse.Namespace) -> int:
    searcher = _open(args)
    if args.facets:
        print(json.dumps(facets_json(searcher.facets()), ensure_ascii=False, indent=1))
        return 0
    docs = documents_json(searcher.documents())
    if args.json:
        print(json.dumps(docs, ensure_ascii=False, indent=1))
        return 0
    from kb.ingest.guard import printable

    # A header row, so the TSV reads on its own; the date is the publication date, else the date in force.
    print("\t".join(DOCS_COLUMNS))
    for d in docs:
        meta = d["meta"]
        # A tab or newline in a file name or title is escaped too: one document, one row of the TSV.
        print(
            "\t".join(
                printable(str(x or ""))
                for x in (
                    d["doc_id"],
                    d["lang"],
                    d["chunks"],
                    meta.get("level"),
                    meta.get("issuer"),
                    meta.get("validity"),
                    meta.get("published") or meta.get("effective"),
                    d["title"],
                )
            )
        )
    return 0


DOCS_COLUMNS = ("doc_id", "lang", "passages", "level", "issuer", "validity", "date", "title")


def evaluate(args: argparse.Namespace) -> int:
    from kb.bench.evaluate import run

    result = run(
        args.benchmark,
        limit=args.limit,
        index=args.index,
        corpus=args.corpus,
        model=args.model,
        mode=args.mode,
        backend=args.backend,
        uri=args.uri,
        collection=args.collection,
        fusion=args.fusion,
        tuned=tuned_flag(args),
        rerank=rerank_flag(args),
    )
    print(
        json.dumps(result, ensure_ascii=False, indent=1)
        if args.json
        else "\n".join(f"{k}: {v}" for k, v in result.items())
    )
    return 0


def bench(args: argparse.Namespace) -> int:
    from kb.bench.speed import run

    result = run(
        args.corpus,
        args.index,
        n_stard=args.queries,
        model=args.model,
        xling=args.xling,
        sample=args.sample,
        skip=tuple(args.skip),
    )
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


# --- HTTP API and MCP server (kb.serve) ---


def serve(args: argparse.Namespace) -> int:
    from kb.index.generations import current_generation
    from kb.serve.run import options
    from kb.serve.run import serve as run

    opts = options(args.index, args.host, args.port, args.workers, args.threads)
    current_generation(opts.index)  # a missing index is one line, before anything says "serving"
    print(
        f"serving {opts.index} on http://{opts.host}:{opts.port} ({opts.workers} workers x {opts.threads} "
        "threads; API docs at /docs, MCP at /mcp)",
        flush=True,
    )
    run(opts)
    return 0


def mcp(args: argparse.Namespace) -> int:
    from kb.serve.run import options, serve_mcp_stdio

    serve_mcp_stdio(options(args.index).index)
    return 0


# --- Milvus backend (kb.backends, kb.milvus) ---


def _open(args: argparse.Namespace, model: str | None = None) -> Backend:
    from kb.backends import open_searcher

    return open_searcher(
        args.backend,
        args.index,
        args.uri,
        args.collection,
        model=model,
        fusion=getattr(args, "fusion", None),
        tuned=tuned_flag(args),
        rerank=rerank_flag(args),
    )


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search options the command line gave (kb.search.contract.SearchOptions: the flags' dest names are the
    options' names); --tuned and --rerank open the searcher instead (`_open`)."""
    names = set(SearchOptions.__annotations__) - {"tuned", "rerank"}
    return cast(SearchOptions, {name: getattr(args, name) for name in names if hasattr(args, name)})


def tuned_flag(args: argparse.Namespace) -> bool | None:
    """--tuned on|off as a bool; None (not given): config.TUNED decides."""
    value = getattr(args, "tuned", None)
    return None if value is None else value == "on"


def rerank_flag(args: argparse.Namespace) -> bool | None:
    """--rerank on|off as a bool; None (not given): config.RERANK decides."""
    value = getattr(args, "rerank", None)
    return None if value is None else value == "on"


def _build_milvus(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kb.backends import build_index, parse_part
    from kb.embed.models import build_embedders

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        bar = bars.get(stage) or bars.setdefault(
            stage, tqdm(total=total, desc=stage, file=sys.stderr, unit="file" if stage == "read" else "passage")
        )
        bar.total = total
        bar.update(done - bar.n)

    report = build_index(
        args.backend,
        args.corpus,
        build_embedders(args.model, args.xling),
        uri=args.uri,
        collection=args.collection,
        progress=progress,
        part=parse_part(args.part),
    )
    for bar in bars.values():
        bar.close()
    print(
        f"indexed {len(report.indexed)} files, reused {len(report.reused)} unchanged, "
        f"skipped {len(report.skipped)}, removed {len(report.removed)}; {report.chunks} passages in the "
        f"collection, {report.embedded} embedded, {report.seconds:.1f}s -> {args.uri} ({report.generation})"
    )
    _print_skipped(report)
    return 0


# --- the page with the passage marked (issue 20) ---


def boxes(args: argparse.Namespace) -> int:
    """Print where a passage (or a character range) of a PDF or scanned image lies on its pages."""
    from kb.chunk import Chunk
    from kb.ingest.scans import passage_source

    searcher = _open(args)
    doc, chunks = searcher.source(args.doc_id)
    if args.passage is not None:
        if not 1 <= args.passage <= len(chunks):
            print(f"error: {args.doc_id} has passages 1 to {len(chunks)}, not {args.passage}", file=sys.stderr)
            return 2
        chunk: Chunk | tuple[int, int] = chunks[args.passage - 1]
    else:
        start, _, end = str(args.chars).partition(":")
        if not (start.isdigit() and end.isdigit() and int(start) < int(end) <= len(doc.text)):
            print(f"error: --chars {args.chars}: give START:END within 0:{len(doc.text)}", file=sys.stderr)
            return 2
        chunk = (int(start), int(end))
    found = _passage_boxes(searcher, doc.doc_id, chunk)
    span = (chunk.char_start, chunk.char_end) if isinstance(chunk, Chunk) else chunk
    pages = sorted({b.page for b in found})
    source = passage_source(dict(doc.meta.extra), pages[0], pages[-1]) if pages else None
    if args.json:
        out = {"doc_id": doc.doc_id, "char_start": span[0], "char_end": span[1], "source": source}
        print(json.dumps({**out, "boxes": [b.to_dict() for b in found]}, ensure_ascii=False, indent=1))
        return 0
    if not found:
        print(f"{doc.doc_id} [{span[0]}:{span[1]}]: no boxes (not a PDF or image, or its file has moved)")
    for b in found:
        print(f"p.{b.page}  {b.x0:7.1f} {b.y0:7.1f} {b.x1:7.1f} {b.y1:7.1f}")
    return 0


def _passage_boxes(searcher: Backend, doc_id: str, where: Chunk | tuple[int, int]) -> list[Box]:
    """The boxes of a Chunk or a (start, end) range of a document, by kb.ingest.boxes."""
    from kb.chunk import Chunk
    from kb.ingest.boxes import passage_boxes

    doc, _ = searcher.source(doc_id)
    start, end = (where.char_start, where.char_end) if isinstance(where, Chunk) else where
    return passage_boxes(doc, start, end)
