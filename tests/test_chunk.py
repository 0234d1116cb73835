"""Document -> Chunks: articles, headings, references, overlong splits, policy headings, English windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb import config
from kb.chunk import chunk_document
from kb.ingest.read import read_document, walk_corpus
from kb.legal.structure import cn_number, find_articles

ROOT = Path(__file__).parent.parent


def test_cn_numbers() -> None:
    assert [
        cn_number(x) for x in ("一", "十", "十一", "二十", "三十八", "一百", "一百零五", "一千二百三十四", "38")
    ] == [1, 10, 11, 20, 38, 100, 105, 1234, 38]


def test_one_chunk_per_article_with_heading_path(corpus: Path) -> None:
    doc = read_document(corpus, "zh/ecommerce_law.md")
    chunks = chunk_document(doc)
    arts = [(c.article, c.section) for c in chunks if c.article and c.part == 0]
    assert arts == [
        ("第一条", "第一章 总则"),
        ("第二条", "第一章 总则"),
        ("第三条", "第一章 总则 / 第一节 一般规定"),
        ("第四条", "第一章 总则 / 第一节 一般规定"),
        ("第五条", "第二章 电子商务经营者"),
        ("第六条", "第二章 电子商务经营者"),
        ("第七条", "第二章 电子商务经营者"),
    ]
    assert chunks[0].article is None and chunks[0].section == "序言"


def test_reference_does_not_start_an_article(corpus: Path) -> None:
    doc = read_document(corpus, "zh/ecommerce_law.md")
    third = next(c for c in chunk_document(doc) if c.article == "第三条")
    # Both the inline reference and the line that starts with "第六十一条规定" stay inside 第三条.
    assert "依照本法第六十一条的规定" in third.text
    assert third.text.endswith("第六十一条规定的情形，由市场监督管理部门处理。")


def test_article_sharing_a_line_and_ideographic_space(corpus: Path) -> None:
    doc = read_document(corpus, "zh/ecommerce_law.md")
    chunks = {c.article: c for c in chunk_document(doc) if c.article}
    assert chunks["第二条"].text.startswith("第二条　中华人民共和国境内")
    assert chunks["第六条"].text == "第六条 直播营销人员应当如实介绍商品。"
    assert chunks["第七条"].text == "第七条 本法自2019年1月1日起施行。"


def test_overlong_article_splits_at_paragraphs_and_keeps_number(corpus: Path) -> None:
    doc = read_document(corpus, "zh/ecommerce_law.md")
    parts = [c for c in chunk_document(doc) if c.article == "第五条"]
    assert len(parts) >= 2
    assert all(c.parts == len(parts) and len(c.text) <= config.ZH_MAX_CHARS for c in parts)
    assert [c.part for c in parts] == list(range(len(parts)))
    assert parts[0].text.startswith("第五条")
    assert all(c.text.endswith("。") for c in parts)


def test_policy_document_splits_at_numbered_headings(corpus: Path) -> None:
    doc = read_document(corpus, "zh/policy_opinion.txt")
    chunks = chunk_document(doc)
    sections = [c.section for c in chunks]
    assert "二、重点任务 / （一）培育农村电商人才" in sections
    base = next(c for c in chunks if "直播电商基地" in c.text)
    assert base.section == "二、重点任务 / （二）建设直播电商基地"
    assert all(c.article is None for c in chunks)


def test_english_sections_and_windows(corpus: Path) -> None:
    doc = read_document(corpus, "en/rural_commerce.md")
    chunks = chunk_document(doc)
    talent = next(c for c in chunks if "Live-stream" in c.text)
    assert talent.section == "Overview / Economic Base"
    notes = chunk_document(read_document(corpus, "en/notes.txt"))
    assert [c.section for c in notes if c.section] == ["Returns", "Advertising"]


def test_long_english_text_windows_overlap(tmp_path: Path) -> None:
    sentences = " ".join(f"Sentence number {i} talks about rural e-commerce policy." for i in range(200))
    (tmp_path / "long.txt").write_text("A long article title here\n\n" + sentences, encoding="utf-8")
    doc = read_document(tmp_path, "long.txt")
    chunks = chunk_document(doc)
    assert len(chunks) > 5
    assert all(len(c.text) <= config.EN_CHUNK_CHARS for c in chunks)
    assert any(a.char_end > b.char_start for a, b in zip(chunks, chunks[1:]))  # overlap


def test_pdf_chunks_carry_pages(corpus: Path) -> None:
    doc = read_document(corpus, "report.pdf")
    pages = {c.page for c in chunk_document(doc)}
    assert pages <= {1, 2} and 1 in pages


@pytest.mark.parametrize("folder", ["tests/data/corpus", "corpus"])
def test_offsets_are_exact_on_whole_corpus(folder: str) -> None:
    root = ROOT / folder
    seen = 0
    for doc_id, _ in walk_corpus(root):
        doc = read_document(root, doc_id)
        for c in chunk_document(doc):
            assert doc.text[c.char_start : c.char_end] == c.text, c.chunk_id
            assert c.text.strip() == c.text and c.text
            seen += 1
    assert seen > (1000 if folder == "corpus" else 10)


def test_bundled_statutes_have_every_article() -> None:
    """Each zh* statute yields articles 1..N in order, none lost, none invented by references."""
    root = ROOT / "corpus"
    for doc_id, _ in walk_corpus(root / "zh"):
        doc = read_document(root / "zh", doc_id)
        numbers = [n for _, _, n in find_articles(doc.text)]
        assert numbers == list(range(1, len(numbers) + 1)), doc_id
