"""The research commands: `diff` (新旧对照), `cites` (法条联想) and `export` (references); kb.cli parses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kb.ingest.guard import printable
from kb.search.contract import Backend

_SHOWN = 160  # characters of an added or deleted article shown in the text output


def add_parsers(sub: argparse._SubParsersAction, index_default: Path) -> None:
    """The diff, cites and export subcommands."""
    from kb.present.references import FORMATS

    d = sub.add_parser("diff", help="compare two versions of a law article by article (新旧对照)")
    d.add_argument("law", help="the law's title, full or short: 公司法, 《中华人民共和国公司法》")
    d.add_argument(
        "--from", dest="since", metavar="YEAR", help="the older version (year or date; default: the one before --to)"
    )
    d.add_argument("--to", dest="until", metavar="YEAR", help="the newer version (default: the latest)")
    d.add_argument("--all", action="store_true", help="list unchanged articles too")
    d.add_argument("--json", action="store_true", help="print the comparison as JSON")

    c = sub.add_parser("cites", help="what cites an article (法条联想), grouped by level")
    c.add_argument("citation", help="the article: 《中华人民共和国电子商务法》第三十八条 (第二款 narrows to one 款)")
    c.add_argument("--version", dest="when", metavar="YEAR", help="the law's version (default: the latest)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--format", choices=FORMATS, help="export the citing passages as references instead")

    e = sub.add_parser("export", help="references for a list of cited articles: GB/T 7714, BibTeX, CSL-JSON, RIS")
    e.add_argument("citations", nargs="+", help="articles as 《电子商务法》第三十八条第二款")
    e.add_argument("--format", choices=FORMATS, default="gbt7714")
    for command in (d, c, e):
        command.add_argument("--index", type=Path, default=index_default)
        command.add_argument("--backend", choices=("faiss", "milvus"), default="faiss")
        command.add_argument("--uri")
        command.add_argument("--collection")


def _open(args: argparse.Namespace) -> Backend:
    from kb.backends import open_searcher

    return open_searcher(args.backend, args.index, args.uri, args.collection)


def _arg_text(text: str) -> str:
    """Bytes the locale could not decode (lone surrogates) become U+FFFD, as kb.commands does for a question."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def diff(args: argparse.Namespace) -> int:
    from kb.quote.diff import render
    from kb.research.versions import compare_versions

    result = compare_versions(_open(args), _arg_text(args.law), args.since, args.until)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(printable(result.summary()))
    for p in result.pairs:
        if p.status == "unchanged" and not (args.all or p.renumbered):
            continue
        old, new = p.old.label if p.old else "—", p.new.label if p.new else "—"
        if p.status in ("changed", "moved"):
            body = " ".join(render(p.diff).split()) if p.diff else "(same text)"
        elif p.status == "unchanged":
            body = "(same text)"
        else:
            text = " ".join((p.new or p.old).text.split())  # type: ignore[union-attr]
            body = text[:_SHOWN] + ("…" if len(text) > _SHOWN else "")
        print(f"{p.status:<9} {old} -> {new}  {printable(body)}")
    return 0


def cites(args: argparse.Namespace) -> int:
    from kb.research.citing import cited_by

    result = cited_by(_open(args), _arg_text(args.citation), args.when)
    if args.format:
        return _export_citing(args, result)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(
        f"{printable(result.citation)} ({result.version.year or 'undated'} version): cited by {result.count} "
        f"passage{'s' if result.count != 1 else ''}"
        + (f" ({result.older} made before this version came into force)" if result.older else "")
    )
    for level, passages in result.groups:
        print(f"{level} ({len(passages)})")
        for p in passages:
            context = " ".join(p.citing.context.split())
            via = f" (cites the earlier version, {p.via})" if p.via else ""
            via += " (made before this version: may use an older numbering)" if p.citing.older else ""
            print(f"  {printable(p.citation)}{via}: …{printable(context)}…  [{printable(p.citing.chunk_id)}]")
    return 0


def _export_citing(args: argparse.Namespace, result: object) -> int:
    from kb.present.references import export
    from kb.research.citing import CitedBy
    from kb.research.works import Work

    assert isinstance(result, CitedBy)
    works = [
        Work(
            p.title,
            "zh",
            p.citing.article,
            bool(p.citing.article),
            level=p.level,
            published=p.date,
            doc_id=p.citing.doc_id,
        )
        for _, ps in result.groups
        for p in ps
    ]
    print(export(works, args.format), end="")
    return 0


def export_refs(args: argparse.Namespace) -> int:
    from kb.present.references import export
    from kb.research.works import works_of_citations

    works = works_of_citations(_open(args), [_arg_text(c) for c in args.citations])
    print(export(works, args.format), end="")
    return 0
