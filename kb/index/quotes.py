"""The substring index of the quote check: every document's folded text in SQLite FTS5 with the trigram tokenizer.

A quote is located by a phrase query (its trigrams at consecutive positions, which is exactly "is a substring"),
so no quote ever scans every document in Python. The file lives in the generation folder beside the chunk store;
a build copies the previous generation's file and re-folds only the documents whose text changed (the one
file of the index that is copied rather than hard-linked, since a build edits it).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from kb.errors import IndexCorruptError
from kb.text.fold import Folded, fold, fold_signature
from kb.ingest.document import Document
from kb.index.store import meta_value, readonly_db

log = logging.getLogger(__name__)

QUOTE_FILE = "quote.sqlite"
# case_sensitive 1: the folded text is already lower-cased, and the tokenizer must not fold anything else.
TOKENIZER = "trigram case_sensitive 1"
_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE docs (id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, text_hash TEXT NOT NULL, origin BLOB NOT NULL);
CREATE VIRTUAL TABLE grams USING fts5(text, tokenize='{TOKENIZER}');
"""


def text_hash(text: str) -> str:
    """What the folded text depends on (with the fold signature): the document's text itself."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def write_quote_index(path: Path, live: Iterable[str], changed: Iterable[Document], previous: Path | None,
                      load: Callable[[str], Document | None] | None = None) -> dict[str, object]:
    """Write the quote index for a build, reusing the previous generation's rows for unchanged texts.

    Args:
        live: every document of the new generation.
        changed: the documents read in this build (new or changed files); their texts are compared by hash.
        previous: the previous generation's quote file, copied and edited when folded by the same rules.
        load: reads an unchanged document from the previous store, for one the copied file lacks.
    Returns:
        The manifest section: file, fold signature, tokenizer, document count.
    Raises:
        IndexCorruptError: a live document is neither read now nor loadable from the previous store.
    """
    signature = fold_signature()
    live = set(live)
    fresh = {d.doc_id: d for d in changed}
    reused = previous is not None and previous.is_file() and _signature_of(previous) == signature
    if reused:
        shutil.copyfile(previous, path)  # type: ignore[arg-type]
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        # A file in an unpublished generation folder: a crash just discards the folder, so no journal.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        if not reused:
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('fold', ?)", (signature,))
        db.execute("BEGIN")
        have = {doc_id: (row, h) for row, doc_id, h in db.execute("SELECT id, doc_id, text_hash FROM docs")}
        stale = [row for doc_id, (row, h) in have.items()
                 if doc_id not in live or (doc_id in fresh and h != text_hash(fresh[doc_id].text))]
        for row in stale:
            db.execute("DELETE FROM docs WHERE id=?", (row,))
            db.execute("DELETE FROM grams WHERE rowid=?", (row,))
        dropped = set(stale)
        kept = {doc_id for doc_id, (row, _) in have.items() if row not in dropped}
        added = 0
        for doc_id in sorted(live - kept):
            doc = fresh.get(doc_id) or (load(doc_id) if load is not None else None)
            if doc is None:
                raise IndexCorruptError(f"{path}: no text for {doc_id} to fold; rebuild with `python -m kb build`")
            folded = fold(doc.text)
            deltas = np.diff(folded.origin, prepend=np.int32(0)).astype(np.int32)
            cur = db.execute("INSERT INTO docs (doc_id, text_hash, origin) VALUES (?,?,?)",
                             (doc_id, text_hash(doc.text), zlib.compress(deltas.tobytes(), 6)))
            db.execute("INSERT INTO grams (rowid, text) VALUES (?, ?)", (cur.lastrowid, folded.text))
            added += 1
        db.execute("COMMIT")
    finally:
        db.close()
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    log.info("quote index: %d documents folded, %d reused, %d dropped", added, len(live) - added, len(stale))
    return {"file": QUOTE_FILE, "fold": signature, "tokenizer": TOKENIZER, "documents": len(live)}


def _signature_of(path: Path) -> str | None:
    return meta_value(path, "fold")


def phrase(text: str) -> str:
    """An FTS5 phrase matching text literally."""
    return '"' + text.replace('"', '""') + '"'


class QuoteIndex:
    """Read-only access to a generation's quote index; one SQLite connection per thread."""

    def __init__(self, path: Path, documents: int, fix: str) -> None:
        """Open and check it against the manifest's document count and this code's folding rules.

        Raises:
            IndexCorruptError: missing, unreadable, folded with other rules, or holding another document count.
        """
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing: {fix}")
        self.path = path
        self._local = threading.local()
        try:
            signature = self._db().execute("SELECT value FROM meta WHERE key='fold'").fetchone()
            count = self._db().execute("SELECT COUNT(*) FROM docs").fetchone()[0]
            self.ids = dict(self._db().execute("SELECT id, doc_id FROM docs"))
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{path} is not a readable quote index ({exc}): {fix}") from exc
        if not signature or signature[0] != fold_signature():
            raise IndexCorruptError(f"{path} was folded with rules {signature and signature[0]!r}, this version "
                                    f"folds with {fold_signature()!r}: {fix}")
        if count != documents:
            raise IndexCorruptError(f"{path} holds {count} documents, the manifest says {documents}: {fix}")
        self.n = count
        self.rows = {doc_id: row for row, doc_id in self.ids.items()}

    def _db(self) -> sqlite3.Connection:
        return readonly_db(self._local, self.path)

    def containing(self, text: str, limit: int) -> list[int]:
        """Rows of documents whose folded text contains text (which is folded already), in row order."""
        if len(text) >= 3:
            sql, arg = "SELECT rowid FROM grams WHERE grams MATCH ? ORDER BY rowid LIMIT ?", phrase(text)
        else:  # below one trigram the index cannot help: SQLite scans the texts (in C, not Python)
            sql, arg = "SELECT rowid FROM grams WHERE instr(text, ?) > 0 ORDER BY rowid LIMIT ?", text
        return [r for (r,) in self._db().execute(sql, (arg, limit))]

    def containing_all(self, texts: list[str], limit: int) -> list[int]:
        """Rows of documents containing every one of the texts (each at least 3 characters)."""
        query = " AND ".join(phrase(t) for t in texts)
        return [r for (r,) in self._db().execute(
            "SELECT rowid FROM grams WHERE grams MATCH ? ORDER BY rowid LIMIT ?", (query, limit))]

    def seed_scores(self, seeds: list[str], max_docs: int) -> dict[int, float]:
        """Documents scored by the seeds (substrings of a quote) they contain, rarer seeds weighing more.

        A seed found in max_docs documents or more says nothing about where the quote comes from and is skipped.
        """
        scores: dict[int, float] = {}
        for seed in dict.fromkeys(s for s in seeds if len(s) >= 3):
            rows = self.containing(seed, max_docs)
            if not rows or len(rows) >= max_docs:
                continue
            weight = math.log(1.0 + self.n / len(rows))
            for r in rows:
                scores[r] = scores.get(r, 0.0) + weight
        return scores

    def folded(self, row: int) -> Folded:
        """A document's folded text with its map back to original offsets."""
        return _load(self, row)


@lru_cache(maxsize=64)
def _load(index: QuoteIndex, row: int) -> Folded:
    db = index._db()
    text = db.execute("SELECT text FROM grams WHERE rowid=?", (row,)).fetchone()
    blob = db.execute("SELECT origin FROM docs WHERE id=?", (row,)).fetchone()
    if text is None or blob is None:
        raise IndexCorruptError(f"{index.path}: row {row} missing; rebuild with `python -m kb build`")
    origin = np.cumsum(np.frombuffer(zlib.decompress(blob[0]), dtype=np.int32), dtype=np.int64).astype(np.int32)
    if origin.shape[0] != len(text[0]):
        raise IndexCorruptError(f"{index.path}: row {row} has {len(text[0])} characters but {origin.shape[0]} "
                                "offsets; rebuild with `python -m kb build`")
    return Folded(text[0], origin)
