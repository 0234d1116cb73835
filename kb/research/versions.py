"""The library calls behind `python -m kb diff`: compare two versions of a law in an index."""

from __future__ import annotations

from kb.errors import QueryError
from kb.legal.pinpoint import sub_of
from kb.research.compare import Article, Comparison, compare_texts
from kb.research.laws import Laws, Version
from kb.search.contract import Backend


def compare_versions(
    backend: Backend, law: str, since: str | None = None, until: str | None = None, laws: Laws | None = None
) -> Comparison:
    """新旧对照 of a law between two versions (years or dates); defaults: the one before the latest, the latest.

    Raises:
        QueryError: no such law, a year with no version, a law with one version, or the same version twice.
    """
    laws = laws or Laws(backend.documents())
    versions = laws.versions(law)
    if len(versions) < 2:
        raise QueryError(
            f"the index holds one version of {versions[0].title} ({versions[0].year or 'undated'}); nothing to compare"
        )
    new = laws.version(law, until)
    if since is None:
        older = [v for v in versions if (v.date or "") < (new.date or "")]
        old = older[-1] if older else versions[0]
    else:
        old = laws.version(law, since)
    if old.doc_id == new.doc_id:
        raise QueryError(
            f"--from and --to name the same version of {new.title} ({new.year}); the index holds: "
            + ", ".join(v.year or "undated" for v in versions)
        )
    return compare_texts(old, new, backend.source(old.doc_id), backend.source(new.doc_id))


def earlier_articles(
    backend: Backend, laws: Laws, version: Version, article_no: int, sub: int | None = None
) -> list[tuple[Version, Article]]:
    """The article of each earlier version that became this one (aligned by content: kb.research.compare), so
    what cites 民事诉讼法(2021)第一百二十二条 is found for 民事诉讼法(2023)第一百二十二条; versions where the
    article is new are left out."""
    out = []
    for old in laws.versions(version.title):
        if old.doc_id == version.doc_id or (old.start or old.date or "") >= (version.start or version.date or ""):
            continue
        result = compare_texts(old, version, backend.source(old.doc_id), backend.source(version.doc_id))
        for pair in result.pairs:
            new = pair.new
            if pair.old and new and new.number == article_no and sub_of(new.label) == sub:
                out.append((old, pair.old))
    return out
