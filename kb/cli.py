"""`python -m kb build | search | quote | check | docs | eval | bench | diff | cites | export | serve | mcp`: the parser and exit codes (kb.commands runs them)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kb import commands, commands_research, config
from kb.errors import KbError
from kb.present.references import FORMATS as REFERENCE_FORMATS

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kb", description="Policy KB: cited search over policy documents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build or update the index from a corpus folder")
    b.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    b.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    b.add_argument(
        "--model",
        default=config.DEFAULT_MODEL,
        help="e5 (default), minilm, hashing, or a local sentence-transformers folder",
    )
    b.add_argument(
        "--xling", default=config.DEFAULT_XLING, help="cross-lingual channel model ('use', default) or 'none'"
    )
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
    s.add_argument(
        "--include-repealed",
        action="store_true",
        help="also rank texts marked 已废止 (repealed) or 已修改 (superseded)",
    )
    s.add_argument(
        "--level",
        action="append",
        dest="levels",
        metavar="LEVEL",
        help="keep this level: 法律, 行政法规, 部门规章, 司法解释, 地方性法规, commentary ... (repeatable)",
    )
    s.add_argument(
        "--issuer",
        action="append",
        dest="issuers",
        metavar="NAME",
        help="keep texts whose issuing body contains NAME (repeatable)",
    )
    s.add_argument(
        "--validity",
        action="append",
        metavar="STATUS",
        help="keep texts with this status: 现行有效, 已修改, 已废止, 尚未生效 (repeatable)",
    )
    s.add_argument(
        "--as-of",
        "--valid-on",
        dest="as_of",
        metavar="DATE",
        help="keep the texts in force on DATE (YYYY-MM-DD), whichever version that was",
    )
    s.add_argument("--from", dest="date_from", metavar="DATE", help="keep texts dated on or after DATE")
    s.add_argument("--to", dest="date_to", metavar="DATE", help="keep texts dated on or before DATE")
    s.add_argument(
        "--date-field",
        choices=("published", "effective"),
        default="published",
        help="which date --from/--to compare (default: published)",
    )
    _tuned_option(s)
    _rerank_option(s)
    s.add_argument("--json", action="store_true", help="print a JSON list, best first")
    s.add_argument("--format", choices=REFERENCE_FORMATS, help="print the hits as references (GB/T 7714, BibTeX, ...)")
    s.add_argument("--batch", type=Path, help="one question per line; prints one JSON list per line")
    s.add_argument("--boxes", action="store_true", help="with --json: each PDF passage's boxes on its pages")

    # The page with the passage marked (issue 20): where a passage or character range lies on its pages.
    x = sub.add_parser("boxes", help="a PDF passage's boxes on its pages (page, x0, y0, x1, y1 in PDF points)")
    x.add_argument("doc_id", help="document id, as `docs` lists it")
    where = x.add_mutually_exclusive_group(required=True)
    where.add_argument("--passage", type=int, metavar="N", help="passage number in the document, from 1")
    where.add_argument("--chars", metavar="START:END", help="a character range of the document's text")
    x.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    x.add_argument("--json", action="store_true", help="print a JSON object")

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
    for command in (b, s, d, x):
        _backend_options(command, fusion=command is s)
    b.add_argument(
        "--part", metavar="I/N", help="milvus: write only worker I's share of N workers (see docs/MILVUS.md)"
    )

    e = sub.add_parser("eval", help="run a benchmark: scifact or stard")
    e.add_argument("benchmark", choices=("scifact", "stard"))
    _backend_options(e, fusion=True)
    e.add_argument("--limit", type=int, default=None, help="first N queries only")
    e.add_argument("--index", type=Path, default=None, help="index folder to (re)use; built if missing")
    e.add_argument(
        "--corpus", type=Path, default=None, help="STARD: corpus folder (default corpus/lawrefbook-national)"
    )
    e.add_argument("--model", default=config.DEFAULT_MODEL)
    e.add_argument("--mode", choices=("hybrid", "keyword", "semantic"), default="hybrid")
    _tuned_option(e)
    _rerank_option(e)
    e.add_argument("--json", action="store_true")

    # --- HTTP API and MCP server (kb.serve) ---
    v = sub.add_parser("serve", help="HTTP API (and MCP over streamable HTTP at /mcp) over an index")
    v.add_argument("--index", type=Path, default=None, help="index folder (default: KB_INDEX or index/)")
    v.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; KB_SERVE_HOST)")
    v.add_argument("--port", type=int, default=None, help="port (default 8000; KB_SERVE_PORT)")
    v.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    v.add_argument("--threads", type=int, default=None, help="searches per worker at once (default 4)")
    mc = sub.add_parser("mcp", help="MCP server over stdio for an LLM client (tools: search, get_article, ...)")
    mc.add_argument("--index", type=Path, default=None, help="index folder (default: KB_INDEX or index/)")

    m = sub.add_parser("bench", help="speed, size and memory figures for a corpus and its index (docs/BENCHMARKS.md)")
    m.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    m.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    m.add_argument("--model", default=config.DEFAULT_MODEL)
    m.add_argument(
        "--xling",
        default=config.DEFAULT_XLING,
        help="cross-lingual channel for the build (default: as `kb build`, 'use'; 'none' for e5 only)",
    )
    m.add_argument("--queries", type=int, default=200, help="STARD train questions in the query set (plus 20 English)")
    m.add_argument("--sample", type=int, default=512, help="passages for the encoder throughput phase")
    m.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("ingest", "encoder", "build", "serve", "ann", "update"),
        help="leave a phase out",
    )
    m.add_argument("--out", type=Path, help="also write the JSON figures here")
    commands_research.add_parsers(sub, config.DEFAULT_INDEX)
    return p


def _tuned_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--tuned",
        choices=("on", "off"),
        default=None,
        help="questions through the question tower trained on legal questions (kb.embed.tower; default "
        "on, KB_TUNED=0 turns it off); off: the packaged e5 alone",
    )


def _rerank_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--rerank",
        choices=("on", "off"),
        default=None,
        help="re-order the first fused passages with the trained reranker (kb.search.rerank; default on, "
        "KB_RERANK=0 turns it off); off: the fused order",
    )


def _backend_options(command: argparse.ArgumentParser, fusion: bool) -> None:
    command.add_argument(
        "--backend",
        choices=("faiss", "milvus"),
        default=config.env("KB_BACKEND") or "faiss",
        help="faiss: the index folder (default); milvus: a Milvus collection at --uri",
    )
    command.add_argument("--uri", help="milvus: a milvus-lite file (kb.db) or a server URL (http://host:19530)")
    command.add_argument("--collection", help="milvus: base name of the collections (default policy_kb)")
    if fusion:
        command.add_argument(
            "--fusion",
            choices=("client", "milvus"),
            default=None,
            help="milvus: weighted RRF here (client, default) or Milvus's hybrid_search RRF",
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("kb.ingest.scans").setLevel(logging.INFO)  # OCR progress, one line a page
    try:
        return {
            "build": commands.build,
            "search": commands.search,
            "quote": commands.quote,
            "check": commands.check,
            "docs": commands.docs,
            "eval": commands.evaluate,
            "bench": commands.bench,
            "diff": commands_research.diff,
            "cites": commands_research.cites,
            "export": commands_research.export_refs,
            "serve": commands.serve,
            "mcp": commands.mcp,
            "boxes": commands.boxes,
        }[args.command](args)
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
