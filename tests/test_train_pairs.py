"""The self-supervised pair miners (kb.train.pairs) on tiny made-up passages, and how training picks the pairs."""

from __future__ import annotations

import hashlib
import json

from kb.catalog.resolve import ChunkTable, Resolver
from kb.chunk import Chunk
from kb.ingest.document import DocRow
from kb.train.cv import _fold_key, training_sets
from kb.train.pairs import Pair, citation_pairs, commentary_pairs, heading_pairs, mine, version_pairs
from kb.train.tower import TrainConfig, training_ids
from tests.conftest import prepared_set

LAW = "中华人民共和国劳动合同法"


def _chunk(
    doc: str,
    n: int,
    text: str,
    *,
    title: str = LAW,
    article_no: int | None = None,
    section: str | None = None,
    lang: str = "zh",
) -> Chunk:
    article = f"第{article_no}条" if article_no is not None else None
    return Chunk(f"{doc}#{n}", doc, title, n, text, 0, len(text), lang, article, article_no, section)


def _rows(chunks: list[Chunk]) -> list[int]:
    return [10 + i for i in range(len(chunks))]  # rows need not start at 0


def test_a_heading_asks_for_the_articles_under_it_in_every_version() -> None:
    end = "第四章 劳动合同的终止"
    chunks = [
        _chunk("a.md", 0, "第四十四条 有下列情形之一的，劳动合同终止", article_no=44, section=end),
        _chunk("a.md", 1, "第四十五条 劳动合同期满的，应当续延", article_no=45, section=end),
        _chunk("b(2008).md", 0, "第四十四条 有下列情形之一的，劳动合同终止", article_no=44, section=end),
        _chunk("a.md", 2, "第五十条 用人单位应当出具证明", article_no=50, section="第五章 特别规定"),
        _chunk("a.md", 3, "附则以外的文字", section=end),  # not an article
    ]
    pairs = heading_pairs(chunks, _rows(chunks), limit=10)
    assert pairs[0] == Pair("heading", "劳动合同法关于劳动合同的终止有哪些规定？", (10, 11, 12))
    assert [p.query for p in pairs] == [
        "劳动合同法关于劳动合同的终止有哪些规定？",
        "劳动合同法关于特别规定有哪些规定？",
    ]
    assert len(heading_pairs(chunks, _rows(chunks), limit=10, most=1)) == 1  # a heading over 2 articles is left out
    assert len(heading_pairs(chunks, _rows(chunks), limit=1)) == 1


def test_a_reference_asks_for_the_article_it_cites() -> None:
    chunks = [
        _chunk("a.md", 0, "第二条 本法所称劳动者，是指与用人单位建立劳动关系的自然人。", article_no=2),
        _chunk("a.md", 1, "第五条 劳动者依照本法第二条的规定享有权利。\n前款规定不适用于公务员。", article_no=5),
        _chunk("b.md", 0, "第一条 依照《劳动合同法》第五条，制定本办法。", title="劳动合同实施办法", article_no=1),
    ]
    docs = {
        "a.md": DocRow.from_dict("a.md", {"title": LAW}),
        "b.md": DocRow.from_dict("b.md", {"title": "劳动合同实施办法"}),
    }
    pairs = citation_pairs(chunks, _rows(chunks), Resolver(docs, ChunkTable(chunks)), limit=10)
    assert [(p.positives, "本法第二条" in p.query or "《劳动合同法》第五条" in p.query) for p in pairs] == [
        ((10,), True),  # 依照本法第二条 -> article 2; 前款 points into article 5 itself: no pair
        ((11,), True),  # 《劳动合同法》第五条 in another document -> article 5
    ]


def test_an_article_worded_anew_asks_for_each_of_its_versions() -> None:
    chunks = [
        _chunk("a(2012).md", 0, "第三条 用人单位应当按月以货币形式支付劳动者工资。", article_no=3),
        _chunk("a(2012).md", 1, "第四条 劳动者享有休息休假的权利。", article_no=4),
        _chunk("a(2018).md", 0, "第三条 用人单位应当按月足额以货币形式支付劳动者工资。", article_no=3),
        _chunk("a(2018).md", 1, "第四条 劳动者享有休息休假的权利。", article_no=4),  # unchanged: no pair
        _chunk("c.md", 0, "第三条 用人单位应当按月以货币形式支付劳动者工资。", title="其他条例", article_no=3),
    ]
    pairs = version_pairs(chunks, _rows(chunks), limit=10)
    assert pairs == [
        Pair("version", "用人单位应当按月以货币形式支付劳动者工资。", (10, 12)),
        Pair("version", "用人单位应当按月足额以货币形式支付劳动者工资。", (10, 12)),
    ]
    assert version_pairs(chunks, _rows(chunks), limit=10, least=0.99) == []  # reworded too much


def test_an_english_heading_asks_for_its_paragraphs() -> None:
    chunks = [
        _chunk(
            "en1.txt",
            0,
            "The platform opposes violence.",
            section="Rules / I. Violence and criminal behavior",
            lang="en",
            title="Guidelines",
        ),
        _chunk(
            "en1.txt",
            1,
            "Criminal acts are removed.",
            section="Rules / I. Violence and criminal behavior",
            lang="en",
            title="Guidelines",
        ),
        _chunk("en2.txt", 0, "In short, it works.", section="Conclusions", lang="en", title="Report"),
        _chunk("zh.txt", 0, "第一条 为了……，制定本法。", section="第一章 总则", article_no=1),
    ]
    assert commentary_pairs(chunks, _rows(chunks), limit=10) == [
        Pair("commentary", "Violence and criminal behavior", (10, 11))  # one-word headings say too little
    ]
    assert commentary_pairs(chunks, _rows(chunks), limit=10, most=1) == []
    docs = {"en1.txt": DocRow.from_dict("en1.txt", {"title": "Guidelines"})}
    assert [p.kind for p in mine(chunks, _rows(chunks), docs, ["commentary", "heading"], 10)] == [
        "commentary",
        "heading",
    ]


def test_pairs_train_in_every_fold_only_when_asked() -> None:
    stard, sci = prepared_set(["zh", "zh"]), prepared_set(["scifact"])
    mined = prepared_set(["heading", "citation", "version", "commentary"])
    assert training_ids(mined, set(), TrainConfig()) == []
    assert training_ids(mined, set(), TrainConfig(pairs=1)) == [0, 1, 2, 3]
    sets = training_sets(stard, [sci, mined], {1}, TrainConfig(scifact=1, pairs=1))
    assert [(s is mined, ids) for s, ids in sets] == [(False, [0]), (False, [0]), (True, [0, 1, 2, 3])]
    assert len(training_sets(stard, [sci, mined], {1}, TrainConfig(scifact=1))) == 2


def test_fold_towers_cached_before_the_pairs_keep_their_names() -> None:
    stard, sci = prepared_set(["zh", "zh"]), prepared_set(["scifact"])
    cfg = TrainConfig(english=1, scifact=1)
    about = {k: v for k, v in cfg.__dict__.items() if k != "pairs"}
    before = json.dumps([about, stard.queries, sci.queries], ensure_ascii=False)
    assert _fold_key(stard, [sci, prepared_set(["heading"])], cfg) == hashlib.sha256(before.encode()).hexdigest()[:12]
    assert _fold_key(stard, [sci, prepared_set(["heading"])], TrainConfig(english=1, scifact=1, pairs=1)) != _fold_key(
        stard, [sci], cfg
    )
