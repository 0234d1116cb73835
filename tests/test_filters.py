"""Metadata filters, facets, versions and as-of search (kb.catalog.filters, kb.catalog.timeline) through Searcher and the CLI."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKENDS, build_and_open, target_args

from kb.catalog.filters import parse_date
from kb.catalog.timeline import spans
from kb.cli import main
from kb.errors import QueryError
from kb.ingest.document import DocRow
from kb.search.searcher import Searcher

ARTICLES = "第一条 公司注册资本{}。\n第二条 公司登记{}。\n第三条 本法自{}起施行。\n"
META = """doc_id,title,level,issuer,published,effective,validity,repealed
company2018.txt,中华人民共和国示范公司法,法律,全国人民代表大会常务委员会,2018-10-26,2018-10-26,,
company2023.txt,中华人民共和国示范公司法,法律,全国人民代表大会常务委员会,2023-12-29,2024-07-01,,
future.txt,示范未来条例,行政法规,国务院,2998-06-01,2999-01-01,,
old.txt,示范旧条例,行政法规,国务院,2001-01-01,2001-03-01,,
new.txt,示范新条例,行政法规,国务院,2015-10-01,2016-01-01,,
gone.txt,示范失效办法,部门规章,国家市场监督管理总局,2005-01-01,2005-02-01,已废止,
dated.txt,示范到期办法,部门规章,国家市场监督管理总局,2006-01-01,2006-02-01,已废止,2015-01-01
local.txt,示范省公司登记条例,地方性法规,示范省人民代表大会常务委员会,2019-05-01,2019-07-01,,
"""


def write_corpus(corpus: Path) -> Path:
    """Versions of one law, a repeal by a later text, a stated repeal with and without a date, a future law."""
    corpus.mkdir()
    texts = {
        "company2018.txt": ARTICLES.format("实行认缴制", "甲", "2018年10月26日"),
        "company2023.txt": ARTICLES.format("五年内缴足", "乙", "2024年7月1日"),
        "future.txt": ARTICLES.format("将来规定", "丙", "2999年1月1日"),
        "old.txt": ARTICLES.format("旧规定", "丁", "2001年3月1日"),
        "new.txt": ARTICLES.format("新规定", "戊", "2016年1月1日") + "第四条 《示范旧条例》同时废止。\n",
        "gone.txt": ARTICLES.format("失效规定", "己", "2005年2月1日"),
        "dated.txt": ARTICLES.format("到期规定", "庚", "2006年2月1日"),
        "local.txt": ARTICLES.format("地方规定", "辛", "2019年7月1日"),
        "note.md": "# Company capital note\n\nCommentary on company registered capital (公司注册资本).\n",
    }
    for name, text in texts.items():
        (corpus / name).write_text(text, encoding="utf-8")
    (corpus / "metadata.csv").write_text(META, encoding="utf-8")
    return corpus


@pytest.fixture(scope="module", params=BACKENDS)
def searcher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Searcher]:
    """Every filter test runs on the FAISS index and on milvus-lite (filters pushed down as expressions)."""
    corpus = write_corpus(tmp_path_factory.mktemp("c") / "corpus")
    searcher = build_and_open(request.param, corpus, tmp_path_factory.mktemp("i"))
    yield searcher  # type: ignore[misc]
    if hasattr(searcher, "close"):
        searcher.close()


def found(searcher: Searcher, **filters: object) -> set[str]:
    """The documents a broad keyword query returns under the filters."""
    return {h.chunk.doc_id for h in searcher.search("公司注册资本", 50, mode="keyword", **filters)}  # type: ignore[arg-type]


def test_default_hides_repealed_and_superseded_versions(searcher: Searcher) -> None:
    assert found(searcher) == {"company2023.txt", "future.txt", "new.txt", "local.txt", "note.md"}
    shown = {h.chunk.doc_id: h for h in searcher.search("公司注册资本", 50, mode="keyword", include_repealed=True)}
    assert set(shown) == {*found(searcher), "company2018.txt", "old.txt", "gone.txt", "dated.txt"}
    # Statuses: stated in metadata.csv, or derived from a later version / a repeal statement.
    assert shown["company2018.txt"].meta.validity == "已修改"
    assert shown["old.txt"].meta.validity == "已废止" and shown["gone.txt"].meta.validity == "已废止"
    assert shown["future.txt"].meta.validity == "尚未生效"
    assert shown["company2018.txt"].to_dict()["versions"] == ["company2018.txt", "company2023.txt"]
    assert shown["company2018.txt"].to_dict()["in_force"] == {"from": "2018-10-26", "until": "2024-07-01"}


@pytest.mark.parametrize(
    "day, expected",
    [
        ("2000-06-01", {"note.md"}),  # nothing in force yet; the undated commentary stays
        ("2010-06-01", {"note.md", "old.txt", "dated.txt"}),  # gone.txt: repealed, date unknown
        ("2015-06-01", {"note.md", "old.txt"}),  # dated.txt repealed 2015-01-01
        ("2017-06-01", {"note.md", "new.txt"}),  # new.txt repealed old.txt on taking effect, 2016-01-01
        ("2020-01-01", {"note.md", "new.txt", "company2018.txt", "local.txt"}),
        ("2024-07-01", {"note.md", "new.txt", "company2023.txt", "local.txt"}),  # the new version on its first day
    ],
)
def test_as_of_returns_what_was_in_force(searcher: Searcher, day: str, expected: set[str]) -> None:
    assert found(searcher, as_of=day) == expected


def test_as_of_never_returns_a_law_before_it_took_effect(searcher: Searcher) -> None:
    assert "new.txt" not in found(searcher, as_of="2015-12-31")
    assert "new.txt" in found(searcher, as_of="2016-01-01")
    assert "future.txt" not in found(searcher, as_of=datetime.date.today().isoformat())
    # A text repealed with no known date is never shown as in force; asked for, it is shown once started.
    assert "gone.txt" not in found(searcher, as_of="2005-06-01")
    assert "gone.txt" in found(searcher, as_of="2005-06-01", include_repealed=True)
    assert "gone.txt" not in found(searcher, as_of="2004-06-01", include_repealed=True)


def test_level_issuer_date_and_validity_filters(searcher: Searcher) -> None:
    assert found(searcher, levels=["部门规章"], include_repealed=True) == {"gone.txt", "dated.txt"}
    assert found(searcher, levels=["法律", "地方性法规"]) == {"company2023.txt", "local.txt"}
    assert found(searcher, issuers=["市场监督管理"], include_repealed=True) == {"gone.txt", "dated.txt"}
    assert found(searcher, date_from="2019", date_to="2023-11") == {"local.txt"}
    assert found(searcher, date_from="2024-01-01", date_to="2024-12-31", date_field="effective") == {"company2023.txt"}
    assert found(searcher, validity=["已修改"]) == {"company2018.txt"}
    assert found(searcher, validity=["已废止"]) == {"old.txt", "gone.txt", "dated.txt"}


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"levels": ["法规"]}, "unknown level '法规': the index holds"),
        ({"issuers": ["总理"]}, "no indexed document is issued by '总理'"),
        ({"validity": ["有效"]}, "unknown validity '有效': use one of 现行有效"),
        ({"as_of": "2019-02-30"}, "as_of: '2019-02-30' is not a date"),
        ({"date_from": "2020", "date_to": "2019"}, "date_from 2020 is after date_to 2019: swap them"),
        ({"date_from": "2020", "date_field": "adopted"}, "unknown date field 'adopted'"),
    ],
)
def test_bad_filter_values_raise_with_the_fix(searcher: Searcher, filters: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        searcher.search("公司", 5, **filters)


def test_partial_dates() -> None:
    assert parse_date("2019", "x") == 20190101 and parse_date("2019", "x", end=True) == 20191231
    assert parse_date("2024-02", "x", end=True) == 20240229 and parse_date("2019-1-5", "x") == 20190105


def test_facets_list_what_the_sidebar_offers(searcher: Searcher) -> None:
    facets = searcher.facets()
    assert dict(facets.levels) == {"行政法规": 3, "法律": 2, "部门规章": 2, "地方性法规": 1, "commentary": 1}
    assert facets.levels[0] == ("行政法规", 3)
    assert dict(facets.issuers)["国务院"] == 3
    assert dict(facets.validity) == {"已修改": 1, "已废止": 3, "尚未生效": 1}
    assert facets.published == ("2001-01-01", "2998-06-01") and facets.documents == 9
    assert json.loads(json.dumps(facets.to_dict(), ensure_ascii=False))["langs"] == {"zh": 8, "en": 1}


def test_spans_keep_stated_validity_over_shared_titles() -> None:
    docs = {
        "a": {"title": "国务院关于修改部分行政法规的决定", "meta": {"published": "2016-02-06", "validity": "现行有效"}},
        "b": {"title": "国务院关于修改部分行政法规的决定", "meta": {"published": "2019-03-02", "validity": "现行有效"}},
    }
    out = spans({d: DocRow.from_dict(d, row) for d, row in docs.items()}, datetime.date(2025, 1, 1))
    assert out["a"].end is None and out["a"].validity == "现行有效" and out["a"].versions == ("a", "b")


def test_cli_filters_and_docs_listing(searcher: Searcher, capsys: pytest.CaptureFixture[str]) -> None:
    index = target_args(searcher)
    assert (
        main(
            [
                "search",
                "公司注册资本",
                *index,
                "--mode",
                "keyword",
                "--json",
                "--as-of",
                "2020-01-01",
                "--level",
                "法律",
            ]
        )
        == 0
    )
    items = json.loads(capsys.readouterr().out)
    assert {i["doc_id"] for i in items} == {"company2018.txt"}
    assert items[0]["meta"]["validity"] == "已修改" and items[0]["in_force"]["until"] == "2024-07-01"
    assert (
        main(["search", "公司注册资本", *index, "--mode", "keyword", "--valid-on", "2000-01-01", "--level", "法律"])
        == 0
    )
    assert "no results (try without --level/--as-of)" in capsys.readouterr().out
    assert main(["search", "公司", *index, "--from", "2019-13"]) == 1
    assert capsys.readouterr().err.startswith("error: date_from: '2019-13' is not a date")
    assert main(["docs", *index, "--json"]) == 0
    docs = {d["doc_id"]: d for d in json.loads(capsys.readouterr().out)}
    assert docs["old.txt"]["meta"]["validity"] == "已废止" and docs["old.txt"]["in_force"]["until"] == "2016-01-01"
    assert docs["local.txt"]["meta"]["level"] == "地方性法规" and docs["local.txt"]["chunks"] == 3
    assert main(["docs", *index, "--facets"]) == 0
    assert json.loads(capsys.readouterr().out)["levels"]["法律"] == 2
