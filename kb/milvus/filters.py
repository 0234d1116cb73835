"""Checked filters (kb.catalog.filters.check_filters) -> one Milvus boolean expression, pushed down to Milvus.

The same rules as kb.catalog.filters.row_mask; the checks and their messages are check_filters', shared.
Statuses that follow from dates (a superseded version becomes 已修改 once its successor takes effect) are
decided here with today's date, from the date-independent columns kb.milvus.build stores (stated validity,
in-force span, the status its end implies).
"""

from __future__ import annotations

import datetime

from kb import config
from kb.catalog.filters import Checked
from kb.catalog.timeline import PENDING
from kb.milvus.store import in_clause, quote


def today() -> int:
    """Today as YYYYMMDD."""
    return int(datetime.date.today().strftime("%Y%m%d"))


def _status_is(status: str, day: int) -> str:
    """Rows whose validity on `day` (stated, else derived from their span) is `status` (kb.catalog.timeline.spans)."""
    stated = f"stated == {quote(status)}"
    if status in config.HIDDEN_VALIDITY:
        return f'({stated} or (stated == "" and in_force_until <= {day} and implied == {quote(status)}))'
    if status == PENDING:
        return f'({stated} or (stated == "" and in_force_until > {day} and in_force_from > {day}))'
    return stated


def hidden(day: int) -> str:
    """Rows repealed or superseded on `day`: left out unless asked for."""
    return "(" + " or ".join(_status_is(s, day) for s in config.HIDDEN_VALIDITY) + ")"


def expression(c: Checked, day: int | None = None) -> str:
    """A filter expression for filters checked by kb.catalog.filters.check_filters ('' when nothing is restricted)."""
    day = day or today()
    parts: list[str] = []
    if c.zh is not None:
        parts.append('lang == "zh"' if c.zh else 'lang != "zh"')
    if c.docs:
        parts.append(in_clause("doc_id", list(c.docs)))
    if c.levels:
        parts.append(in_clause("level", list(c.levels)))
    if c.issuers:
        parts.append(in_clause("issuer", list(c.issuers)))
    if c.validity:
        parts.append("(" + " or ".join(_status_is(v, day) for v in c.validity) + ")")
    if c.dates:
        field, low, high = c.dates
        parts.append(f"{field} >= {low} and {field} <= {high}")  # unknown dates (0) never match
    if c.as_of:
        parts.append(f"in_force_from <= {c.as_of}")
        if not c.keep_hidden:
            parts.append(f"in_force_until > {c.as_of} and gone == false")
    elif not c.keep_hidden:
        parts.append(f"not {hidden(day)}")
    return " and ".join(f"({p})" for p in parts)
