"""Which law and which version a reader means: "公司法" --from 2018 -> the indexed document of that version.

Versions of one law share a ``title_key`` (kb.catalog.timeline); a name matches a law when its key is the
law's key, else when it is part of exactly one law's key. Every failure is a QueryError whose one line names
the candidates, so a reader can retype.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

from kb.errors import QueryError
from kb.legal.meta import title_key
from kb.legal.xref import NAME_END

_SHOWN = 5  # candidates named in an error message
_PART = re.compile(r"(?:编|总则|附则)$")


@dataclass(frozen=True)
class Version:
    """One indexed version of a law: its document, title, version date (ISO) and validity."""

    doc_id: str
    title: str
    date: str | None
    validity: str | None
    level: str | None
    start: str | None = None  # the day it came (or comes) into force, when known

    @property
    def year(self) -> str:
        return (self.date or "")[:4]

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "date": self.date,
            "in_force_from": self.start,
            "validity": self.validity,
            "level": self.level,
        }


def cited_title(title: str) -> str:
    """The title a citation uses: the code's for a part of a code filed in parts (中华人民共和国民法典, not
    中华人民共和国民法典 侵权责任编: its articles are numbered across the parts), else the title itself."""
    head, _, part = title.partition(" ")
    return head if part and NAME_END.search(head) and _PART.search(part) else title


class Laws:
    """The laws of an index grouped by title key, each with its versions oldest first."""

    def __init__(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """documents: the rows of Backend.documents() (doc_id, title, meta, in_force)."""
        self.by_key: dict[str, list[Version]] = {}
        self.books: dict[str, list[Version]] = {}  # a code filed in parts: 民法典 -> 总则, 物权编, ...
        self.rows: dict[str, Version] = {}
        for row in documents:
            meta = row.get("meta") or {}
            start = (row.get("in_force") or {}).get("from")
            # A version is named by the year it was adopted (公司法 2023), which is its published date; it may come
            # into force later (2024-07-01), and is ordered by that.
            date = meta.get("published") or start or meta.get("effective")
            version = Version(
                str(row["doc_id"]), str(row["title"]), date, meta.get("validity"), meta.get("level"), start or date
            )
            self.by_key.setdefault(title_key(version.title), []).append(version)
            self.rows[version.doc_id] = version
            head = version.title.split()
            if len(head) > 1 and NAME_END.search(head[0]):
                self.books.setdefault(title_key(head[0]), []).append(version)
        for versions in self.by_key.values():
            versions.sort(key=lambda v: (v.start or v.date or "", v.doc_id))

    def versions(self, name: str) -> list[Version]:
        """The versions of the one law a name (full or short title, with or without 《》) matches.

        Raises:
            QueryError: the name matches no law (the closest titles named) or several (they are named).
        """
        key = title_key(name.strip())
        if not key:
            raise QueryError("give a law's title, e.g. 公司法 or 《中华人民共和国电子商务法》")
        if key in self.by_key:
            return self.by_key[key]
        if key in self.books:
            raise QueryError(
                f"{name} is filed in parts; name one: " + "; ".join(v.title for v in self.books[key][: _SHOWN * 2])
            )
        inside = sorted((k for k in self.by_key if key in k), key=len)
        if len(inside) == 1:
            return self.by_key[inside[0]]
        if inside:
            names = "; ".join(self.by_key[k][-1].title for k in inside[:_SHOWN])
            more = f" (and {len(inside) - _SHOWN} more)" if len(inside) > _SHOWN else ""
            raise QueryError(f"'{name}' matches {len(inside)} laws: {names}{more}; give the full title")
        close = process.extract(key, list(self.by_key), scorer=fuzz.WRatio, limit=_SHOWN)
        names = "; ".join(self.by_key[k][-1].title for k, _, _ in close)
        raise QueryError(f"no law in the index matches '{name}'; closest: {names or 'none (the index is empty)'}")

    def documents(self, name: str, when: str | None = None) -> list[Version]:
        """The documents holding a law's articles: its version of `when` (else the latest), or every part of a
        code filed in parts (民法典: 总则, 物权编, ...; articles are numbered across them).

        Raises:
            QueryError: as `version`.
        """
        key = title_key(name.strip())
        if key and key not in self.by_key and key in self.books:
            return sorted(self.books[key], key=lambda v: v.doc_id)
        return [self.version(name, when)]

    def version(self, name: str, when: str | None = None) -> Version:
        """One version of a law: the one of year (or date) `when`, else the latest.

        Raises:
            QueryError: no such law, or no version of that year (the years there are named).
        """
        versions = self.versions(name)
        if when is None or not when.strip():
            return versions[-1]
        when = when.strip()
        found = [v for v in versions if v.date and v.date.startswith(when)]
        found = found or [v for v in versions if v.start and v.start.startswith(when)]
        if not found:
            years = ", ".join(v.year or "undated" for v in versions)
            raise QueryError(f"{versions[-1].title} has no version of {when}; the index holds: {years}")
        return found[-1]
