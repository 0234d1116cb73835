"""The index committed under index/ is what a build of corpus/ produces, and answers the golden questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.index.verify import verify
from kb.search.searcher import Searcher

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return Searcher(ROOT / "index")


def test_shipped_index_matches_corpus() -> None:
    """Hashes, chunking settings, every document's chunks, and 24 re-embedded passages per channel."""
    assert verify(ROOT / "corpus", ROOT / "index", sample=24) == []


def test_format_clause_question_finds_spc_article_one(searcher: Searcher) -> None:
    hits = searcher.search("格式条款规定收货人签收商品即视为认可质量，这个条款有效吗", 3)
    top = [(h.chunk.doc_id, h.chunk.article) for h in hits]
    assert ("zh/zh13_spc_online_consumption_disputes.txt", "第一条") in top
    hit = next(h for h in hits if h.chunk.article == "第一条")
    assert hit.citation == "《最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）》第一条"


def test_live_stream_talent_question_finds_seed_articles(searcher: Searcher) -> None:
    hits = searcher.search("what measures address live-stream talent", 5)
    seeds = [h for h in hits if h.chunk.doc_id.startswith("seeds/")]
    assert seeds, [h.citation for h in hits]
    assert any("talent" in h.chunk.text and "live" in h.chunk.text.lower() for h in seeds)


def test_english_question_finds_chinese_article(searcher: Searcher) -> None:
    hits = searcher.search("seven-day no-reason return of goods bought online", 5)
    assert ("zh/zh02_consumer_rights_law.txt", "第二十五条") in [(h.chunk.doc_id, h.chunk.article) for h in hits]


def test_chinese_question_finds_english_commentary(searcher: Searcher) -> None:
    hits = searcher.search("农村电商直播基地和人才培养", 10, lang="en")
    assert hits and all(h.chunk.lang == "en" for h in hits)
    assert any(h.chunk.doc_id.startswith(("seeds/", "en/")) and "e-commerce" in h.chunk.text.lower() for h in hits[:5])


def test_readme_search_example_is_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The README shows one search with its output; it must be what the command prints today."""
    import re
    import shlex

    from kb.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(
        r"A real search on the bundled corpus \(`\.venv/bin/python -m kb (search [^`]+)`\):\n\n```\n(.*?)```",
        readme,
        re.S,
    )
    assert m, "README lost its real search example"
    assert main(shlex.split(m.group(1))) == 0
    assert capsys.readouterr().out == m.group(2)
