"""kb.legal.meta on the bundled corpus (against a hand-made gold table) and on small texts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kb.ingest.read import read_document
from kb.legal.meta import body_events, issuer_by_level, legal_meta, repealed_titles, title_key
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "data" / "zh_metadata_gold.csv"

report = load_script("legal_report")


def test_gold_table_covers_every_bundled_zh_file() -> None:
    with GOLD.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["doc_id"] for r in rows] == sorted(f"zh/{p.name}" for p in (ROOT / "corpus" / "zh").glob("zh*"))
    assert all(r["level"] and r["issuer"] and r["effective"] and r["note"] for r in rows)


def test_bundled_zh_metadata_against_gold() -> None:
    """Level and issuer for all 19 files, right; dates for all but the ones the text does not state."""
    score = report.score_meta(ROOT / "corpus", GOLD)
    assert score.documents == 19
    for name in ("level", "issuer", "effective"):
        assert score.coverage(name) == 1.0, name
    assert score.precision("level") == 1.0 and score.precision("issuer") == 1.0
    # Known misses: the amendment dates the texts do not print (zh02 effective, zh09 both, zh17 published).
    assert score.precision("published") >= 0.85 and score.precision("effective") >= 0.85
    assert score.coverage("published") >= 0.8


def test_plain_text_history_in_parentheses() -> None:
    head = "（2013年10月25日第十二届全国人民代表大会常务委员会第五次会议通过　根据2018年10月26日第十三届全国人民代表大会常务委员会第六次会议修正）"
    events = body_events(head)
    assert [e.date for e in events] == ["2013-10-25", "2018-10-26"]
    meta = legal_meta("中华人民共和国示范法", "", head + "\n第一条 甲。\n第二条 本法自2014年3月1日起施行。\n")
    assert meta["issuer"] == "全国人民代表大会常务委员会" and meta["level"] == "法律"
    # The 施行 clause keeps the first date; the later amendment is the version the text prints.
    assert (meta["published"], meta["effective"]) == ("2018-10-26", "2018-10-26")


def test_issuer_follows_from_level_when_unstated() -> None:
    assert issuer_by_level("行政法规", None) == "国务院"
    assert issuer_by_level("地方性法规", "上海市") == "上海市人民代表大会常务委员会"
    assert issuer_by_level("规范性文件", None) is None


def test_repealed_titles_from_closing_articles() -> None:
    body = (
        "第二十条 本规定自2022年7月1日起施行。2000年10月31日原国家计委令第8号发布的《关于商品和服务实行明码标价的规定》、"
        "2001年11月7日原国家计委令第15号发布的《禁止价格欺诈行为的规定》同时废止。"
    )
    assert repealed_titles(body) == ("关于商品和服务实行明码标价的规定", "禁止价格欺诈行为的规定")
    assert repealed_titles("第一条 依照《中华人民共和国价格法》制定本规定。") == ()


@pytest.mark.parametrize(
    "title",
    [
        "《中华人民共和国消费者权益保护法》",
        "消费者权益保护法",
        "消费者权益保护法（2013修正）",
        "中华人民共和国 消费者权益保护法",
    ],
)
def test_title_key_matches_full_short_and_versioned_titles(title: str) -> None:
    assert title_key(title) == "消费者权益保护法"


def test_title_key_keeps_trial_and_part_markers() -> None:
    assert title_key("网络交易管理办法（试行）") == "网络交易管理办法（试行）"
    assert title_key("最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）").endswith("（一）")


def test_english_text_is_commentary(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "---\ndate: 2023-07-19\n---\n# A note\n\nSome words on rural trade.\n", encoding="utf-8"
    )
    meta = read_document(tmp_path, "a.md").meta
    assert (meta.level, meta.published) == ("commentary", "2023-07-19")
