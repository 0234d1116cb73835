"""When each indexed text is in force: version dates, later versions of the same law, repeals, as-of views.

Rules (per document, computed when an index is loaded, from the metadata of all its documents):

- ``start``: the first day this text is in force, the later of ``published`` and ``effective`` (a text cannot
  be in force before its own version date); unknown when neither is known.
- Versions: documents whose titles share a ``title_key`` (``中华人民共和国公司法`` and ``公司法（2018修正）``)
  are versions of one law, ordered by ``start``. A version ends where the next one starts.
- Repeals: a text that says "《X》同时废止" ends X on its own start date; a ``repealed`` column in
  metadata.csv (or a .meta.json key) sets the end date directly and wins over both.
- A text whose metadata states it is 现行有效 or 尚未生效 gets no derived end (titles shared by distinct
  texts, such as the State Council's many 关于修改部分行政法规的决定, must not end each other).
- ``validity`` keeps what the metadata states; when it states nothing, a text whose end has passed is
  ``已修改`` (a later version is in force) or ``已废止`` (repealed), and one whose start is still ahead
  ``尚未生效``. Unknown stays unknown.

As of a date D a text is in force when ``start <= D < end``. A text without a start date is assumed in
force (nothing says otherwise); a text known to be repealed or superseded but with no known end date is
assumed not to be (a reader must not be handed it as in force), unless repealed texts are asked for.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kb import config
from kb.ingest.document import REPEALS_SEP, DocMeta, DocRow
from kb.legal.meta import title_key

REPEALED, SUPERSEDED, PENDING, IN_FORCE = "已废止", "已修改", "尚未生效", "现行有效"
VALIDITY = (IN_FORCE, SUPERSEDED, REPEALED, PENDING)


@dataclass(frozen=True)
class Span:
    """When a document is in force, and its validity as stated or derived; dates ISO, None when unknown."""

    start: str | None
    end: str | None
    validity: str | None
    versions: tuple[str, ...] = ()  # doc_ids of all versions of the same law, oldest first (itself included)

    @property
    def gone(self) -> bool:
        """Repealed or superseded with no known end date (so no date can be said to be before it)."""
        return self.end is None and self.validity in config.HIDDEN_VALIDITY


def version_start(meta: DocMeta) -> str | None:
    """The later of a document's published and effective dates (ISO), or None."""
    dates = [d for d in (meta.published, meta.effective) if d]
    return max(dates) if dates else None


def spans(docs: Mapping[str, DocRow], today: datetime.date | None = None) -> dict[str, Span]:
    """doc_id -> Span for every document of a doc table (rows with 'title' and 'meta')."""
    day = (today or datetime.date.today()).isoformat()
    starts = {d: version_start(row.meta) for d, row in docs.items()}
    groups: dict[str, list[str]] = {}
    for doc_id, row in docs.items():
        groups.setdefault(title_key(row.title), []).append(doc_id)
    ends: dict[str, tuple[str, str]] = {}  # doc_id -> (end date, validity it implies)
    for members in groups.values():
        dated = sorted({s for d in members if (s := starts[d])})
        for d in members:
            own = starts[d]
            later = [s for s in dated if own and s > own]
            if later:
                ends[d] = (later[0], SUPERSEDED)
    for doc_id, row in docs.items():
        extra = dict(row.meta.extra)
        start = starts[doc_id]
        for title in filter(None, str(extra.get("repeals", "")).split(REPEALS_SEP)):
            for target in groups.get(title_key(title), []):
                if start and target != doc_id and (target not in ends or start < ends[target][0]):
                    ends[target] = (start, REPEALED)
    out: dict[str, Span] = {}
    for doc_id, row in docs.items():
        meta = row.meta
        extra = dict(meta.extra)
        validity = meta.validity or None
        # Stated validity wins over a derived end: two texts that merely share a title (several
        # "关于修改部分行政法规的决定") are both in force when the metadata says so.
        end: str | None = None
        implied: str | None = None
        if validity not in (IN_FORCE, PENDING) and doc_id in ends:
            end, implied = ends[doc_id]
        if extra.get("repealed"):
            end, implied = str(extra["repealed"]), REPEALED
        start = starts[doc_id]
        if validity is None:
            if end and end <= day:
                validity = implied
            elif start and start > day:
                validity = PENDING
        if validity == PENDING and start is None:
            start = "9999-12-31"  # stated as not yet in force, date unknown: in force on no date we can name
        members = groups[title_key(row.title)]
        versions = tuple(sorted(members, key=lambda d: (starts[d] or "", d))) if len(members) > 1 else ()
        out[doc_id] = Span(start, end, validity, versions)
    return out


def documents_in_force(docs: Mapping[str, DocRow], in_force: Mapping[str, Span]) -> list[dict[str, Any]]:
    """Document rows (JSON shape) with the validity their span implies, when each is in force, and its versions."""
    out = []
    for doc_id, doc in docs.items():
        span = in_force[doc_id]
        meta = {**doc.meta.to_dict(), "validity": span.validity}
        out.append(
            {
                **doc.to_dict(),
                "meta": meta,
                "in_force": {"from": span.start, "until": span.end},
                "versions": list(span.versions),
            }
        )
    return out
