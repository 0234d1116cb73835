"""The cited-by table (法条联想): every resolved reference turned around, target article -> citing passages.

One SQLite file per generation beside the chunk store, indexed by (target document, article), so a lookup is
one indexed query. A build copies the previous generation's file and re-scans only what can have changed: the
passages of documents read in this build, and passages whose references name a law one of those documents
(or a removed one) is a version of, since which version a reference resolves to depends on the versions
indexed. References to another document are kept, and references naming a law the index does not hold (kept
unresolved, so that adding the law later re-scans them); a law citing its own articles is not "cited by".
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kb.catalog.resolve import Resolver
from kb.chunk import Chunk, parse_chunk_id
from kb.errors import IndexCorruptError
from kb.index.store import Store, meta_value, readonly_db
from kb.legal.meta import title_key

log = logging.getLogger(__name__)

CITEDBY_FILE = "citedby.sqlite"
# Bumped when reference finding or resolution changes what the table holds: a build then re-scans everything.
CITEDBY_VERSION = "4"
CONTEXT = 60
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE refs (citing_chunk TEXT NOT NULL, citing_doc TEXT NOT NULL, law_key TEXT, target_doc TEXT,
                   article_no INTEGER, sub INTEGER, paragraph INTEGER, item INTEGER, text TEXT, start INTEGER,
                   end INTEGER, citing_article TEXT, context TEXT, older INTEGER);
CREATE INDEX refs_target ON refs (target_doc, article_no);
CREATE INDEX refs_citing ON refs (citing_doc);
CREATE INDEX refs_key ON refs (law_key);
"""


@dataclass(frozen=True)
class Citing:
    """One passage citing an article: the passage, the reference as written and where it stands in it."""

    chunk_id: str
    doc_id: str
    text: str
    start: int
    end: int
    paragraph: int | None  # the 款 the reference names, None for the whole article
    item: int | None
    article: str | None  # the citing passage's own article (第二条), None outside articles
    context: str  # the reference with up to CONTEXT characters of the passage on each side
    # The citing text is older than the version it was resolved to (no indexed version was in force when it was
    # made), or amends the law: it cites an earlier text, whose article numbers may differ.
    older: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "paragraph": self.paragraph,
            "item": self.item,
            "article": self.article,
            "context": self.context,
            "older": self.older,
        }


def _keys(title: str) -> set[str]:
    """The title keys a document answers to: its own, and its code's for a part (民法典 合同编 -> 民法典)."""
    return {title_key(title), title_key(title.split()[0])} if title.strip() else set()


def _rows(resolver: Resolver, chunks: Iterable[Chunk], made: Mapping[str, str | None]) -> Iterable[tuple[object, ...]]:
    for chunk in chunks:
        for r in resolver.references(chunk):
            ref, target = r.ref, r.target
            if target is not None and target.doc_id == chunk.doc_id:
                continue  # a law citing itself
            if target is None and not ref.law:
                continue  # 前款 with no previous 款, a bare article this document lacks: nothing to re-resolve
            key = title_key(ref.law) if ref.law else title_key(resolver.titles[target.doc_id])  # type: ignore[union-attr]
            yield (
                chunk.chunk_id,
                chunk.doc_id,
                key,
                target.doc_id if target else None,
                target.article_no if target else ref.article_no,
                ref.sub,
                ref.paragraph,
                ref.item,
                ref.text,
                ref.start,
                ref.end,
                chunk.article,
                chunk.text[max(0, ref.start - CONTEXT) : ref.end + CONTEXT],
                int(target is not None and _older(resolver, made, chunk.doc_id, target.doc_id)),
            )


# An amending decision or amendment (关于修改《X》的决定, 刑法修正案（十一）) cites the text it amends, as it stood.
_AMENDING = re.compile(r"修改.*决定|修正案")


def _older(resolver: Resolver, made: Mapping[str, str | None], citing: str, target: str) -> bool:
    """The citing text was made (published; else in force) before the cited version came into force (both dates
    known), or amends it: a text published 2021-12-20 and in force with the law's 2022 revision still cites the
    old numbering."""
    when, cited = made.get(citing) or resolver.starts.get(citing), resolver.starts.get(target)
    return bool(when and cited and when < cited) or bool(_AMENDING.search(resolver.titles.get(citing, "")))


def write_citedby(
    path: Path,
    store: Store,
    resolver: Resolver,
    fresh: Iterable[str],
    previous: Path | None,
    previous_titles: Mapping[str, str],
) -> dict[str, object]:
    """Write the cited-by table of a generation, reusing the previous one where nothing it depends on changed.

    Args:
        store: the new generation's chunk store; resolver: references resolved among its documents.
        fresh: documents read in this build (new or changed files).
        previous: the previous generation's table (None or missing: every passage is scanned).
        previous_titles: doc_id -> title of the previous generation's documents.
    Returns:
        The manifest section: file, version, references.
    """
    live = set(store.entries)
    made = {d.doc_id: d.meta.published for d in store.doc_table()}
    fresh = set(fresh) & live
    reused = previous is not None and previous.is_file() and _version_of(previous) == CITEDBY_VERSION
    if reused:
        shutil.copyfile(previous, path)  # type: ignore[arg-type]
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")  # an unpublished generation: a crash discards the folder
        db.execute("PRAGMA synchronous=OFF")
        if not reused:
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('version', ?)", (CITEDBY_VERSION,))
        db.execute("BEGIN")
        if reused:
            stale = fresh | (set(previous_titles) - live)
            keys = set().union(
                *(_keys(resolver.titles[d]) for d in fresh),
                *(_keys(t) for d, t in previous_titles.items() if d in stale),
            )
            db.execute("CREATE TEMP TABLE stale_docs (doc_id TEXT PRIMARY KEY)")
            db.execute("CREATE TEMP TABLE stale_keys (key TEXT PRIMARY KEY)")
            db.executemany("INSERT INTO stale_docs VALUES (?)", [(d,) for d in stale])
            db.executemany("INSERT INTO stale_keys VALUES (?)", [(k,) for k in keys])
            again = {
                c
                for (c,) in db.execute(
                    "SELECT DISTINCT citing_chunk FROM refs WHERE citing_doc NOT IN (SELECT doc_id FROM stale_docs) "
                    "AND (law_key IN (SELECT key FROM stale_keys) OR target_doc IN (SELECT doc_id FROM stale_docs))"
                )
            }
            db.execute("DELETE FROM refs WHERE citing_doc IN (SELECT doc_id FROM stale_docs)")
            db.executemany("DELETE FROM refs WHERE citing_chunk=?", [(c,) for c in again])
            scan = sorted(fresh | {parse_chunk_id(c)[0] for c in again})
        else:
            again, scan = set(), sorted(live)
        n = 0
        for doc_id in scan:
            chunks = store.doc_chunks(doc_id)
            if doc_id not in fresh and reused:
                chunks = [c for c in chunks if c.chunk_id in again]
            rows = list(_rows(resolver, chunks, made))
            db.executemany("INSERT INTO refs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            n += len(chunks)
        total = db.execute("SELECT COUNT(*) FROM refs WHERE target_doc IS NOT NULL").fetchone()[0]
        db.execute("COMMIT")
    finally:
        db.close()
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    log.info("cited-by table: %d passages scanned, %d resolved references", n, total)
    return {"file": CITEDBY_FILE, "version": CITEDBY_VERSION, "references": int(total)}


def _version_of(path: Path) -> str | None:
    return meta_value(path, "version")


class CitedByTable:
    """Read access to a generation's cited-by table (one read-only connection per thread)."""

    def __init__(self, path: Path) -> None:
        """Raises IndexCorruptError when the file is missing or of another version."""
        if _version_of(path) != CITEDBY_VERSION:
            raise IndexCorruptError(f"{path} is missing or of another version: rebuild with `python -m kb build`")
        self.path = path
        self._local = threading.local()

    def citing(
        self, doc_id: str, article_no: int, sub: int | None = None, paragraph: int | None = None
    ) -> list[Citing]:
        """Passages citing an article (or one 款 of it: references to the whole article count), in index order."""
        db = readonly_db(self._local, self.path)
        rows = db.execute(
            "SELECT citing_chunk, citing_doc, text, start, end, paragraph, item, citing_article, "
            "context, older, sub FROM refs WHERE target_doc=? AND article_no=?",
            (doc_id, article_no),
        )
        out = [
            Citing(c, d, t, s, e, p, i, a, x, bool(o))
            for c, d, t, s, e, p, i, a, x, o, sb in rows
            if sb == sub and (paragraph is None or p is None or p == paragraph)
        ]
        return sorted(out, key=lambda c: (c.doc_id, parse_chunk_id(c.chunk_id)[1], c.start))

    def counts(self, doc_id: str) -> dict[int, int]:
        """article number -> citing passages, for every cited article of a document."""
        db = readonly_db(self._local, self.path)
        return {
            int(a): int(n)
            for a, n in db.execute(
                "SELECT article_no, COUNT(DISTINCT citing_chunk) FROM refs WHERE target_doc=? GROUP BY article_no",
                (doc_id,),
            )
        }
