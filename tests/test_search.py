"""Query -> Hits: fusion, filters, citations, highlights, JSON shape, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BACKENDS, build_and_open, target_args

from kb.cite import citation, highlight_spans, mark
from kb.cli import main
from kb.errors import QueryError
from kb.search.searcher import Searcher

JSON_KEYS = {
    "rank",
    "score",
    "doc_id",
    "title",
    "citation",
    "article",
    "section",
    "page",
    "char_start",
    "char_end",
    "text",
}


def test_chinese_question_finds_article_with_citation(searcher: Searcher) -> None:
    hit = searcher.search("网购商品七日内无理由退货", 3)[0]
    assert hit.chunk.doc_id == "zh/ecommerce_law.md" and hit.chunk.article == "第四条"
    assert hit.citation == "《示范电子商务法》第四条"
    assert hit.rank == 1 and hit.meta.level == "法律"
    assert any("退货" in hit.chunk.text[s:e] for s, e in hit.highlights)


def test_english_question_finds_section(searcher: Searcher) -> None:
    hits = searcher.search("live-stream talent training", 5)
    top = hits[0]
    assert top.chunk.doc_id == "en/rural_commerce.md"
    assert top.citation == "Rural E-commerce in Zhijiang, section 'Economic Base'"
    assert "**Live-stream**" in mark(top.chunk.text, top.highlights)


def test_pdf_hit_cites_page(searcher: Searcher) -> None:
    hit = searcher.search("rural logistics county farmers", 3, docs=["report.pdf"])[0]
    assert hit.chunk.page == 2 or hit.chunk.page_end == 2
    assert ", p" in hit.citation


def test_filters_language_and_document(searcher: Searcher) -> None:
    assert {h.chunk.lang for h in searcher.search("e-commerce 电子商务", 20, lang="zh")} == {"zh"}
    assert {h.chunk.lang for h in searcher.search("e-commerce 电子商务", 20, lang="en")} == {"en"}
    hits = searcher.search("电子商务", 20, docs=["zh/policy_opinion.txt"])
    assert hits and {h.chunk.doc_id for h in hits} == {"zh/policy_opinion.txt"}


def test_modes(searcher: Searcher) -> None:
    kw = searcher.search("Sponsored listings advertisements", 3, mode="keyword")
    assert kw[0].chunk.doc_id == "en/notes.txt" and dict(kw[0].channels).keys() == {"bm25"}
    sem = searcher.search("Sponsored listings advertisements", 10, mode="semantic")
    assert set().union(*(dict(h.channels) for h in sem)) == {"dense", "dense_x"}  # no BM25
    english = searcher.search("Sponsored listings advertisements", 3, mode="semantic", lang="en")
    assert dict(english[0].channels).keys() == {"dense"}


@pytest.mark.parametrize("query, message", [("   ", "empty query"), ("", "empty query")])
def test_bad_queries(searcher: Searcher, query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        searcher.search(query)


def test_unknown_filter_values(searcher: Searcher) -> None:
    with pytest.raises(QueryError, match="no such document"):
        searcher.search("x", docs=["missing.txt"])
    with pytest.raises(QueryError, match="unknown mode"):
        searcher.search("x", mode="fuzzy")


def test_odd_queries_answer_without_error(searcher: Searcher) -> None:
    for q in ("a" * 10_000, "第\x00条\x07"):
        assert isinstance(searcher.search(q, 5), list)
    for q in ("？？？！！", "😀😀"):  # no words: a clear message, not arbitrary passages
        with pytest.raises(QueryError, match="only punctuation or symbols"):
            searcher.search(q, 5)


def test_citation_forms() -> None:
    from kb.chunk import Chunk

    zh = Chunk("a#1", "a", "中华人民共和国电子商务法", 1, "第三十八条 …", 0, 5, "zh", "第三十八条", 38, "第二章")
    assert citation(zh) == "《中华人民共和国电子商务法》第三十八条"
    en = Chunk("b#2", "b", "Zhijiang", 2, "text", 0, 4, "en", section="Overview / Economic Base", page=36, page_end=37)
    assert citation(en) == "Zhijiang, section 'Economic Base', pp. 36–37"
    assert highlight_spans("Live streaming bases train talent", "live-stream talent") == ((0, 14), (27, 33))


def test_cli_search_json_and_batch(searcher: Searcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = target_args(searcher)
    assert main(["search", "七日内无理由退货", *target, "--json", "-k", "2"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == 2 and JSON_KEYS <= set(items[0]) and items[0]["rank"] == 1
    assert items[0]["article"] == "第四条" and items[0]["meta"]["level"] == "法律"
    batch = tmp_path / "q.txt"
    batch.write_text("七日内无理由退货\nSponsored listings\n\n", encoding="utf-8")
    assert main(["search", "--batch", str(batch), *target, "-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])[0]["article"] == "第四条"
    assert json.loads(lines[1])[0]["doc_id"] == "en/notes.txt"
    assert json.loads(lines[2]) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_errors_are_one_line(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = (
        ["--index", str(tmp_path / "none")]
        if backend == "faiss"
        else ["--backend", "milvus", "--uri", str(tmp_path / "none.db")]
    )
    assert main(["search", "x", *target]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no index") and "\n" not in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_build_reports_skips(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "ok.txt").write_text("A fine title here\n\nUseful words about tariffs.", encoding="utf-8")
    (corpus / "empty.txt").write_bytes(b"")
    target = (
        ["--index", str(tmp_path / "i")]
        if backend == "faiss"
        else ["--backend", "milvus", "--uri", str(tmp_path / "i.db")]
    )
    code = main(["build", "--corpus", str(corpus), *target, "--model", "hashing", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "indexed 1 files" in out and "skipped 1" in out and "skipped empty.txt: empty file" in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_passages_show_once_with_their_other_documents(backend: str, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    law = "示范法\n\n第一条 网络经营者应当公示退货规则。\n第二条 乙。\n第三条 丙。\n"
    (corpus / "v2018.txt").write_text(law, encoding="utf-8")
    (corpus / "v2021.txt").write_text(law.replace("乙", "乙二"), encoding="utf-8")
    hits = build_and_open(backend, corpus, tmp_path).search("公示退货规则", 10)
    firsts = [h for h in hits if h.chunk.article == "第一条"]
    assert len(firsts) == 1 and {firsts[0].chunk.doc_id, *firsts[0].also_in} == {"v2018.txt", "v2021.txt"}
    assert len({"".join(h.chunk.text.split()) for h in hits}) == len(hits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repealed_texts_are_hidden_unless_asked_for(backend: str, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "old.txt").write_text(
        "旧合同法\n\n第一条 合同应当采用书面形式。\n第二条 乙。\n第三条 丙。\n", encoding="utf-8"
    )
    (corpus / "old.txt.meta.json").write_text('{"validity": "已废止"}', encoding="utf-8")
    searcher = build_and_open(backend, corpus, tmp_path)
    assert searcher.search("合同书面形式", 5) == []
    shown = searcher.search("合同书面形式", 5, include_repealed=True)
    assert shown[0].chunk.doc_id == "old.txt" and shown[0].meta.validity == "已废止"


def test_cli_batch_keeps_order_when_a_line_is_bad(
    searcher: Searcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "q.txt"
    batch.write_text("七日内无理由退货\n？？？\n\nlive-stream talent\n", encoding="utf-8")
    assert main(["search", "--batch", str(batch), *target_args(searcher), "-k", "1"]) == 1
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [len(x) for x in lines] == [1, 0, 0, 1]
    assert "line 2: nothing to search for" in out.err
