"""LawRefBook/Laws checkout -> Policy KB corpus folder: safe unpacking, db.sqlite3 rows, file mapping, metadata.

Layout of a checkout: Markdown files in category folders (``民法商法/``, ``部门规章/公安部/`` ...) named
``<name>(<publish>).md`` or ``<name>.md``; ``db.sqlite3`` at the root and ``DLC/<省>地方法规/db.sqlite3`` for
local regulations, whose ``category.folder`` is relative to that db's own folder. A db row maps to
``<db folder>/<category.folder>/<stem>[(<publish>)].md`` where stem is ``filename``, else ``name``, else
``subtitle`` (cases are filed under their subtitle). A file no row claims is matched on (name, publish) read
from its file name in the same db when that is unambiguous (a law filed under two categories).

Validity (``validity_of``), judged on ``today`` among rows of the same db with the same name:
``尚未生效`` when valid_from (else publish) is after today; ``已修改`` when a later-published version is
already in force; ``现行有效`` when not expired, or expired only in favour of versions not yet in force
(LawRefBook marks every older version expired as soon as a newer one is filed); ``已废止`` when expired
with no later version; empty for an undated row beside dated rows of the same name (the db cannot order
them). The db keeps no other status column.
"""

from __future__ import annotations

import csv
import logging
import lzma
import re
import sqlite3
import tarfile
import zlib
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath

from kb.errors import CorpusError

log = logging.getLogger(__name__)

SOURCE = "LawRefBook"
UPSTREAM = "LawRefBook/Laws"
UPSTREAM_COMMIT = "2f4c5c23716267af9dbebbbbd6cbbf732b101981"
CSV_COLUMNS = (
    "doc_id",
    "title",
    "level",
    "issuer",
    "doc_number",
    "published",
    "effective",
    "validity",
    "region",
    "category",
    "source",
)
# Repository notes that sit beside the laws; compared on the lower-cased stem.
NOTE_STEMS = frozenset({"readme", "changelog", "contributing", "license", "code_of_conduct"})
MAX_UNPACKED_BYTES = 2 << 30  # the real checkout unpacks to ~60 MB; anything near this is not LawRefBook

SKIP_STUB, SKIP_TEMPLATE, SKIP_NOTE = "folder stub (_index.md)", "template (法律法规模版.md)", "README-type note"
SKIP_CASE, SKIP_LOCAL = "case under 案例/ (use --include-cases)", "local rule under DLC/ (--national-only)"
SKIP_HIDDEN = "hidden path"

_VERSIONED = re.compile(r"^(?P<name>.+?)\((?P<date>\d{4}-\d{2}-\d{2})\)$")
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t]*$", re.M)
_INFO_END = "<!-- INFO END -->"


@dataclass(frozen=True)
class LawRecord:
    """One row of a LawRefBook ``law`` table with its category resolved; paths are relative to the checkout."""

    name: str
    subtitle: str | None
    filename: str | None
    level: str
    publish: str | None
    valid_from: str | None
    expired: bool
    category: str
    folder: str
    db_folder: str
    region: str | None

    def candidate_paths(self) -> list[str]:
        """Where this row's Markdown file may be, most specific first."""
        paths = []
        for stem in dict.fromkeys(s for s in (self.filename, self.name, self.subtitle) if s):
            if self.publish:
                paths.append(f"{self.folder}/{stem}({self.publish}).md")
            paths.append(f"{self.folder}/{stem}.md")
        return paths


@dataclass(frozen=True)
class MetaRow:
    """One metadata.csv row, columns in CSV_COLUMNS order."""

    doc_id: str
    title: str
    level: str
    issuer: str
    doc_number: str
    published: str
    effective: str
    validity: str
    region: str
    category: str
    source: str = SOURCE


@dataclass
class ImportPlan:
    """Files to copy and skip (reason -> paths), the db row of each copied file, and rows that found no file."""

    copy: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    matched: dict[str, LawRecord] = field(default_factory=dict)
    matched_by_name: set[str] = field(default_factory=set)
    rows_without_file: list[LawRecord] = field(default_factory=list)
    rows_sharing_file: list[LawRecord] = field(default_factory=list)
    records: list[LawRecord] = field(default_factory=list)


def extract_tarball(archive: Path, dest: Path) -> None:
    """Unpack a .tar/.tar.gz/.tar.xz into dest; CorpusError, and nothing extracted, if it is unreadable, too
    big, or any member is absolute, climbs out with '..', links outside dest or is a device ("data" filter)."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise CorpusError(f"{archive} is not a readable .tar, .tar.gz or .tar.xz archive ({exc})") from exc
    with tar:
        try:
            members = tar.getmembers()
            for member in members:
                # The data filter strips a leading '/' instead of refusing it; an absolute name is hostile here.
                if member.name.startswith(("/", "\\")) or ".." in PurePosixPath(member.name).parts:
                    raise tarfile.FilterError(f"{member.name!r} leaves the destination")
                tarfile.data_filter(member, str(dest))
            if sum(m.size for m in members) > MAX_UNPACKED_BYTES:
                raise CorpusError(f"{archive} unpacks to over {MAX_UNPACKED_BYTES >> 20} MB: not LawRefBook")
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise CorpusError(f"{archive}: unsafe member ({exc}); refusing to extract anything from it") from exc
        except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise CorpusError(f"{archive} is truncated or corrupt ({exc})") from exc


def find_root(folder: Path) -> Path:
    """The checkout root: folder itself or its only subfolder, whichever holds db.sqlite3 (else CorpusError)."""
    if (folder / "db.sqlite3").is_file():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "db.sqlite3").is_file():
        return subdirs[0]
    raise CorpusError(f"{folder} has no db.sqlite3 at its top: pass a LawRefBook/Laws checkout or its tarball")


def read_db(root: Path, db_folder: str = "", region: str | None = None) -> list[LawRecord]:
    """Rows of ``<root>/<db_folder>/db.sqlite3``, opened read-only (CorpusError if it is not a LawRefBook db)."""
    path = root / db_folder / "db.sqlite3" if db_folder else root / "db.sqlite3"
    prefix = f"{db_folder}/" if db_folder else ""
    query = (
        "SELECT l.name, l.subtitle, l.filename, l.level, l.publish, l.valid_from, l.expired, "
        "c.name, c.folder FROM law l LEFT JOIN category c ON c.id = l.category_id ORDER BY l.id"
    )
    try:
        with closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)) as con:
            rows = con.execute(query).fetchall()
    except sqlite3.Error as exc:
        raise CorpusError(f"{path}: not a LawRefBook database ({exc}); expected tables law and category") from exc
    return [
        LawRecord(
            name=r[0],
            subtitle=r[1] or None,
            filename=r[2] or None,
            level=r[3] or "",
            publish=_iso(r[4]),
            valid_from=_iso(r[5]),
            expired=bool(r[6]),
            category=r[7] or "",
            folder=prefix + (r[8] or "").strip("/"),
            db_folder=db_folder,
            region=region,
        )
        for r in rows
    ]


def read_all_dbs(root: Path) -> list[LawRecord]:
    """Rows of the root db and of every ``DLC/<省>地方法规/db.sqlite3`` (region = the province)."""
    records = read_db(root)
    for db in sorted((root / "DLC").glob("*/db.sqlite3")):
        name = db.parent.name
        records += read_db(root, f"DLC/{name}", name.removesuffix("地方法规") or name)
    return records


def skip_reason(rel: str, national_only: bool, include_cases: bool) -> str | None:
    """Why a Markdown path (relative, '/'-separated) is not copied, or None to copy it."""
    parts = rel.split("/")
    name = parts[-1]
    if any(p.startswith(".") for p in parts):  # .github/ and friends in a git checkout
        return SKIP_HIDDEN
    if name == "_index.md":
        return SKIP_STUB
    if name == "法律法规模版.md":
        return SKIP_TEMPLATE
    if name.rsplit(".", 1)[0].lower() in NOTE_STEMS:
        return SKIP_NOTE
    if parts[0] == "案例" and not include_cases:
        return SKIP_CASE
    if parts[0] == "DLC" and national_only:
        return SKIP_LOCAL
    return None


def plan_import(root: Path, national_only: bool = False, include_cases: bool = False) -> ImportPlan:
    """Decide which Markdown files to copy and which db row describes each."""
    plan = ImportPlan()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md") if p.is_file())
    for rel in files:
        reason = skip_reason(rel, national_only, include_cases)
        (plan.skipped.setdefault(reason, []) if reason else plan.copy).append(rel)
    on_disk = set(files)
    claimed: dict[str, LawRecord] = {}
    by_name: dict[tuple[str, str, str | None], list[LawRecord]] = {}
    plan.records = read_all_dbs(root)
    for record in plan.records:
        by_name.setdefault((record.db_folder, record.name, record.publish), []).append(record)
        path = next((p for p in record.candidate_paths() if p in on_disk), None)
        if path is None:
            plan.rows_without_file.append(record)
        elif path in claimed:
            plan.rows_sharing_file.append(record)
        else:
            claimed[path] = record
    for rel in plan.copy:
        found = claimed.get(rel) or _match_by_name(rel, by_name)
        if found is not None:
            plan.matched[rel] = found
            if rel not in claimed:
                plan.matched_by_name.add(rel)
    rescued = {id(r) for r in plan.matched.values()}
    plan.rows_without_file = [r for r in plan.rows_without_file if id(r) not in rescued]
    return plan


def _match_by_name(rel: str, by_name: dict[tuple[str, str, str | None], list[LawRecord]]) -> LawRecord | None:
    stem = rel.rsplit("/", 1)[-1].removesuffix(".md")
    m = _VERSIONED.match(stem)
    name, published = (m["name"], m["date"]) if m else (stem, None)
    db_folder = "/".join(rel.split("/")[:2]) if rel.startswith("DLC/") else ""
    found = by_name.get((db_folder, name, published), [])
    return found[0] if len(found) == 1 else None


def validity_of(record: LawRecord, same_name: list[LawRecord], today: date) -> str:
    """现行有效 / 已修改 / 已废止 / 尚未生效, or "" when unknown, for record (rule in the module docstring)."""

    def in_force(r: LawRecord) -> bool:
        start = r.valid_from or r.publish
        return start is None or start <= today.isoformat()

    if not in_force(record):
        return "尚未生效"
    if record.publish is None and any(r.publish for r in same_name):
        return ""
    later = [r for r in same_name if r.publish and record.publish and r.publish > record.publish]
    if any(in_force(r) for r in later):
        return "已修改"
    if record.expired and not later:
        return "已废止"
    return "现行有效"


def header_title(text: str) -> str | None:
    """The '# title' (plus a '# subtitle', as in the 民法典 parts) before '<!-- INFO END -->'."""
    end = text.find(_INFO_END, 0, 5000)
    heads = _H1.findall(text[:end] if end >= 0 else text[:300])
    return " ".join(heads[:2]) or None


def copy_documents(root: Path, dest: Path, plan: ImportPlan, today: date) -> list[MetaRow]:
    """Copy plan.copy from root into dest (bytes unchanged) and return the metadata rows, sorted by doc_id.

    The title is the file's '# title' (the db keeps the short name, without 中华人民共和国). issuer and
    doc_number stay empty: the db has neither, and kb.ingest.read reads them from the file's header (an empty
    CSV cell does not override that).
    """
    versions: dict[tuple[str, str], list[LawRecord]] = {}
    for r in plan.records:
        versions.setdefault((r.db_folder, r.name), []).append(r)
    categories = {r.folder: r.category for r in plan.records if r.category}
    rows = []
    for rel in plan.copy:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (root / rel).read_bytes()
        target.write_bytes(data)
        record = plan.matched.get(rel)
        if record is None:
            continue
        try:
            title = header_title(data.decode("utf-8-sig"))
        except UnicodeDecodeError:  # kb.ingest.read reports the file; its row keeps the db name
            title = None
        rows.append(
            MetaRow(
                doc_id=rel,
                title=title or " ".join(filter(None, (record.name, record.subtitle))),
                level=record.level,
                issuer="",
                doc_number="",
                published=record.publish or "",
                effective=record.valid_from or "",
                validity=validity_of(record, versions[(record.db_folder, record.name)], today),
                region=record.region or "",
                category=categories.get(rel.rsplit("/", 1)[0], record.category),
            )
        )
    return sorted(rows, key=lambda row: row.doc_id)


def write_metadata(path: Path, rows: list[MetaRow]) -> None:
    """Write metadata.csv (UTF-8, header row, '\\n' line ends)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows([getattr(row, col) for col in CSV_COLUMNS] for row in rows)


def _iso(value: object) -> str | None:
    """An ISO date string from a db cell, or None for empty / malformed values."""
    text = str(value or "").strip()[:10]
    try:
        return date.fromisoformat(text).isoformat() if text else None
    except ValueError:
        log.warning("ignoring malformed date %r in db", value)
        return None
