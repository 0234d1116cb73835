"""kb.catalog.filters.Filters -> one Milvus boolean expression over the passages' filter columns, pushed down to Milvus.

The same rules and error messages as kb.catalog.filters.row_mask. Statuses that follow from dates (a superseded
version becomes 已修改 once its successor takes effect) are decided here with today's date, from the
date-independent columns kb.milvus.build stores (stated validity, in-force span, the status its end implies).
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping

from kb import config
from kb.catalog.filters import DATE_FIELDS, Filters, parse_date
from kb.catalog.timeline import PENDING, VALIDITY
from kb.errors import QueryError
from kb.milvus.schema import OPEN_END
from kb.milvus.store import in_clause, quote


def today() -> int:
    """Today as YYYYMMDD."""
    return int(datetime.date.today().strftime("%Y%m%d"))


def _status_is(status: str, day: int) -> str:
    """Rows whose validity on `day` (stated, else derived from their span) is `status` (kb.catalog.timeline.spans)."""
    stated = f"stated == {quote(status)}"
    if status in config.HIDDEN_VALIDITY:
        return f"({stated} or (stated == \"\" and in_force_until <= {day} and implied == {quote(status)}))"
    if status == PENDING:
        return f"({stated} or (stated == \"\" and in_force_until > {day} and in_force_from > {day}))"
    return stated


def hidden(day: int) -> str:
    """Rows repealed or superseded on `day`: left out unless asked for."""
    return "(" + " or ".join(_status_is(s, day) for s in config.HIDDEN_VALIDITY) + ")"


def expression(f: Filters, docs: Mapping[str, object], levels: tuple[str, ...], issuers: tuple[str, ...],
               day: int | None = None) -> str:
    """A filter expression for Filters ('' when nothing is restricted).

    Args:
        docs: the indexed doc_ids; levels, issuers: the values the index holds (for validation).
    Raises:
        QueryError: as kb.catalog.filters.row_mask, with the same messages.
    """
    day = day or today()
    parts: list[str] = []
    if f.lang is not None:
        if f.lang not in ("zh", "en"):
            raise QueryError(f"unknown language '{f.lang}': use zh or en")
        parts.append('lang == "zh"' if f.lang == "zh" else 'lang != "zh"')
    if f.docs:
        unknown = [d for d in f.docs if d not in docs]
        if unknown:
            raise QueryError(f"no such document in the index: {', '.join(unknown[:3])}")
        parts.append(in_clause("doc_id", list(f.docs)))
    if f.levels:
        bad = [w for w in f.levels if w not in levels]
        if bad:
            raise QueryError(f"unknown level '{bad[0]}': the index holds {', '.join(levels) or 'none'}")
        parts.append(in_clause("level", list(f.levels)))
    if f.issuers:
        parts.append(in_clause("issuer", _issuers(f.issuers, issuers)))
    if f.validity:
        bad = [v for v in f.validity if v not in VALIDITY]
        if bad:
            raise QueryError(f"unknown validity '{bad[0]}': use one of {', '.join(VALIDITY)}")
        parts.append("(" + " or ".join(_status_is(v, day) for v in f.validity) + ")")
    if f.date_from or f.date_to:
        if f.date_field not in DATE_FIELDS:
            raise QueryError(f"unknown date field '{f.date_field}': use published or effective")
        low = parse_date(f.date_from, "date_from") if f.date_from else 1
        high = parse_date(f.date_to, "date_to", end=True) if f.date_to else OPEN_END
        if low > high:
            raise QueryError(f"date_from {f.date_from} is after date_to {f.date_to}: swap them")
        parts.append(f"{f.date_field} >= {low} and {f.date_field} <= {high}")  # unknown dates (0) never match
    if f.as_of:
        when = parse_date(f.as_of, "as_of")
        parts.append(f"in_force_from <= {when}")
        if not (f.include_repealed or f.validity):
            parts.append(f"in_force_until > {when} and gone == false")
    elif not f.include_repealed and not f.validity:
        parts.append(f"not {hidden(day)}")
    return " and ".join(f"({p})" for p in parts)


def _issuers(wanted: tuple[str, ...], known: tuple[str, ...]) -> list[str]:
    """Issuers match exactly or as a part of the name ('市场监督管理总局' finds 国家市场监督管理总局)."""
    names: list[str] = []
    for w in wanted:
        found = [name for name in known if w and w in name]
        if not found:
            sample = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
            raise QueryError(f"no indexed document is issued by '{w}': known issuers include {sample or 'none'}")
        names += found
    return names
