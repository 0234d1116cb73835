"""Reference export: GB/T 7714-2015, BibTeX, CSL-JSON and RIS for works (kb.research.works).

GB/T 7714-2015 has no document type for legislation; laws are written in the form Chinese legal scholarship
commonly uses with it, 题名: 条款[A]. 发布日期. (中华人民共和国电子商务法: 第三十八条[A]. 2018-08-31.), and other
documents as 题名[Z]. 日期: 位置. ([Z], 其他). docs/RESEARCH.md gives the reasons. BibTeX uses @misc (standard
BibTeX has no legislation type); CSL-JSON "legislation" (CSL 1.0.2) with section and authority; RIS "STAT".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from kb.research.works import Work

FORMATS = ("gbt7714", "bibtex", "csl-json", "ris")
SUFFIX = {"gbt7714": "txt", "bibtex": "bib", "csl-json": "json", "ris": "ris"}
LABEL = {"gbt7714": "GB/T 7714", "bibtex": "BibTeX", "csl-json": "CSL-JSON", "ris": "RIS"}
MIME = {
    "gbt7714": "text/plain",
    "bibtex": "application/x-bibtex",
    "csl-json": "application/json",
    "ris": "application/x-research-info-systems",
}
_BIB_SPECIAL = re.compile(r"([\\{}&%$#_^~])")


def export(works: Iterable[Work], fmt: str) -> str:
    """The works in one format (FORMATS).

    Raises:
        ValueError: an unknown format (the CLI and the app offer only FORMATS).
    """
    works = list(works)
    if fmt == "gbt7714":
        return "\n".join(f"[{n}] {gbt7714(w)}" for n, w in enumerate(works, start=1)) + "\n"
    if fmt == "bibtex":
        return "\n".join(bibtex(w) for w in works)
    if fmt == "csl-json":
        return json.dumps([csl(w) for w in works], ensure_ascii=False, indent=1) + "\n"
    if fmt == "ris":
        return "".join(ris(w) for w in works)
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def gbt7714(w: Work) -> str:
    """中华人民共和国电子商务法: 第三十八条第二款[A]. 2018-08-31."""
    date = w.published or w.effective
    if w.legal:
        out = w.title + (f": {w.locator}" if w.locator else "") + "[A]."
        return out + (f" {date}." if date else "")
    out = f"{w.title}[Z]."
    if date or w.locator:
        out += f" {date or ''}" + (f": {w.locator}" if w.locator else "") + "."
    return out.replace(" .", ".")


def _bib(text: str) -> str:
    return _BIB_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def bibtex(w: Work) -> str:
    """A @misc entry (title, note = the article or page, author = the issuing body in braces, date, number)."""
    fields = [
        ("title", w.title),
        ("note", w.locator),
        ("author", f"{{{_bib(w.issuer)}}}" if w.issuer else None),
        ("date", w.published),
        ("year", (w.published or "")[:4] or None),
        ("number", w.doc_number),
        ("howpublished", w.level),
        ("language", "chinese" if w.lang == "zh" else "english"),
    ]
    body = ",\n".join(f"  {k} = {{{v if k == 'author' else _bib(v)}}}" for k, v in fields if v)
    return f"@misc{{{w.key},\n{body}\n}}\n"


def csl(w: Work) -> dict[str, object]:
    """A CSL-JSON item: type legislation (or document), section, authority, issued date parts."""
    item: dict[str, object] = {
        "id": w.key,
        "type": "legislation" if w.legal else "document",
        "title": w.title,
        "language": "zh-CN" if w.lang == "zh" else "en",
    }
    if w.locator:
        item["section"] = w.locator
    if w.issuer:
        item["authority"] = w.issuer
    if w.doc_number:
        item["number"] = w.doc_number
    if w.level:
        item["genre"] = w.level
    if w.published:
        item["issued"] = {"date-parts": [[int(p) for p in w.published.split("-")]]}
    return item


def ris(w: Work) -> str:
    """A RIS record: TY STAT (or GEN), TI, SE, PB (issuer), DA, PY, M1 (文号), LA, N1 (level), ER."""
    date = w.published
    tags = [
        ("TY", "STAT" if w.legal else "GEN"),
        ("TI", w.title),
        ("SE", w.locator),
        ("PB", w.issuer),
        ("DA", date.replace("-", "/") if date else None),
        ("PY", date[:4] if date else None),
        ("M1", w.doc_number),
        ("LA", w.lang),
        ("N1", w.level),
        ("ID", w.key),
    ]
    lines = [f"{tag}  - {' '.join(str(value).split())}" for tag, value in tags if value]
    return "\n".join(lines) + "\nER  - \n\n"
