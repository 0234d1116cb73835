"""The chunk store: documents and chunks in SQLite, read row by row so a query never loads it whole."""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from kb.chunk import Chunk
from kb.errors import IndexCorruptError
from kb.ingest import DocMeta, Document

_SCHEMA = """
CREATE TABLE docs (
    doc_id TEXT PRIMARY KEY, path TEXT, title TEXT, lang TEXT, text TEXT,
    meta TEXT, page_spans TEXT, source_key TEXT, n_chunks INTEGER
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE, doc_id TEXT, ordinal INTEGER, title TEXT, text TEXT,
    char_start INTEGER, char_end INTEGER, lang TEXT, article TEXT, article_no INTEGER, section TEXT,
    part INTEGER, parts INTEGER, page INTEGER, page_end INTEGER, tokens TEXT, hash TEXT
);
CREATE INDEX chunks_doc ON chunks (doc_id, ordinal);
"""
_CHUNK_COLS = ("chunk_id", "doc_id", "title", "ordinal", "text", "char_start", "char_end", "lang", "article",
               "article_no", "section", "part", "parts", "page", "page_end")


def write_store(path: Path, docs: list[tuple[Document, str]], chunks: list[Chunk],
                tokens: list[list[str]], hashes: list[str]) -> None:
    """Write a fresh store; row i of the chunks table is row i of every vector and BM25 index."""
    db = sqlite3.connect(str(path))
    try:
        db.executescript(_SCHEMA)
        counts: dict[str, int] = {}
        for c in chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        db.executemany(
            "INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?)",
            [(d.doc_id, d.path, d.title, d.lang, d.text, json.dumps(d.meta.to_dict(), ensure_ascii=False),
              json.dumps(d.page_spans), key, counts.get(d.doc_id, 0)) for d, key in docs])
        db.executemany(
            f"INSERT INTO chunks (row, {', '.join(_CHUNK_COLS)}, tokens, hash) VALUES ({', '.join('?' * (len(_CHUNK_COLS) + 3))})",
            [(i, *(getattr(c, col) for col in _CHUNK_COLS), " ".join(t), h)
             for i, (c, t, h) in enumerate(zip(chunks, tokens, hashes))])
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


class Store:
    """Read-only access to a built store; one SQLite connection per thread."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing")
        self.path = path
        self._local = threading.local()
        try:
            self.n_chunks = self._db().execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{path} is not a readable chunk store ({exc})") from exc

    def _db(self) -> sqlite3.Connection:
        return readonly_db(self._local, self.path)

    def chunks(self, rows: list[int]) -> list[Chunk]:
        """Chunks by row number, in the order asked."""
        if not rows:
            return []
        cur = self._db().execute(
            f"SELECT row, {', '.join(_CHUNK_COLS)} FROM chunks WHERE row IN ({','.join('?' * len(rows))})", rows)
        found = {r[0]: Chunk(**dict(zip(_CHUNK_COLS, r[1:]))) for r in cur}
        missing = [r for r in rows if r not in found]
        if missing:
            raise IndexCorruptError(f"{self.path}: rows {missing[:5]} missing from the chunk store")
        return [found[r] for r in rows]

    def doc_chunks(self, doc_id: str) -> list[Chunk]:
        """All chunks of one document, in reading order."""
        cur = self._db().execute(f"SELECT {', '.join(_CHUNK_COLS)} FROM chunks WHERE doc_id=? ORDER BY ordinal", (doc_id,))
        return [Chunk(**dict(zip(_CHUNK_COLS, r))) for r in cur]

    def article_chunks(self, doc_id: str, article_no: int) -> list[Chunk]:
        """The chunks of one article of one document, in reading order (cross-reference targets)."""
        cur = self._db().execute(f"SELECT {', '.join(_CHUNK_COLS)} FROM chunks WHERE doc_id=? AND article_no=? "
                                 "ORDER BY ordinal", (doc_id, article_no))
        return [Chunk(**dict(zip(_CHUNK_COLS, r))) for r in cur]

    def document(self, doc_id: str) -> Document | None:
        """A stored document with its full text, or None."""
        row = self._db().execute(
            "SELECT doc_id, path, title, lang, text, meta, page_spans FROM docs WHERE doc_id=?", (doc_id,)).fetchone()
        if row is None:
            return None
        return Document(doc_id=row[0], path=row[1], title=row[2], lang=row[3], text=row[4],
                        meta=DocMeta.from_dict(json.loads(row[5])),
                        page_spans=tuple(tuple(p) for p in json.loads(row[6])))

    def containing(self, doc_ids: list[str], text: str) -> set[str]:
        """Those of doc_ids whose original text contains text exactly (SQLite's instr, not a Python scan)."""
        out: set[str] = set()
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start:start + 500]
            out.update(r[0] for r in self._db().execute(
                f"SELECT doc_id FROM docs WHERE doc_id IN ({','.join('?' * len(part))}) AND instr(text, ?) > 0",
                (*part, text)))
        return out

    def doc_table(self) -> list[dict[str, object]]:
        """One row per document: id, title, language, metadata and chunk count (no text)."""
        cur = self._db().execute("SELECT doc_id, title, lang, meta, n_chunks FROM docs ORDER BY doc_id")
        return [{"doc_id": r[0], "title": r[1], "lang": r[2], "meta": json.loads(r[3]), "chunks": r[4]} for r in cur]

    def doc_rows(self) -> dict[str, list[int]]:
        """doc_id -> its chunk rows: the filter masks are built from this once."""
        out: dict[str, list[int]] = {}
        for row, doc_id in self._db().execute("SELECT row, doc_id FROM chunks ORDER BY row"):
            out.setdefault(doc_id, []).append(row)
        return out

    def column(self, name: str) -> list[object]:
        """One chunk column for every row in order (lang, hash, tokens)."""
        if name not in ("lang", "hash", "tokens", "doc_id"):
            raise ValueError(name)
        return [r[0] for r in self._db().execute(f"SELECT {name} FROM chunks ORDER BY row")]

    def previous(self) -> dict[str, tuple[str, Document, list[Chunk], list[list[str]], list[str]]]:
        """Everything an incremental build reuses, keyed by doc_id: source key, document, chunks, tokens, hashes."""
        out: dict[str, tuple[str, Document, list[Chunk], list[list[str]], list[str]]] = {}
        keys = dict(self._db().execute("SELECT doc_id, source_key FROM docs"))
        for doc_id, key in keys.items():
            doc = self.document(doc_id)
            cur = self._db().execute(
                f"SELECT {', '.join(_CHUNK_COLS)}, tokens, hash FROM chunks WHERE doc_id=? ORDER BY ordinal", (doc_id,))
            rows = cur.fetchall()
            chunks = [Chunk(**dict(zip(_CHUNK_COLS, r[:len(_CHUNK_COLS)]))) for r in rows]
            out[doc_id] = (key, doc, chunks, [r[-2].split(" ") if r[-2] else [] for r in rows], [r[-1] for r in rows])  # type: ignore[arg-type]
        return out
