"""Import a LawRefBook/Laws checkout (folder or .tar/.tar.gz/.tar.xz) into a Policy KB corpus folder.

    python scripts/import_lawrefbook.py SOURCE DEST [--national-only] [--include-cases] [--force]

Copies every law Markdown file under its relative path, writes DEST/metadata.csv from the checkout's
db.sqlite3 files and DEST/README.md, and prints a summary to stderr. The corpus is built in a sibling temp
folder and moved into place at the end, so a failed run leaves DEST as it was. --force replaces a DEST
written by an earlier import, never a folder this script did not write. The mapping and validity rules are
in kb/lawrefbook.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from kb.errors import CorpusError, KbError
from kb.ingest import lawrefbook as lrb

MARKER = "Written by scripts/import_lawrefbook.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """CLI flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="LawRefBook/Laws checkout folder or its .tar.xz/.tar.gz/.tar")
    parser.add_argument("dest", type=Path, help="corpus folder to write, e.g. corpus/lawrefbook")
    parser.add_argument("--national-only", action="store_true", help="skip DLC/ (local regulations)")
    parser.add_argument("--include-cases", action="store_true", help="also copy 案例/ (court cases)")
    parser.add_argument("--force", action="store_true", help="replace DEST if it holds an earlier import")
    parser.add_argument(
        "--commit",
        default=lrb.UPSTREAM_COMMIT,
        help="upstream commit named in DEST/README.md (default: the shared snapshot's)",
    )
    return parser.parse_args(argv)


@contextmanager
def checkout(source: Path) -> Iterator[Path]:
    """The checkout root of a folder, or of a tarball unpacked into a temp folder removed afterwards.

    Raises:
        CorpusError: source missing, not a folder or tarball, or without db.sqlite3.
    """
    if not source.exists():
        raise CorpusError(f"SOURCE {source} does not exist: pass a LawRefBook/Laws checkout or laws.tar.xz")
    if source.is_dir():
        yield lrb.find_root(source)
        return
    with tempfile.TemporaryDirectory(prefix="lawrefbook-") as tmp:
        lrb.extract_tarball(source, Path(tmp))
        yield lrb.find_root(Path(tmp))


def check_dest(dest: Path, force: bool) -> None:
    """Refuse a DEST that is a file, non-empty without --force, or non-empty and not an earlier import.

    Raises:
        CorpusError: with the fix in the message.
    """
    if dest.exists() and not dest.is_dir():
        raise CorpusError(f"DEST {dest} is a file, not a folder: choose a folder path")
    if not dest.is_dir() or not any(dest.iterdir()):
        return
    if not force:
        raise CorpusError(f"DEST {dest} exists and is not empty: pass --force to replace it")
    readme = dest / "README.md"
    if not (readme.is_file() and MARKER in readme.read_text(encoding="utf-8", errors="replace")):
        # --force on, say, corpus/ instead of corpus/lawrefbook/ must not wipe the user's other documents.
        raise CorpusError(
            f"DEST {dest} is not empty and was not written by import_lawrefbook.py; refusing "
            "to replace it even with --force: remove it by hand or choose another DEST"
        )


def render_readme(args: argparse.Namespace, plan: lrb.ImportPlan, rows: int) -> str:
    """DEST/README.md: source, licence note, what was imported."""
    scope = "national and local (DLC/)" if not args.national_only else "national only (DLC/ skipped)"
    skipped = "\n".join(f"- {reason}: {len(paths)}" for reason, paths in sorted(plan.skipped.items())) or "- none"
    return f"""# LawRefBook: PRC laws, regulations and judicial interpretations

Source: [{lrb.UPSTREAM}](https://github.com/{lrb.UPSTREAM}) at commit `{args.commit}`.
Statutes, regulations and judicial interpretations are official texts, not subject to copyright
(PRC Copyright Law art. 5); the folder layout and metadata come from the LawRefBook project.

Scope: {scope}; cases (案例/) {"included" if args.include_cases else "skipped"}.

- Markdown documents copied: {len(plan.copy)} (relative paths kept from the upstream repository)
- metadata.csv rows (documents the upstream db.sqlite3 describes): {rows}
  of which matched on name and date because the file sits in another category folder: {len(plan.matched_by_name)}
- documents without a metadata row: {len(plan.copy) - rows}
- db rows with no file in the checkout: {len(plan.rows_without_file)}

Skipped files:
{skipped}

{MARKER} on {date.today().isoformat()}; rerun it with --force to refresh.
"""


def summary(plan: lrb.ImportPlan, rows: int, seconds: float) -> str:
    """The stderr report."""
    lines = [f"copied {len(plan.copy)} Markdown files in {seconds:.1f}s"]
    lines += [f"skipped {len(paths)}: {reason}" for reason, paths in sorted(plan.skipped.items())]
    lines.append(
        f"metadata rows: {rows} of {len(plan.copy)} files"
        f" ({len(plan.matched_by_name)} matched on name+date in another folder)"
    )
    lines += [f"  no db row: {path}" for path in plan.copy if path not in plan.matched][:20]
    for label, records in (
        ("db row without a file", plan.rows_without_file),
        ("db row sharing a file with another row", plan.rows_sharing_file),
    ):
        lines += [f"  {label}: {r.folder}/{r.name} ({r.publish or 'no date'})" for r in records[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the import; 0 on success, 1 with a one-line message on bad input."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    dest: Path = args.dest.absolute()
    building: Path | None = None
    try:
        check_dest(dest, args.force)
        source, target = args.source.resolve(), dest.resolve()
        if target.is_relative_to(source) or source.is_relative_to(target):
            raise CorpusError(f"DEST {dest} and SOURCE {args.source} overlap: choose a DEST outside the source")
        with checkout(args.source) as root:
            plan = lrb.plan_import(root, national_only=args.national_only, include_cases=args.include_cases)
            dest.parent.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
            rows = lrb.copy_documents(root, building, plan, date.today())
        lrb.write_metadata(building / "metadata.csv", rows)
        (building / "README.md").write_text(render_readme(args, plan, len(rows)), encoding="utf-8")
        os.chmod(building, 0o755)  # mkdtemp makes it 0700
        if dest.exists():
            shutil.rmtree(dest)  # check_dest allowed this: empty, or an earlier import with --force
        building.rename(dest)
        building = None
        print(summary(plan, len(rows), time.perf_counter() - started), file=sys.stderr)
        print(f"wrote {dest}", file=sys.stderr)
        return 0
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
