"""`python -m kb build | search | quote | check | docs | eval`: thin wrappers over the library."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from kb import config
from kb.errors import KbError, QueryError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kb", description="Policy KB: cited search over policy documents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build or update the index from a corpus folder")
    b.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    b.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    b.add_argument("--model", default=config.DEFAULT_MODEL,
                   help="e5 (default), minilm, hashing, or a local sentence-transformers folder")
    b.add_argument("--xling", default=config.DEFAULT_XLING,
                   help="cross-lingual channel model ('use', default) or 'none'")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--compact", action="store_true", help="rewrite the whole index instead of appending the changes")

    s = sub.add_parser("search", help="search the index")
    s.add_argument("question", nargs="?", help="the question (omit with --batch)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    s.add_argument("--model", default=None, help="must match the model the index was built with")
    s.add_argument("--lang", choices=("zh", "en"))
    s.add_argument("--doc", action="append", dest="docs", help="restrict to this doc_id (repeatable)")
    s.add_argument("--mode", choices=("hybrid", "keyword", "semantic"), default="hybrid")
    s.add_argument("--include-repealed", action="store_true",
                   help="also rank texts marked 已废止 (repealed) or 已修改 (superseded)")
    s.add_argument("--level", action="append", dest="levels", metavar="LEVEL",
                   help="keep this level: 法律, 行政法规, 部门规章, 司法解释, 地方性法规, commentary ... (repeatable)")
    s.add_argument("--issuer", action="append", dest="issuers", metavar="NAME",
                   help="keep texts whose issuing body contains NAME (repeatable)")
    s.add_argument("--validity", action="append", metavar="STATUS",
                   help="keep texts with this status: 现行有效, 已修改, 已废止, 尚未生效 (repeatable)")
    s.add_argument("--as-of", "--valid-on", dest="as_of", metavar="DATE",
                   help="keep the texts in force on DATE (YYYY-MM-DD), whichever version that was")
    s.add_argument("--from", dest="date_from", metavar="DATE", help="keep texts dated on or after DATE")
    s.add_argument("--to", dest="date_to", metavar="DATE", help="keep texts dated on or before DATE")
    s.add_argument("--date-field", choices=("published", "effective"), default="published",
                   help="which date --from/--to compare (default: published)")
    _tuned_option(s)
    s.add_argument("--json", action="store_true", help="print a JSON list, best first")
    s.add_argument("--batch", type=Path, help="one question per line; prints one JSON list per line")

    q = sub.add_parser("quote", help="check a quote: verbatim, normalised, with omissions, altered, or not found")
    q.add_argument("text", nargs="?", help="the quoted text (omit with --batch)")
    q.add_argument("-k", type=int, default=5, help="locations to list")
    q.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    q.add_argument("--json", action="store_true", help="print a JSON object")
    q.add_argument("--batch", type=Path, help="one quote per line; prints one JSON object per line, in order")

    c = sub.add_parser("check", help="verify the index matches the corpus (hashes, chunks, a sample of vectors)")
    c.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    c.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    c.add_argument("--sample", type=int, default=16, help="passages to re-embed and compare (0: skip)")
    c.add_argument("--quick", action="store_true", help="compare source hashes only (what the app's start-up runs)")

    d = sub.add_parser("docs", help="list indexed documents with their metadata")
    d.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    d.add_argument("--json", action="store_true", help="print a JSON list with metadata and in-force dates")
    d.add_argument("--facets", action="store_true", help="print the levels, issuers, statuses and date ranges")
    # --backend milvus: the same commands against a milvus-lite file or a Milvus server (kb.backends).
    for command in (b, s, d):
        _backend_options(command, fusion=command is s)
    b.add_argument("--part", metavar="I/N", help="milvus: write only worker I's share of N workers (see docs/MILVUS.md)")

    e = sub.add_parser("eval", help="run a benchmark: scifact or stard")
    e.add_argument("benchmark", choices=("scifact", "stard"))
    _backend_options(e, fusion=True)
    e.add_argument("--limit", type=int, default=None, help="first N queries only")
    e.add_argument("--index", type=Path, default=None, help="index folder to (re)use; built if missing")
    e.add_argument("--corpus", type=Path, default=None, help="STARD: corpus folder (default corpus/lawrefbook-national)")
    e.add_argument("--model", default=config.DEFAULT_MODEL)
    e.add_argument("--mode", choices=("hybrid", "keyword", "semantic"), default="hybrid")
    _tuned_option(e)
    e.add_argument("--json", action="store_true")

    m = sub.add_parser("bench", help="speed, size and memory figures for a corpus and its index (docs/BENCHMARKS.md)")
    m.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    m.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    m.add_argument("--model", default=config.DEFAULT_MODEL)
    m.add_argument("--xling", default="none", help="cross-lingual channel for the build ('none' by default)")
    m.add_argument("--queries", type=int, default=200, help="STARD train questions in the query set (plus 20 English)")
    m.add_argument("--sample", type=int, default=512, help="passages for the encoder throughput phase")
    m.add_argument("--skip", action="append", default=[],
                   choices=("ingest", "encoder", "build", "serve", "ann", "update"), help="leave a phase out")
    m.add_argument("--out", type=Path, help="also write the JSON figures here")
    return p


def _tuned_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--tuned", choices=("on", "off"), default=None,
                         help="question tower trained on legal questions for Chinese questions (kb.qtower; default "
                              "on, KB_TUNED=0 turns it off); off: the packaged e5 alone")


def _on(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _backend_options(command: argparse.ArgumentParser, fusion: bool) -> None:
    command.add_argument("--backend", choices=("faiss", "milvus"), default=os.environ.get("KB_BACKEND", "faiss"),
                         help="faiss: the index folder (default); milvus: a Milvus collection at --uri")
    command.add_argument("--uri", help="milvus: a milvus-lite file (kb.db) or a server URL (http://host:19530)")
    command.add_argument("--collection", help="milvus: base name of the collections (default policy_kb)")
    if fusion:
        command.add_argument("--fusion", choices=("client", "milvus"), default=None,
                             help="milvus: weighted RRF here (client, default) or Milvus's hybrid_search RRF")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return {"build": _build, "search": _search, "quote": _quote, "check": _check, "docs": _docs,
                "eval": _eval, "bench": _bench}[args.command](args)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) stopped early: not an error, and no traceback at interpreter exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_embedders(model: str, xling: str | None) -> dict:
    """Channel -> embedder for a build: 'dense' from --model, 'xling' from --xling unless 'none'."""
    from kb.embed import load_embedder

    embedders = {"dense": load_embedder(model)}
    if xling and xling != "none" and not model.startswith("hashing"):
        embedders["xling"] = load_embedder(xling)
    return embedders


def _build(args: argparse.Namespace) -> int:
    if args.backend == "milvus" or args.part:
        return _build_milvus(args)
    from tqdm import tqdm

    from kb.index import build

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="file" if stage == "read" else "passage",
                                     file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
        bar.total = total
        bar.update(done - bar.n)  # update() keeps tqdm's rate estimate, and so the ETA, honest

    report = build(args.corpus, args.index, build_embedders(args.model, args.xling), progress, compact=args.compact)
    for bar in bars.values():
        bar.close()
    print(f"indexed {len(report.indexed)} files, reused {len(report.reused)} unchanged, "
          f"skipped {len(report.skipped)}, removed {len(report.removed)}; {report.chunks} passages, "
          f"{report.embedded} embedded, {report.seconds:.1f}s -> {args.index}/{report.generation}"
          f"{' (compacted)' if report.compacted else ''}")
    print("stages: " + ", ".join(f"{stage} {secs:.1f}s" for stage, secs in report.stages.items()))
    for doc_id, reason in sorted(report.skipped.items()):
        print(f"  skipped {doc_id}: {reason}")
    for doc_id in report.removed:
        print(f"  removed {doc_id}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from kb.cite import mark

    if bool(args.question) == bool(args.batch):
        print("error: give a question or --batch FILE (not both)", file=sys.stderr)
        return 2
    searcher = _open(args, model=args.model, tuned=_on(args.tuned))
    filters = {"lang": args.lang, "docs": args.docs, "mode": args.mode, "include_repealed": args.include_repealed,
               "levels": args.levels, "issuers": args.issuers, "validity": args.validity, "as_of": args.as_of,
               "date_from": args.date_from, "date_to": args.date_to, "date_field": args.date_field}
    if args.batch:
        lines = _batch_lines(args.batch)
        if lines is None:
            return 2
        failed = 0
        for n, line in enumerate(lines, start=1):
            try:
                hits = searcher.search(line, args.k, **filters) if line.strip() else []
            except QueryError as exc:  # one bad line must not cost the answers to the others, or their order
                print(f"line {n}: {exc}", file=sys.stderr)
                hits, failed = [], failed + 1
            print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False), flush=True)
        return 1 if failed else 0
    hits = searcher.search(args.question, args.k, **filters)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return 0
    narrowed = [f for f, v in (("--lang", args.lang), ("--doc", args.docs), ("--level", args.levels),
                               ("--issuer", args.issuers), ("--validity", args.validity), ("--as-of", args.as_of),
                               ("--from", args.date_from), ("--to", args.date_to)) if v]
    if not hits:
        print("no results" + (f" (try without {'/'.join(narrowed)})" if narrowed else ""))
    for h in hits:
        text = " ".join(mark(h.chunk.text, h.highlights).split())
        print(f"{h.rank:>2}. {h.citation}  [{h.chunk.doc_id}]  score {h.score:.4f}")
        if h.meta.validity in config.HIDDEN_VALIDITY or h.meta.validity == "尚未生效":
            print(f"    ({h.meta.validity})")
        print(f"    {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


def _batch_lines(path: Path) -> list[str] | None:
    """The lines of a --batch file, or None after saying on stderr why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return None


def _quote(args: argparse.Namespace) -> int:
    from kb.quote import QuoteChecker
    from kb.quotediff import render

    if bool(args.text) == bool(args.batch):
        print("error: give a quote or --batch FILE (not both)", file=sys.stderr)
        return 2
    checker = QuoteChecker(args.index)
    if args.batch:
        lines = _batch_lines(args.batch)
        if lines is None:
            return 2
        for line in lines:
            # A blank line keeps its place in the output, so line n of the answers is quote n.
            out = checker.check(line, args.k).to_dict() if line.strip() else {"quote": "", "verdict": None}
            print(json.dumps(out, ensure_ascii=False), flush=True)
        return 0
    report = checker.check(args.text, args.k)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(report.label.upper() + (f" ({report.note})" if report.note else ""))
    for n, m in enumerate(report.matches, start=1):
        sim = "" if m.similarity is None else f", similarity {m.similarity:.2f}"
        print(f"{n:>2}. {m.label}: {m.citation}  [{m.doc_id}]  chars {m.char_start}-{m.char_end}{sim}")
        if m.also_in:
            print(f"    also in {len(m.also_in)} more: {', '.join(m.also_in[:3])}{' …' if len(m.also_in) > 3 else ''}")
        shown = render(m.diff) if m.kind in ("altered", "omissions") else _marked(m.context, m.char_start - m.context_start,
                                                                   m.char_end - m.context_start)
        print(f"    {' '.join(shown.split())[:400]}")
    return 0


def _marked(text: str, start: int, end: int) -> str:
    start, end = max(0, start), min(len(text), end)
    return f"{text[:start]}**{text[start:end]}**{text[end:]}"


def _check(args: argparse.Namespace) -> int:
    from kb.verify import verify

    problems = verify(args.corpus, args.index, sample=args.sample, quick=args.quick)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"index {args.index} does not match {args.corpus}: rebuild with "
              f"`python -m kb build --corpus {args.corpus} --index {args.index}`", file=sys.stderr)
        return 1
    print(f"index {args.index} matches corpus {args.corpus}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    searcher = _open(args)
    if args.facets:
        print(json.dumps(searcher.facets().to_dict(), ensure_ascii=False, indent=1))
        return 0
    docs = searcher.documents()
    if args.json:
        print(json.dumps(docs, ensure_ascii=False, indent=1))
        return 0
    for d in docs:
        meta = d["meta"]
        print("\t".join(str(x or "") for x in (d["doc_id"], d["lang"], d["chunks"], meta.get("level"),
                                              meta.get("validity"), meta.get("published"), d["title"])))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from kb.evaluate import run

    result = run(args.benchmark, limit=args.limit, index=args.index, corpus=args.corpus, model=args.model,
                 mode=args.mode, backend=args.backend, uri=args.uri, collection=args.collection, fusion=args.fusion,
                 tuned=_on(args.tuned))
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else
          "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from kb.bench import run

    result = run(args.corpus, args.index, n_stard=args.queries, model=args.model, xling=args.xling,
                 sample=args.sample, skip=tuple(args.skip))
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


# --- Milvus backend (kb.backends, kb.milvus_*) ---

def _open(args: argparse.Namespace, model: str | None = None,  # noqa: ANN202 - Searcher or MilvusSearcher
          tuned: bool | None = None):
    from kb.backends import open_searcher

    return open_searcher(args.backend, args.index, args.uri, args.collection, model=model,
                         fusion=getattr(args, "fusion", None), tuned=tuned)


def _build_milvus(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kb.backends import build_index, parse_part

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, file=sys.stderr,
                                                             unit="file" if stage == "read" else "passage"))
        bar.total = total
        bar.update(done - bar.n)

    report = build_index(args.backend, args.corpus, build_embedders(args.model, args.xling), uri=args.uri,
                         collection=args.collection, progress=progress, part=parse_part(args.part))
    for bar in bars.values():
        bar.close()
    print(f"indexed {len(report.indexed)} files, reused {len(report.reused)} unchanged, "
          f"skipped {len(report.skipped)}, removed {len(report.removed)}; {report.chunks} passages in the "
          f"collection, {report.embedded} embedded, {report.seconds:.1f}s -> {args.uri} ({report.generation})")
    for doc_id, reason in sorted(report.skipped.items()):
        print(f"  skipped {doc_id}: {reason}")
    for doc_id in report.removed:
        print(f"  removed {doc_id}")
    return 0
