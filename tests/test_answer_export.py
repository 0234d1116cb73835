"""Answer grouping and result export: what a reader takes away must be complete, cited and inert."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from kb.present.answer import answer, key_point
from kb.present.export import citations_text, md_escape, to_csv, to_markdown
from kb.search.searcher import Searcher


@pytest.fixture(scope="module")
def searcher(index: Path) -> Searcher:
    return Searcher(index)


def test_answer_groups_by_document_without_near_duplicates(searcher: Searcher) -> None:
    query = "live-stream talent"
    hits = searcher.search(query, 20)
    groups = answer(hits, query, max_docs=3, per_doc=2)
    assert 1 <= len(groups) <= 3
    assert groups[0].doc_id == hits[0].chunk.doc_id
    assert [g.best_rank for g in groups] == sorted(g.best_rank for g in groups)
    for group in groups:
        assert 1 <= len(group.points) <= 2
        assert all(p.hit.chunk.doc_id == group.doc_id for p in group.points)
    first = groups[0].points[0]
    assert first.sentence == "Live-stream e-commerce bases train local talent in selling citrus online."
    doc, _ = searcher.source(first.hit.chunk.doc_id)
    assert doc.text[first.sentence_start : first.sentence_end] == first.sentence
    assert [first.sentence[s:e] for s, e in first.highlights] == ["Live-stream", "talent"]


def test_answer_of_nothing_is_empty() -> None:
    assert answer([], "anything") == []


def test_key_point_picks_the_sentence_with_most_question_terms(searcher: Searcher) -> None:
    hit = searcher.search("平台 服务协议 公开征求意见", 1)[0]
    point = key_point(hit, "平台 服务协议 公开征求意见")
    assert point.sentence.startswith("电子商务平台经营者修改平台服务协议和交易规则")
    assert point.sentence.endswith("。")


def test_exports_carry_citation_passage_path_and_page(searcher: Searcher) -> None:
    hits = searcher.search("cross-border pilot zones exporters", 3)
    pdf = next(h for h in hits if h.chunk.doc_id == "report.pdf")
    assert f"{pdf.rank}. {pdf.citation} (report.pdf)" in citations_text(hits).splitlines()
    rows = list(csv.DictReader(io.StringIO(to_csv(hits).decode("utf-8-sig"))))
    assert len(rows) == len(hits)
    row = rows[pdf.rank - 1]
    assert (row["citation"], row["passage"], row["source_path"], row["page"]) == (
        pdf.citation,
        pdf.chunk.text,
        "report.pdf",
        "1",
    )
    assert to_csv(hits).startswith(b"\xef\xbb\xbf")  # spreadsheet programs need the BOM to read UTF-8
    md = to_markdown(hits, "cross-border pilot zones")
    assert md.startswith("# cross-border pilot zones\n")
    assert "Source: `report.pdf`, pp. 1–2" in md


def test_markdown_export_keeps_document_markup_inert() -> None:
    assert md_escape("# Heading") == "\\# Heading"
    assert md_escape("<script>alert(1)</script>") == "\\<script\\>alert(1)\\</script\\>"
    assert md_escape("1. first") == "1\\. first"
    assert md_escape("2023-07-01 *note* [x](y)") == "2023-07-01 \\*note\\* \\[x\\](y)"


FORMULAS = [
    '=HYPERLINK("http://127.0.0.1/x","click")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_export_neutralises_formulas(searcher: Searcher, formula: str) -> None:
    """OWASP CSV injection: a cell starting with = + - @ tab or CR is prefixed with ' so it stays text."""
    import dataclasses

    hit = searcher.search("live-stream talent", 1)[0]
    chunk = dataclasses.replace(hit.chunk, text=formula + " passage", title=formula, section=formula)
    evil = dataclasses.replace(hit, chunk=chunk, citation=formula)
    row = next(csv.DictReader(io.StringIO(to_csv([evil]).decode("utf-8-sig"), newline="")))
    for column in ("passage", "title", "section", "citation"):
        assert row[column].startswith("'") and row[column][1:].startswith(formula), (column, row[column])
    assert row["rank"] == "1" and not row["score"].startswith("'")  # numbers stay numbers
