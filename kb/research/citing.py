"""法条联想: for an article, the passages of other documents that cite it, grouped by level.

The citing passages come from the index's cited-by table (kb.index.citedby), which resolved every reference
once per generation; this module finds the article a reader names and arranges what cites it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kb.errors import QueryError
from kb.index.citedby import Citing
from kb.legal.pinpoint import Place, book_title, cn, paragraph_starts, parse_citation, sub_of
from kb.research.compare import Article
from kb.research.laws import Laws, Version, cited_title
from kb.research.versions import earlier_articles
from kb.search.contract import Backend

# Levels in the order a researcher reads them: the law itself, how courts read it, then rules below it.
LEVEL_ORDER = ("法律", "司法解释", "行政法规", "部门规章", "地方性法规", "地方政府规章", "规范性文件")
OTHER_LEVEL = "其他"


@dataclass(frozen=True)
class CitingPassage:
    """One citing passage with the document it belongs to."""

    citing: Citing
    title: str
    level: str
    date: str | None
    via: str | None = None  # the earlier version's article it cites ("2021 第一百二十二条"), None for this one

    @property
    def citation(self) -> str:
        """《title》第二条 (the citing passage's own place)."""
        return book_title(self.title) + (self.citing.article or "")

    def to_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            **self.citing.to_dict(),
            "title": self.title,
            "level": self.level,
            "date": self.date,
            "citation": self.citation,
            "via": self.via,
        }


@dataclass(frozen=True)
class CitedBy:
    """An article and what cites it, by level (LEVEL_ORDER first, then others by name)."""

    place: Place
    version: Version
    chunk_id: str | None  # the cited article's first passage
    groups: tuple[tuple[str, tuple[CitingPassage, ...]], ...]
    title: str = ""  # the law as cited (a code's name for a part of it); the version's title when empty

    @property
    def count(self) -> int:
        """Citing passages (a passage citing the article twice counts once)."""
        return len({p.citing.chunk_id for _, ps in self.groups for p in ps})

    @property
    def older(self) -> int:
        """Citing passages made before this version came into force: they cite an earlier text of the law,
        whose article numbers may differ (kb.index.citedby.Citing.older)."""
        return len({p.citing.chunk_id for _, ps in self.groups for p in ps if p.citing.older})

    @property
    def citation(self) -> str:
        """《full title》第三十八条第二款."""
        return Place(
            self.title or self.version.title,
            self.place.article_no,
            self.place.sub,
            self.place.paragraphs,
            self.place.items,
        ).citation()

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `python -m kb cites --json`."""
        return {
            "citation": self.citation,
            "place": self.place.to_dict(),
            "version": self.version.to_dict(),
            "chunk_id": self.chunk_id,
            "count": self.count,
            "older": self.older,
            "groups": [{"level": level, "passages": [p.to_dict() for p in ps]} for level, ps in self.groups],
        }


def find_article(backend: Backend, laws: Laws, citation: str, when: str | None = None) -> tuple[Place, Version, str]:
    """The place a citation names and the indexed version and first chunk holding it.

    Raises:
        QueryError: no article named, no such law or version, or an article (款) the law does not have.
    """
    place = parse_citation(citation)
    if place is None or not place.law:
        raise QueryError(f"'{citation}' names no article of a law: write it as 《电子商务法》第三十八条")
    numbers: list[int] = []
    for version in laws.documents(place.law, when):
        _, chunks = backend.source(version.doc_id)
        numbers += [c.article_no for c in chunks if c.article_no is not None]
        parts = [c for c in chunks if c.article_no == place.article_no and sub_of(c.article) == place.sub]
        if not parts:
            continue
        paragraphs = sum(len(paragraph_starts(c.text, c.part > 0)) for c in parts)
        wrong = [p for p in place.paragraphs if p > paragraphs]
        if wrong:
            raise QueryError(f"{parts[0].article} of {version.title} has {paragraphs} 款, not 第{cn(wrong[0])}款")
        return place, version, parts[0].chunk_id
    if not numbers:
        raise QueryError(f"{place.law} has no numbered articles in the index")
    raise QueryError(
        f"{place.law} has no {place.label()}: its articles run 第{cn(min(numbers))}条 to 第{cn(max(numbers))}条"
    )


def cited_by(
    backend: Backend, citation: str, when: str | None = None, laws: Laws | None = None, earlier: bool = True
) -> CitedBy:
    """What cites the article a citation names (《中华人民共和国电子商务法》第三十八条, 公司法第七条第一款).

    Args:
        when: the version's year or date (default: the latest version).
        laws: the index's laws, when the caller keeps them (Laws(backend.documents())).
        earlier: also what cites the same article in earlier versions (found by aligning the versions; a
            passage citing 民事诉讼法(2021)第一百二十二条 counts for 民事诉讼法(2023)第一百二十二条), marked `via`.
    Raises:
        QueryError: see find_article; or the index has no cited-by table.
    """
    laws = laws or Laws(backend.documents())
    place, version, chunk_id = find_article(backend, laws, citation, when)
    paragraph = place.paragraphs[0] if len(place.paragraphs) == 1 else None
    before = earlier_articles(backend, laws, version, place.article_no, place.sub) if earlier else []
    groups = citing_groups(backend, laws, version.doc_id, place.article_no, place.sub, paragraph, before)
    return CitedBy(place, version, chunk_id, groups, cited_title(version.title))


def citing_groups(
    backend: Backend,
    laws: Laws,
    doc_id: str,
    article_no: int,
    sub: int | None = None,
    paragraph: int | None = None,
    earlier: Sequence[tuple[Version, Article]] = (),
) -> tuple[tuple[str, tuple[CitingPassage, ...]], ...]:
    """The passages citing one article of an indexed document, by level (the app's article view), then those
    citing its counterpart in each earlier version (kb.research.versions.earlier_articles; 款 numbers may
    differ between versions, so there the whole article counts).

    Raises:
        QueryError: the index has no cited-by table.
    """
    asked: list[tuple[list[Citing], str | None]] = [(backend.citing(doc_id, article_no, sub, paragraph), None)]
    for old, article in earlier:
        rows = backend.citing(old.doc_id, article.number, sub_of(article.label))
        asked.append((rows, f"{old.year} {article.label}"))
    grouped: dict[str, list[CitingPassage]] = {}
    seen: set[str] = set()
    for rows, via in asked:
        for row in rows:
            if row.chunk_id in seen:  # one passage citing the article twice (第一款 … 第二款) is listed once
                continue
            seen.add(row.chunk_id)
            doc = laws.rows.get(row.doc_id)
            level = (doc.level if doc else None) or OTHER_LEVEL
            passage = CitingPassage(row, doc.title if doc else row.doc_id, level, doc.date if doc else None, via)
            grouped.setdefault(level, []).append(passage)
    order = sorted(grouped, key=lambda lv: (LEVEL_ORDER.index(lv) if lv in LEVEL_ORDER else len(LEVEL_ORDER), lv))
    # Within a level, citations of this very text first; those made before it came into force after them.
    return tuple((lv, tuple(sorted(grouped[lv], key=lambda p: p.citing.older))) for lv in order)
