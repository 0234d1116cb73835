"""The chunk store: immutable SQLite segments shared by generations, read row by row so a query never loads it whole.

A build appends the passages of new and changed documents as a new segment with the next row numbers and
marks the rows they replace as deleted; unchanged segments are hard-linked into the new generation, never
copied or rewritten. Rows of a deleted passage stay as holes until a compaction renumbers everything.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.chunk import Chunk
from kb.errors import IndexCorruptError
from kb.index.manifest import Manifest, Segment
from kb.ingest.document import DocMeta, DocRow, Document

_SCHEMA = """
CREATE TABLE docs (
    doc_id TEXT PRIMARY KEY, path TEXT, title TEXT, lang TEXT, text TEXT,
    meta TEXT, page_spans TEXT, source_key TEXT, first_row INTEGER, n_chunks INTEGER
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT, doc_id TEXT, ordinal INTEGER, title TEXT, text TEXT,
    char_start INTEGER, char_end INTEGER, lang TEXT, article TEXT, article_no INTEGER, section TEXT,
    part INTEGER, parts INTEGER, page INTEGER, page_end INTEGER, hash TEXT
);
CREATE INDEX chunks_doc ON chunks (doc_id, ordinal);
"""
_CHUNK_COLS = ("chunk_id", "doc_id", "title", "ordinal", "text", "char_start", "char_end", "lang", "article",
               "article_no", "section", "part", "parts", "page", "page_end")


def write_segment(path: Path, docs: list[tuple[Document, str]], chunks: list[Chunk], hashes: list[str],
                  first_row: int) -> None:
    """Write a segment whose chunks take rows first_row, first_row + 1, ... in the order given."""
    db = sqlite3.connect(str(path))
    try:
        db.executescript(_SCHEMA)
        first: dict[str, int] = {}
        counts: dict[str, int] = {}
        for i, c in enumerate(chunks):
            first.setdefault(c.doc_id, first_row + i)
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        db.executemany(
            "INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(d.doc_id, d.path, d.title, d.lang, d.text, json.dumps(d.meta.to_dict(), ensure_ascii=False),
              json.dumps(d.page_spans), key, first[d.doc_id], counts[d.doc_id]) for d, key in docs])
        db.executemany(
            f"INSERT INTO chunks (row, {', '.join(_CHUNK_COLS)}, hash) VALUES ({', '.join('?' * (len(_CHUNK_COLS) + 2))})",
            [(first_row + i, *(getattr(c, col) for col in _CHUNK_COLS), h) for i, (c, h) in enumerate(zip(chunks, hashes))])
        db.commit()
    finally:
        db.close()


def readonly_db(local: threading.local, path: Path) -> sqlite3.Connection:
    """This thread's read-only connection to an SQLite file (connections must not cross threads)."""
    db = getattr(local, "db", None)
    if db is None:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        local.db = db
    return db


def meta_value(path: Path, key: str) -> str | None:
    """A value of the `meta` table of an index SQLite file (the quote and cited-by tables sign their contents
    there), or None when the file is missing, unreadable or lacks it."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


@dataclass(frozen=True)
class DocEntry:
    """Where a live document's passages are: its source key, segment and rows."""

    source_key: str
    segment: int
    first_row: int
    n_chunks: int

    @property
    def rows(self) -> range:
        return range(self.first_row, self.first_row + self.n_chunks)


class Store:
    """Read-only access to a generation's segments; one SQLite connection per segment and thread."""

    def __init__(self, folder: Path, segments: list[Segment], deleted: list[tuple[int, int]]) -> None:
        """Raises IndexCorruptError when a segment is missing or unreadable."""
        self.folder = folder
        self.segments = segments
        self.n_rows = segments[-1].end if segments else 0
        self.live = np.ones(self.n_rows, dtype=bool)
        for start, end in deleted:
            self.live[start:end] = False
        self._starts = np.asarray([s.start for s in segments], dtype=np.int64)
        self._local = threading.local()
        self.entries: dict[str, DocEntry] = {}
        for n, seg in enumerate(segments):
            for doc_id, key, first, count in self._query(n, "SELECT doc_id, source_key, first_row, n_chunks FROM docs"):
                if self.live[first]:
                    self.entries[doc_id] = DocEntry(key, n, first, count)
        self.n_chunks = int(self.live.sum())

    def path(self, n: int) -> Path:
        return self.folder / f"{self.segments[n].name}.sqlite"

    def _db(self, n: int) -> sqlite3.Connection:
        dbs = getattr(self._local, "dbs", None)
        if dbs is None:
            dbs = self._local.dbs = {}
        if n not in dbs:
            path = self.path(n)
            if not path.is_file():
                raise IndexCorruptError(f"{path} is missing")
            # immutable: segments never change once written, so SQLite may skip locking and change checks.
            dbs[n] = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        return dbs[n]

    def _query(self, n: int, sql: str, args: tuple | list = ()) -> list[tuple]:
        try:
            return self._db(n).execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path(n)} is not a readable chunk store ({exc})") from exc

    def _by_row(self, rows: list[int], columns: str) -> dict[int, tuple]:
        """row -> (columns...) for the given rows, one query per segment and batch."""
        where = np.searchsorted(self._starts, np.asarray(rows, dtype=np.int64), side="right") - 1
        found: dict[int, tuple] = {}
        for n in sorted(set(where.tolist())):
            part = [r for r, w in zip(rows, where) if w == n]
            for i in range(0, len(part), 500):
                batch = part[i:i + 500]
                cur = self._query(n, f"SELECT row, {columns} FROM chunks WHERE row IN ({','.join('?' * len(batch))})",
                                  batch)
                found.update((r[0], r[1:]) for r in cur)
        return found

    def chunks(self, rows: list[int]) -> list[Chunk]:
        """Chunks by row number, in the order asked."""
        if not rows:
            return []
        found = self._by_row(rows, ", ".join(_CHUNK_COLS))
        missing = [r for r in rows if r not in found or not self.live[r]]
        if missing:
            raise IndexCorruptError(f"{self.folder}: rows {missing[:5]} missing from the chunk store")
        return [Chunk(**dict(zip(_CHUNK_COLS, found[r]))) for r in rows]

    def doc_chunks(self, doc_id: str) -> list[Chunk]:
        """All chunks of one live document, in reading order."""
        entry = self.entries.get(doc_id)
        if entry is None:
            return []
        cur = self._query(entry.segment, f"SELECT {', '.join(_CHUNK_COLS)} FROM chunks WHERE row >= ? AND row < ? "
                                         "ORDER BY row", (entry.first_row, entry.first_row + entry.n_chunks))
        return [Chunk(**dict(zip(_CHUNK_COLS, r))) for r in cur]

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]:
        """The chunks of one article of one live document, in reading order (cross-reference targets)."""
        entry = self.entries.get(doc_id)
        if entry is None:
            return []
        cur = self._query(entry.segment, f"SELECT {', '.join(_CHUNK_COLS)} FROM chunks WHERE row >= ? AND row < ? "
                                         "AND article_no = ? ORDER BY row",
                          (entry.first_row, entry.first_row + entry.n_chunks, article_no))
        return [Chunk(**dict(zip(_CHUNK_COLS, r))) for r in cur]

    def containing(self, doc_ids: list[str], text: str) -> set[str]:
        """Those of doc_ids whose original text contains text exactly (SQLite's instr, not a Python scan)."""
        by_segment: dict[int, list[str]] = {}
        for doc_id in doc_ids:
            entry = self.entries.get(doc_id)
            if entry is not None:
                by_segment.setdefault(entry.segment, []).append(doc_id)
        out: set[str] = set()
        for n, ids in by_segment.items():
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                out.update(r[0] for r in self._query(
                    n, f"SELECT doc_id FROM docs WHERE doc_id IN ({','.join('?' * len(part))}) AND instr(text, ?) > 0",
                    (*part, text)))
        return out

    def document(self, doc_id: str) -> Document | None:
        """A live document with its full text, or None."""
        entry = self.entries.get(doc_id)
        if entry is None:
            return None
        row = self._query(entry.segment, "SELECT doc_id, path, title, lang, text, meta, page_spans FROM docs "
                                         "WHERE doc_id=?", (doc_id,))[0]
        return Document(doc_id=row[0], path=row[1], title=row[2], lang=row[3], text=row[4],
                        meta=DocMeta.from_dict(json.loads(row[5])),
                        page_spans=tuple(tuple(p) for p in json.loads(row[6])))

    def doc_table(self) -> list[DocRow]:
        """One row per live document: id, title, language, metadata and chunk count (no text)."""
        out = []
        for n in range(len(self.segments)):
            for doc_id, title, lang, meta, count in self._query(n, "SELECT doc_id, title, lang, meta, n_chunks FROM docs"):
                entry = self.entries.get(doc_id)
                if entry is not None and entry.segment == n:
                    out.append(DocRow(doc_id, title, lang, DocMeta.from_dict(json.loads(meta)), int(count)))
        return sorted(out, key=lambda d: d.doc_id)

    def doc_rows(self) -> dict[str, np.ndarray]:
        """doc_id -> its live chunk rows: the filter masks are built from this once."""
        return {doc_id: np.arange(e.first_row, e.first_row + e.n_chunks, dtype=np.int64)
                for doc_id, e in self.entries.items()}

    def column(self, name: str) -> list[object]:
        """One chunk column for every row number in order; None at deleted rows."""
        if name not in ("lang", "hash", "doc_id", "ordinal"):
            raise ValueError(name)
        out: list[object] = [None] * self.n_rows
        for n in range(len(self.segments)):
            for row, value in self._query(n, f"SELECT row, {name} FROM chunks"):
                if self.live[row]:
                    out[row] = value
        return out

    def column_rows(self, name: str, rows: list[int]) -> list[object]:
        """One chunk column for some rows, in the order asked."""
        if name not in ("lang", "hash", "doc_id", "ordinal"):
            raise ValueError(name)
        found = self._by_row(rows, name) if rows else {}
        return [found[r][0] if r in found else None for r in rows]

    def export(self, doc_ids: list[str]) -> tuple[list[tuple[Document, str]], list[Chunk], list[str], list[int]]:
        """Documents, chunks, hashes and old row numbers of live documents, for a compaction to rewrite."""
        docs, chunks, hashes, rows = [], [], [], []
        for doc_id in doc_ids:
            entry = self.entries[doc_id]
            doc = self.document(doc_id)
            cur = self._query(entry.segment, f"SELECT row, {', '.join(_CHUNK_COLS)}, hash FROM chunks "
                                             "WHERE row >= ? AND row < ? ORDER BY row", (entry.first_row, entry.first_row + entry.n_chunks))
            docs.append((doc, entry.source_key))
            for r in cur:
                rows.append(r[0])
                chunks.append(Chunk(**dict(zip(_CHUNK_COLS, r[1:-1]))))
                hashes.append(r[-1])
        return docs, chunks, hashes, rows  # type: ignore[return-value]

    def close(self) -> None:
        for db in (getattr(self._local, "dbs", None) or {}).values():
            db.close()
        self._local.dbs = {}


def open_store(gen: Path, manifest: Manifest) -> Store:
    """The store of a generation folder as its manifest describes it."""
    return Store(gen, list(manifest.segments), list(manifest.deleted))


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Deleted row ranges, sorted and joined where they touch."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an immutable file with the new generation: a hard link, or a copy where links are refused."""
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copy2(src, dst)
