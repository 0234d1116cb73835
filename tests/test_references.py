"""Reference export: each format read back by a real parser (citeproc-py, bibtexparser, rispy), on Chinese
and English hits and on a list of cited articles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import bibtexparser
import citeproc
import pytest
import rispy
from citeproc import Citation, CitationItem, CitationStylesBibliography, CitationStylesStyle, formatter
from citeproc.source.json import CiteProcJSON
from test_research import build_research

from kb import cli
from kb.present.references import export
from kb.research.works import Work, work_of_hit, works_of_citations
from kb.search.searcher import Searcher

STYLE = Path(citeproc.__file__).parent / "data" / "styles" / "harvard-cite-them-right.csl"


@pytest.fixture(scope="module")
def works(tmp_path_factory: pytest.TempPathFactory) -> list[Work]:
    """A Chinese hit with its pinpoint 款, an English hit, and two cited articles from a list."""
    searcher = Searcher(build_research(tmp_path_factory.mktemp("refs")))
    zh = next(h for h in searcher.search("续保 投保金额 承保范围 保险费率", 3) if h.place)
    en = searcher.search("platform joint liability knowledge standard", 1, lang="en")[0]
    listed = works_of_citations(searcher, ["《中华人民共和国电子商务法》第三十八条第二款", "公司法第三条"])
    return [work_of_hit(zh), work_of_hit(en), *listed]


def test_works_carry_the_pinpoint_and_the_metadata(works: list[Work]) -> None:
    zh, en, ecommerce, company = works
    assert (zh.title, zh.locator, zh.legal) == ("中华人民共和国公司法", "第八条第三款", True)
    assert (en.legal, en.lang, en.locator) == (False, "en", "section 'Joint liability & the knowledge standard'")
    assert (ecommerce.locator, ecommerce.issuer, ecommerce.doc_number, ecommerce.published) == (
        "第三十八条第二款",
        "全国人民代表大会常务委员会",
        "主席令第七号",
        "2018-08-31",
    )
    assert company.published == "2023-12-29"  # the latest version when none is named
    assert len({w.key for w in works}) == 4 and all(w.key.isascii() for w in works)


def test_gbt7714_legal_form(works: list[Work]) -> None:
    lines = export(works, "gbt7714").splitlines()
    assert lines[2] == "[3] 中华人民共和国电子商务法: 第三十八条第二款[A]. 2018-08-31."
    assert lines[0] == "[1] 中华人民共和国公司法: 第八条第三款[A]. 2023-12-29."
    assert lines[1] == (
        "[2] Platform Liability under China's E-Commerce Law[Z]. 2024-01-15: "
        "section 'Joint liability & the knowledge standard'."
    )
    form = re.compile(r"^\[(\d+)\] (?P<title>[^:\[]+)(?:: (?P<loc>[^\[]+))?\[(?P<type>[AZ])\]\.(?: (?P<rest>.+))?$")
    for n, (line, w) in enumerate(zip(lines, works), start=1):
        m = form.match(line)
        assert m is not None and m.group(1) == str(n), line
        assert (m.group("title"), m.group("type")) == (w.title, "A" if w.legal else "Z")


def test_bibtex_is_read_back_by_bibtexparser(works: list[Work]) -> None:
    library = bibtexparser.parse_string(export(works, "bibtex"))
    assert library.failed_blocks == []
    entries = library.entries
    assert [e.key for e in entries] == [w.key for w in works]
    assert [e.entry_type for e in entries] == ["misc"] * 4
    assert entries[2]["title"] == "中华人民共和国电子商务法"
    assert entries[2]["note"] == "第三十八条第二款"
    assert entries[2]["author"] == "{全国人民代表大会常务委员会}"  # a body, not a person's name
    assert entries[2]["year"] == "2018"
    assert entries[1]["note"] == "section 'Joint liability \\& the knowledge standard'"  # & escaped
    assert entries[1]["language"] == "english"


def test_csl_json_is_rendered_by_citeproc(works: list[Work]) -> None:
    items = json.loads(export(works, "csl-json"))
    assert [i["type"] for i in items] == ["legislation", "document", "legislation", "legislation"]
    assert items[2]["section"] == "第三十八条第二款"
    assert items[2]["issued"] == {"date-parts": [[2018, 8, 31]]}
    bibliography = CitationStylesBibliography(
        CitationStylesStyle(str(STYLE), validate=False), CiteProcJSON(items), formatter.plain
    )
    for item in items:
        bibliography.register(Citation([CitationItem(item["id"])]))
    rendered = [str(entry) for entry in bibliography.bibliography()]
    assert any("中华人民共和国电子商务法" in r and "2018" in r for r in rendered)
    assert any("Platform Liability under China" in r and "2024" in r for r in rendered)


def test_ris_is_read_back_by_rispy(works: list[Work]) -> None:
    records = rispy.loads(export(works, "ris"))
    assert [r["type_of_reference"] for r in records] == ["STAT", "GEN", "STAT", "STAT"]
    assert records[2]["title"] == "中华人民共和国电子商务法"
    assert records[2]["section"] == "第三十八条第二款"
    assert records[2]["publisher"] == "全国人民代表大会常务委员会"
    assert (records[2]["date"], records[2]["year"]) == ("2018/08/31", "2018")
    assert records[1]["title"] == "Platform Liability under China's E-Commerce Law"
    assert [r["id"] for r in records] == [w.key for w in works]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format 'word'"):
        export([], "word")


def test_cli_search_and_export_print_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = build_research(tmp_path)
    assert cli.main(["search", "平台 资质 审核 义务", "-k", "2", "--index", str(index), "--format", "ris"]) == 0
    records = rispy.loads(capsys.readouterr().out)
    assert len(records) == 2 and all(r["type_of_reference"] == "STAT" for r in records)
    assert cli.main(["export", "《电子商务法》第三十八条第二款", "--index", str(index), "--format", "bibtex"]) == 0
    entry = bibtexparser.parse_string(capsys.readouterr().out).entries[0]
    assert entry["note"] == "第三十八条第二款"
    assert cli.main(["cites", "《电子商务法》第三十八条", "--index", str(index), "--format", "csl-json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [i["section"] for i in items] == ["第二条", "第三条", "第二条", "第二条"]
