"""What a reference export cites: a law's article (with its 款 / 项) or a passage of another document.

Works come from search hits (the passage's own place, its pinpoint 款 included) or from a list of citations
(《电子商务法》第三十八条第二款, looked up in the index); kb.present.references writes them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from kb.research.citing import find_article
from kb.research.laws import Laws, cited_title
from kb.search.contract import Backend
from kb.search.hits import Hit


@dataclass(frozen=True)
class Work:
    """One cited item; legal is True for an article of a law, regulation or interpretation."""

    title: str
    lang: str
    locator: str | None  # 第三十八条第二款 / section 'Pilot zones' / p. 3
    legal: bool
    issuer: str | None = None
    published: str | None = None
    effective: str | None = None
    doc_number: str | None = None
    level: str | None = None
    doc_id: str = ""

    @property
    def key(self) -> str:
        """A citation key in ASCII, stable for the same title and place: law2018_1a2b3c."""
        digest = hashlib.sha1(f"{self.doc_id}|{self.title}|{self.locator}".encode()).hexdigest()[:6]
        return f"{'law' if self.legal else 'doc'}{(self.published or '')[:4] or 'nd'}_{digest}"

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "title": self.title,
            "lang": self.lang,
            "locator": self.locator,
            "legal": self.legal,
            "issuer": self.issuer,
            "published": self.published,
            "effective": self.effective,
            "doc_number": self.doc_number,
            "level": self.level,
            "doc_id": self.doc_id,
            "key": self.key,
        }


def work_of_hit(hit: Hit) -> Work:
    """The work a search hit cites: its article with the pinpoint 款, or its section and page."""
    c, m = hit.chunk, hit.meta
    if c.article:
        locator: str | None = hit.place.label() if hit.place else c.article
    else:
        bits = [
            f"section '{c.section.split(' / ')[-1]}'" if c.section else "",
            (f"pp. {c.page}–{c.page_end}" if c.page_end and c.page_end != c.page else f"p. {c.page}") if c.page else "",
        ]
        locator = ", ".join(b for b in bits if b) or None
    return Work(
        cited_title(c.title) if c.article else c.title,
        c.lang,
        locator,
        bool(c.article),
        m.issuer,
        m.published,
        m.effective,
        m.doc_number,
        m.level,
        c.doc_id,
    )


def works_of_citations(backend: Backend, citations: Iterable[str], laws: Laws | None = None) -> list[Work]:
    """Works for citations of articles (《电子商务法》第三十八条第二款), each looked up in the index.

    Raises:
        QueryError: a citation names no article, or a law, version or article the index lacks (kb.research.citing).
    """
    laws = laws or Laws(backend.documents())
    metas = {row["doc_id"]: row.get("meta") or {} for row in backend.documents()}
    out = []
    for text in citations:
        place, version, _ = find_article(backend, laws, text)
        meta = metas.get(version.doc_id, {})
        out.append(
            Work(
                cited_title(version.title),
                "zh",
                place.label(),
                True,
                meta.get("issuer"),
                meta.get("published"),
                meta.get("effective"),
                meta.get("doc_number"),
                meta.get("level"),
                version.doc_id,
            )
        )
    return out
