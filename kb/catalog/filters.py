"""Metadata filters and facets: per-row columns computed once at load, one boolean mask per query.

A query's filters become a mask over chunk rows by a few vectorised comparisons on these columns, so
filtering costs the same on 200 rows or 200,000 and nothing per document at query time.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kb import config
from kb.catalog.timeline import VALIDITY, Span
from kb.errors import QueryError
from kb.ingest.document import DocRow

DATE_FIELDS = ("published", "effective")
# Dates as YYYYMMDD integers: an unknown start, and the end of a text with no known end (both backends).
_UNKNOWN_START, OPEN_END = 0, 99_991_231
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


@dataclass(frozen=True)
class Filters:
    """What a search may return besides relevance; empty tuples and None mean 'no restriction'.

    as_of keeps the texts in force on that date (kb.catalog.timeline); include_repealed also keeps repealed and
    superseded ones (with as_of: those that had started by then); an explicit validity list replaces both.
    """

    lang: str | None = None
    docs: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    validity: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None
    date_field: str = "published"
    as_of: str | None = None
    include_repealed: bool = False


@dataclass(frozen=True)
class Columns:
    """Per-row filter columns (row i = chunk i); dates as YYYYMMDD integers, 0 when unknown."""

    zh: np.ndarray
    hidden: np.ndarray  # repealed or superseded today, left out unless asked for
    level: np.ndarray  # index into levels, -1 when unknown
    levels: tuple[str, ...]
    issuer: np.ndarray
    issuers: tuple[str, ...]
    validity: np.ndarray
    published: np.ndarray
    effective: np.ndarray
    start: np.ndarray  # first day in force (0: unknown, treated as always)
    end: np.ndarray  # first day no longer in force (OPEN_END: open or unknown)
    gone: np.ndarray  # repealed or superseded with no known end date


def date_int(value: object) -> int:
    """An ISO date as YYYYMMDD, 0 for None or anything malformed."""
    text = str(value or "")
    return int(text[:4] + text[5:7] + text[8:10]) if re.match(r"^\d{4}-\d{2}-\d{2}", text) else 0


def parse_date(value: str, name: str, end: bool = False) -> int:
    """'2019-01-01', '2019-01' or '2019' as YYYYMMDD; a partial date is its first day (or last, with end).

    Raises:
        QueryError: not a date.
    """
    m = _DATE.match(value.strip())
    try:
        if not m:
            raise ValueError(value)
        year, month, day = int(m.group(1)), int(m.group(2) or (12 if end else 1)), m.group(3)
        if day is None:
            nxt = datetime.date(year + (month == 12), month % 12 + 1, 1)
            last = (nxt - datetime.timedelta(days=1)).day
            day_n = last if end else 1
        else:
            day_n = int(day)
        return int(datetime.date(year, month, day_n).strftime("%Y%m%d"))
    except ValueError:
        raise QueryError(f"{name}: '{value}' is not a date; use YYYY-MM-DD (or YYYY-MM, YYYY)") from None


def build_columns(
    docs: Mapping[str, DocRow],
    doc_rows: Mapping[str, np.ndarray],
    n: int,
    langs: Sequence[object],
    spans: Mapping[str, Span],
) -> Columns:
    """Spread each document's metadata and in-force span over its chunk rows."""
    levels, issuers = known_values(docs)
    level_code = {v: i for i, v in enumerate(levels)}
    issuer_code = {v: i for i, v in enumerate(issuers)}
    validity_code = {v: i for i, v in enumerate(VALIDITY)}
    cols = {
        name: np.full(n, fill, dtype=dtype)
        for name, fill, dtype in (
            ("level", -1, np.int32),
            ("issuer", -1, np.int32),
            ("validity", -1, np.int8),
            ("published", 0, np.int32),
            ("effective", 0, np.int32),
            ("start", _UNKNOWN_START, np.int32),
            ("end", OPEN_END, np.int32),
            ("gone", False, bool),
            ("hidden", False, bool),
        )
    }
    for doc_id, rows in doc_rows.items():
        meta, span = docs[doc_id].meta, spans[doc_id]
        cols["level"][rows] = level_code.get(str(meta.level), -1)
        cols["issuer"][rows] = issuer_code.get(str(meta.issuer), -1)
        cols["validity"][rows] = validity_code.get(span.validity or "", -1)
        cols["published"][rows] = date_int(meta.published)
        cols["effective"][rows] = date_int(meta.effective)
        cols["start"][rows] = date_int(span.start)
        cols["end"][rows] = date_int(span.end) or OPEN_END
        cols["gone"][rows] = span.gone
        cols["hidden"][rows] = span.validity in config.HIDDEN_VALIDITY
    zh = np.asarray([lang == "zh" for lang in langs], dtype=bool)
    return Columns(zh=zh, levels=levels, issuers=issuers, **cols)


@dataclass(frozen=True)
class Checked:
    """Filters checked against what an index holds, in the terms each backend translates (rows or expressions)."""

    zh: bool | None = None  # None: any language
    docs: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()  # the indexed issuer names the wanted ones matched
    validity: tuple[str, ...] = ()
    dates: tuple[str, int, int] | None = None  # (published or effective, first day, last day)
    as_of: int | None = None
    keep_hidden: bool = False  # include_repealed, or an explicit validity list: nothing hidden by default


def check_filters(f: Filters, docs: Collection[str], levels: tuple[str, ...], issuers: tuple[str, ...]) -> Checked:
    """Check filters against the index's documents, levels and issuers (`known_values`): one set of messages.

    Raises:
        QueryError: an unknown language, document, level, issuer, validity or date field, a malformed
            date, or date_from after date_to; the message lists what is known.
    """
    if f.lang is not None and f.lang not in ("zh", "en"):
        raise QueryError(f"unknown language '{f.lang}': use zh or en")
    unknown = [d for d in f.docs if d not in docs]
    if unknown:
        raise QueryError(f"no such document in the index: {', '.join(unknown[:3])}")
    bad = [w for w in f.levels if w not in levels]
    if bad:
        raise QueryError(f"unknown level '{bad[0]}': the index holds {', '.join(levels) or 'none'}")
    names = _issuers(f.issuers, issuers)
    bad = [v for v in f.validity if v not in VALIDITY]
    if bad:
        raise QueryError(f"unknown validity '{bad[0]}': use one of {', '.join(VALIDITY)}")
    dates = None
    if f.date_from or f.date_to:
        if f.date_field not in DATE_FIELDS:
            raise QueryError(f"unknown date field '{f.date_field}': use published or effective")
        low = parse_date(f.date_from, "date_from") if f.date_from else 1
        high = parse_date(f.date_to, "date_to", end=True) if f.date_to else OPEN_END
        if low > high:
            raise QueryError(f"date_from {f.date_from} is after date_to {f.date_to}: swap them")
        dates = (f.date_field, low, high)
    return Checked(
        zh=None if f.lang is None else f.lang == "zh",
        docs=f.docs,
        levels=f.levels,
        issuers=names,
        validity=f.validity,
        dates=dates,
        as_of=parse_date(f.as_of, "as_of") if f.as_of else None,
        keep_hidden=f.include_repealed or bool(f.validity),
    )


def known_values(docs: Mapping[str, DocRow]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The levels and the issuers the documents name, sorted: what level and issuer filters may ask for."""
    levels = tuple(sorted({d.meta.level for d in docs.values() if d.meta.level}))
    issuers = tuple(sorted({d.meta.issuer for d in docs.values() if d.meta.issuer}))
    return levels, issuers


def row_mask(cols: Columns, doc_rows: Mapping[str, np.ndarray], c: Checked) -> np.ndarray | None:
    """Rows a search may return under checked filters, or None when every row may be returned."""
    n = cols.zh.shape[0]
    mask = np.ones(n, dtype=bool)
    restricted = False

    def keep(part: np.ndarray) -> None:
        nonlocal mask, restricted
        mask &= part
        restricted = True

    if c.zh is not None:
        keep(cols.zh if c.zh else ~cols.zh)
    if c.docs:
        part = np.zeros(n, dtype=bool)
        for d in c.docs:
            part[doc_rows[d]] = True
        keep(part)
    if c.levels:
        keep(_lookup(cols.level, [cols.levels.index(w) for w in c.levels], len(cols.levels)))
    if c.issuers:
        keep(_lookup(cols.issuer, [cols.issuers.index(w) for w in c.issuers], len(cols.issuers)))
    if c.validity:
        keep(_lookup(cols.validity, [VALIDITY.index(v) for v in c.validity], len(VALIDITY)))
    if c.dates:
        field_name, low, high = c.dates
        dates = cols.published if field_name == "published" else cols.effective
        keep((dates >= low) & (dates <= high))  # unknown dates (0) never fall in a range
    if c.as_of:
        started = cols.start <= c.as_of
        keep(started if c.keep_hidden else started & (c.as_of < cols.end) & ~cols.gone)
    elif not c.keep_hidden and cols.hidden.any():
        keep(~cols.hidden)
    return mask if restricted else None


def _lookup(column: np.ndarray, codes: list[int], size: int) -> np.ndarray:
    """Rows whose code is one of codes: a table lookup (unknown, -1, reads the table's last, False, entry)."""
    table = np.zeros(size + 1, dtype=bool)
    table[codes] = True
    return table[column]


def _issuers(wanted: Sequence[str], known: tuple[str, ...]) -> tuple[str, ...]:
    """Issuers match exactly or as a part of the name ('市场监督管理总局' finds 国家市场监督管理总局)."""
    names: list[str] = []
    for w in wanted:
        found = [name for name in known if w and w in name]
        if not found:
            sample = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
            raise QueryError(f"no indexed document is issued by '{w}': known issuers include {sample or 'none'}")
        names += found
    return tuple(names)
