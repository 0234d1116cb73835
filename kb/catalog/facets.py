"""Facets: what a sidebar offers to filter on, with document counts, and the date ranges of the index."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from kb.catalog.filters import date_int
from kb.catalog.timeline import Span
from kb.ingest.document import DocRow


@dataclass(frozen=True)
class Facets:
    """What the index holds, for a filter sidebar: (value, number of documents), most frequent first."""

    levels: tuple[tuple[str, int], ...]
    issuers: tuple[tuple[str, int], ...]
    validity: tuple[tuple[str, int], ...]
    regions: tuple[tuple[str, int], ...]
    langs: tuple[tuple[str, int], ...]
    published: tuple[str | None, str | None]  # earliest and latest known date
    effective: tuple[str | None, str | None]
    documents: int = 0
    unknown: dict[str, int] = field(default_factory=dict)  # documents with no value, per field

    def to_dict(self) -> dict[str, object]:
        """Plain JSON shape."""
        return {
            "levels": dict(self.levels),
            "issuers": dict(self.issuers),
            "validity": dict(self.validity),
            "regions": dict(self.regions),
            "langs": dict(self.langs),
            "published": list(self.published),
            "effective": list(self.effective),
            "documents": self.documents,
            "unknown": dict(self.unknown),
        }


def facets(docs: Mapping[str, DocRow], spans: Mapping[str, Span]) -> Facets:
    """Distinct levels, issuers, validity, regions and languages with document counts, and date ranges."""
    count: dict[str, Counter[str]] = {k: Counter() for k in ("level", "issuer", "validity", "region", "lang")}
    dates: dict[str, list[str]] = {"published": [], "effective": []}
    unknown: Counter[str] = Counter()
    for doc_id, doc in docs.items():
        meta = doc.meta
        values = {
            "level": meta.level,
            "issuer": meta.issuer,
            "region": meta.region,
            "validity": spans[doc_id].validity,
            "lang": doc.lang,
        }
        for key, value in values.items():
            if value:
                count[key][str(value)] += 1
            else:
                unknown[key] += 1
        for key in dates:
            value = getattr(meta, key)
            if date_int(value):
                dates[key].append(str(value)[:10])
            else:
                unknown[key] += 1

    def ranked(key: str) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(count[key].items(), key=lambda kv: (-kv[1], kv[0])))

    def span_of(key: str) -> tuple[str | None, str | None]:
        return (min(dates[key]), max(dates[key])) if dates[key] else (None, None)

    return Facets(
        levels=ranked("level"),
        issuers=ranked("issuer"),
        validity=ranked("validity"),
        regions=ranked("region"),
        langs=ranked("lang"),
        published=span_of("published"),
        effective=span_of("effective"),
        documents=len(docs),
        unknown=dict(unknown),
    )
