"""The result list's head (weighted reciprocal rank) and tail (document boost, neighbouring articles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kb import config
from kb.embed.models import HashingEmbedder
from kb.index.build import build
from kb.search.base import SearcherBase
from kb.search.fusion import best_first, channel_ranks, depth, document_boost, ordered, rrf, with_neighbours
from kb.search.searcher import Searcher, row_neighbours

QUESTIONS = [
    "网购商品七日内无理由退货",
    "电子商务平台经营者的责任",
    "live-stream talent training",
    "e-commerce 电子商务",
]


def test_rrf_weights_ranks_and_prior() -> None:
    prior = [1.0, 1.0, 1.1, 1.0]
    fused = rrf({"bm25": [0, 1], "dense": [1, 2, 3]}, {"bm25": 1.0, "dense": 1.5}, prior.__getitem__, depth=2)
    assert fused == pytest.approx({0: 1 / 61, 1: 1 / 62 + 1.5 / 61, 2: 1.1 * 1.5 / 62})  # row 3 is below depth 2
    assert ordered(fused, lambda r: r) == [1, 2, 0]
    assert ordered({"b": 1.0, "a": 1.0}, str) == ["a", "b"]  # ties fall to the reading order


def test_best_first_reads_in_the_full_order_past_the_likely_few() -> None:
    rng = np.random.default_rng(0)
    scores = {int(k): float(v) for k, v in zip(rng.permutation(500), rng.integers(0, 40, 500) / 40)}  # many ties
    full = ordered(scores, lambda r: r % 7)
    for likely in (0, 1, 5, 499, 500, 600):
        assert list(best_first(scores, lambda r: r % 7, likely)) == full
    it = best_first(scores, lambda r: r % 7, 5)
    assert [next(it) for _ in range(3)] == full[:3]


def test_channel_ranks_lists_every_channel_of_the_keys_asked_for_then_near() -> None:
    ranked = {"bm25": [4, 2, 9], "dense": [2, 7, 4, 1], "xling": []}
    assert channel_ranks(ranked, [2, 4, 7, 5], [(7, 1), (5, 2)]) == {
        2: [("bm25", 2), ("dense", 1)],
        4: [("bm25", 1), ("dense", 3)],
        7: [("dense", 2), ("near", 1)],
        5: [("near", 2)],
    }
    assert channel_ranks({"bm25": [3, 3]}, [3]) == {3: [("bm25", 1)]}  # a key listed twice: its first place


def test_document_boost_follows_the_documents_share_of_the_best_rows() -> None:
    row_doc = np.array([0, 0, 0, 1, 1, 2])
    scores = {0: 1.0, 1: 0.9, 3: 0.95, 5: 0.5}
    boosted = document_boost(scores, lambda r: row_doc[r], lambda r: r, top=3, strength=1.0)
    # Among the best 3 rows document 0 holds 1.9 of the mass, document 1 0.95, document 2 none.
    assert boosted == pytest.approx({0: 2.0, 1: 1.8, 3: 0.95 * 1.5, 5: 0.5})


def test_neighbours_stay_in_the_parents_document_and_the_filter() -> None:
    row_doc = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    allowed = np.array([True, True, True, False, True, True, False, True])
    scores = {1: 1.0, 5: 0.2, 2: 0.9}
    neighbour = row_neighbours(row_doc, allowed)
    out, lifted = with_neighbours(scores, [1], neighbour, reach=2, decay=0.5)
    # Row 0 (d=1) gets 0.5; row 2 keeps its own higher score; row 3 (d=2) is filtered out; rows 4-5 are
    # another document.
    assert out == pytest.approx({1: 1.0, 0: 0.5, 2: 0.9, 5: 0.2})
    assert lifted == {0: 1}
    out, lifted = with_neighbours({5: 1.0}, [5], neighbour, reach=2, decay=0.5)
    assert out == pytest.approx({5: 1.0, 4: 0.5}) and lifted == {4: 5}  # row 6 is deleted (-1), row 7 another document


def test_depth_reaches_deeper_only_for_a_tail() -> None:
    assert depth(10) == config.CANDIDATES and depth(config.HEAD + 1) == config.TAIL_CANDIDATES
    assert depth(5000) == 5000


@pytest.mark.parametrize("question", QUESTIONS)
def test_tail_never_moves_the_head(searcher: Searcher, question: str) -> None:
    short = searcher.search(question, config.HEAD, xrefs=False)
    long = searcher.search(question, 40, xrefs=False)
    assert [(h.chunk.chunk_id, h.score) for h in long[: config.HEAD]] == [(h.chunk.chunk_id, h.score) for h in short]
    assert len(long) > config.HEAD
    scores = [h.score for h in long]
    assert scores == sorted(scores, reverse=True), "shown scores must fall down the list"
    texts = ["".join(h.chunk.text.split()) for h in long]
    assert len(texts) == len(set(texts)), "a passage is shown once, with its copies under also_in"
    assert [h.rank for h in long] == list(range(1, len(long) + 1))


def test_tail_lifts_articles_next_to_the_best_hits(searcher: Searcher) -> None:
    lifted = []
    for question in QUESTIONS:
        hits = searcher.search(question, 40, xrefs=False, rerank=False)
        for hit in hits:
            for channel, rank in hit.channels:
                if channel == "near":
                    parent = hits[rank - 1]
                    assert parent.chunk.doc_id == hit.chunk.doc_id and parent.rank < hit.rank
                    assert 0 < abs(parent.chunk.ordinal - hit.chunk.ordinal) <= config.TAIL_NEIGHBOURS
                    lifted.append(hit)
    assert lifted, "no tail passage was lifted for being next to a good one"


def test_both_backends_give_the_same_list(searcher: Searcher, index: Path) -> None:
    # bm25_x (an English question's translated words) is a FAISS channel only: Milvus cannot count a word's passages,
    # which picks the translation (kb.text.bilingual); the lists must agree on every channel both backends have.
    weights = None if isinstance(searcher, Searcher) else {**config.WEIGHTS, "bm25_x": 0.0}
    reference = Searcher(index, weights=weights)
    if not isinstance(searcher, Searcher):
        # For the same reason Milvus picks the cross-language reranker's translation by jieba's word counts
        # (kb.search.base.SearcherBase.translated): the reference translates alike, so the reranked lists agree too.
        reference.translated = lambda query: SearcherBase.translated(reference, query)  # type: ignore[method-assign]
    for question in QUESTIONS:
        ours = [(h.chunk.chunk_id, dict(h.channels).get("near")) for h in searcher.search(question, 40, xrefs=False)]
        theirs = [(h.chunk.chunk_id, dict(h.channels).get("near")) for h in reference.search(question, 40, xrefs=False)]
        assert ours == theirs


def test_tail_respects_filters(searcher: Searcher) -> None:
    two = ["zh/ecommerce_law.md", "zh/policy_opinion.txt"]
    hits = searcher.search("电子商务", 40, docs=two)
    assert len(hits) > config.HEAD and {h.chunk.doc_id for h in hits} == set(two)
    hits = searcher.search("e-commerce 电子商务", 40, lang="zh")
    assert len(hits) > config.HEAD and {h.chunk.lang for h in hits} == {"zh"}
    assert {h.chunk.lang for h in searcher.search("e-commerce 电子商务", 40, lang="en")} == {"en"}


def test_neighbour_of_a_hit_shown_in_another_version_names_that_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two versions of a law share an article; the later one, with more matching articles, is boosted, so the
    tail's parent is its copy while the head shows the earlier one. The lifted neighbours match no channel."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    articles = "第一条 总则甲。\n\n第二条 网购商品退货期限为七日。\n\n第三条 附则乙。\n"
    (corpus / "a.md").write_text("# 甲法\n\n" + articles, encoding="utf-8")
    (corpus / "b.md").write_text(
        "# 乙法\n\n" + articles + "\n第四条 网购商品退货运费由卖家承担，网购商品退货须完好。\n", encoding="utf-8"
    )
    build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    monkeypatch.setattr(config, "HEAD", 2)
    hits = Searcher(tmp_path / "index").search("网购商品退货", 10, mode="keyword", xrefs=False)
    shown = [(h.chunk.doc_id, h.chunk.article, dict(h.channels)) for h in hits]
    assert shown[:2] == [("b.md", "第四条", {"bm25": 1}), ("a.md", "第二条", {"bm25": 2})]
    assert hits[1].also_in == ("b.md",)
    # b's 第一条 was lifted by b's 第二条, shown as its copy in a.md at rank 2; no channel found it.
    assert ("b.md", "第一条", {"near": 2}) in shown
