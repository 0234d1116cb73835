"""kb.legal.xref: references found in text, resolved to chunks; measured on the bundled zh* files against a gold list."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kb.catalog.resolve import ChunkTable, Resolver
from kb.chunk import Chunk
from kb.ingest.document import DocRow
from kb.legal.xref import find_references
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "data" / "xref_gold.csv"

report = load_script("legal_report")


def refs(text: str, known: tuple[str, ...] = ()) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(r.kind, r.law, r.article_no, r.paragraph) for r in find_references(text, known)]


def test_named_lists_ranges_and_paragraphs() -> None:
    assert refs("依照《中华人民共和国邮政法》第五十二条、第五十三条规定") == [
        ("named", "中华人民共和国邮政法", 52, None),
        ("named", "中华人民共和国邮政法", 53, None),
    ]
    assert refs("违反本法第二十二条第三款、第四十一条至第四十三条规定") == [
        ("self", None, 22, 3),
        ("self", None, 41, None),
        ("self", None, 42, None),
        ("self", None, 43, None),
    ]
    assert refs("本法第二十二条第一款、第二款和第四十八条第一款") == [
        ("self", None, 22, 1),
        ("self", None, 22, 2),
        ("self", None, 48, 1),
    ]
    assert [r.item for r in find_references("违反本法第十六条第一款第四项规定")] == [4]
    assert refs("依照本条例第十条之一的规定")[0][2] == 10 and find_references("本条例第十条之一")[0].sub == 1


def test_article_headings_and_mentions_are_not_references() -> None:
    assert refs("第一条 为了规范电子商务，制定本法。\n第二条 本条例所称电子商务……") == []
    assert refs("《中华人民共和国海关法》规定的") == []  # a title without an article
    assert refs("2018年10月26日第十三届全国人民代表大会常务委员会第六次会议修正") == []


def test_relative_and_bare_references() -> None:
    assert refs("第三条 甲。\n违反前款规定的，依照本条第一款处罚。") == [
        ("relative", None, None, None),
        ("relative", None, None, 1),
    ]
    assert refs("第二十一条 有下列情形之一的，不属于第十九条规定的价格欺诈行为") == [("bare", None, 19, None)]
    # Another law's article, named without 《》: it is that law's, not this document's.
    assert refs("消费者依据食品安全法第一百三十一条主张") == [("short", "食品安全法", 131, None)]
    assert refs("就消费者权益保护法第二十五条第一款规定", ("消费者权益保护法",)) == [
        ("short", "消费者权益保护法", 25, 1)
    ]


def _chunk(doc_id: str, n: int, label: str, no: int, text: str, part: int = 0, parts: int = 1) -> Chunk:
    return Chunk(f"{doc_id}#{n}", doc_id, doc_id, n, text, 0, len(text), "zh", label, no, None, part, parts)


def test_resolver_picks_article_paragraph_part_and_version() -> None:
    law = [
        _chunk("law2018", 0, "第一条", 1, "第一条 甲。"),
        _chunk("law2018", 1, "第二条", 2, "第二条 乙。"),
        _chunk("law2021", 0, "第一条", 1, "第一条 甲一。"),
        _chunk("law2021", 1, "第二条", 2, "第二条 甲款。\n（一）项；\n乙款。", 0, 2),
        _chunk("law2021", 2, "第二条", 2, "丙款。\n依照前款规定。", 1, 2),
    ]
    reg = [
        _chunk("reg", 0, "第一条", 1, "第一条 依照《示范法》第二条第三款，违反本规定第二条的。"),
        _chunk("reg", 1, "第二条", 2, "第二条 丙。"),
    ]
    docs = {
        "law2018": {"title": "示范法", "meta": {"published": "2018-01-01"}},
        "law2021": {"title": "中华人民共和国示范法", "meta": {"published": "2021-01-01"}},
        "reg": {"title": "示范规定", "meta": {"published": "2022-01-01"}},
    }
    resolver = Resolver(_rows(docs), ChunkTable(law + reg))
    named, own = resolver.references(reg[0])
    assert named.target and (named.target.doc_id, named.target.chunk_id) == ("law2021", "law2021#2")
    assert named.target.citation == "《中华人民共和国示范法》第二条第三款"
    assert own.target and own.target.chunk_id == "reg#1"
    (back,) = resolver.references(law[4])
    # 甲款 (with its item) and 乙款 in part 1, 丙款 and the 前款 sentence in part 2: 前款 is 丙款.
    assert back.target and back.target.chunk_id == "law2021#2" and back.target.citation.endswith("第二条第三款")
    docs["reg"]["meta"] = {"published": "2019-06-01"}  # made when the 2018 version was in force
    assert Resolver(_rows(docs), ChunkTable(law + reg)).references(reg[0])[0].target.doc_id == "law2018"  # type: ignore[union-attr]
    missing = resolver.resolve(find_references("依照本规定第九条")[0], reg[0])
    assert missing.target is None and missing.reason == "no such article"


@pytest.fixture(scope="module")
def score():
    return report.score_xref(ROOT / "corpus", "zh/", within="zh/")


def test_bundled_zh_references_resolve(score) -> None:
    """At least 95% of the references that name a bundled document reach a chunk, and none is missed."""
    assert score.found >= 200 and score.in_corpus >= 200
    assert score.rate >= 0.95, score.failures
    assert score.uncovered == []  # every 第N条 outside article headings belongs to a reference
    # Cited but not bundled: the only references that cannot resolve.
    assert dict(score.outside) == {"食品安全法": 3, "民法典": 1}
    assert {"named", "self", "short", "bare", "relative"} <= set(score.by_kind)


def test_resolved_targets_hold_the_named_article(score) -> None:
    from kb.legal.structure import cn_number

    for chunk, res in score.resolved_refs:
        ref, target = res.ref, res.target
        if ref.article_no is not None:
            assert target.article_no == ref.article_no, (chunk.chunk_id, ref.text)
        assert target.citation.startswith("《")
        assert cn_number(target.citation.split("》")[1].split("条")[0].lstrip("第")) == target.article_no


def test_hand_checked_references(score) -> None:
    with GOLD.open(encoding="utf-8", newline="") as fh:
        gold = list(csv.DictReader(fh))
    assert len(gold) >= 25
    found: dict[tuple[str, str, str], list] = {}
    for chunk, res in score.resolved_refs:
        found.setdefault((chunk.doc_id, chunk.article, res.ref.text), []).append(res.target)
    for row in gold:
        targets = found.get((row["doc_id"], row["article"], row["reference"]), [])
        want = f"{row['target_article']}" + (
            f"第{'一二三四五'[int(row['paragraph']) - 1]}款" if row["paragraph"] else ""
        )
        hits = [t for t in targets if t.doc_id == row["target_doc"] and t.citation.endswith("》" + want)]
        assert hits, (row, [t.citation for t in targets])
        if row["target_chunk"]:
            assert row["target_chunk"] in {t.chunk_id for t in hits}, row


def test_hits_carry_resolved_references(tmp_path: Path) -> None:
    from kb.embed.models import HashingEmbedder
    from kb.index.build import build
    from kb.search.searcher import Searcher

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "law.txt").write_text(
        "中华人民共和国示范法\n\n第一条 甲。\n第二条 网络经营者应当公示退货规则。\n第三条 丙。\n", encoding="utf-8"
    )
    (corpus / "rule.txt").write_text(
        "示范规定\n\n第一条 乙。\n第二条 经营者违反《示范法》第二条、本规定第一条和"
        "《不存在法》第九条的，予以处罚。\n第三条 丁。\n",
        encoding="utf-8",
    )
    build(corpus, tmp_path / "i", {"dense": HashingEmbedder()}, cache_dir=None)
    searcher = Searcher(tmp_path / "i")
    hit = searcher.search("违反 予以处罚", 1, mode="keyword")[0]
    assert hit.chunk.chunk_id == "rule.txt#2"
    xrefs = hit.to_dict()["xrefs"]
    assert [(x["text"], (x["target"] or {}).get("chunk_id"), x["reason"]) for x in xrefs] == [
        ("《示范法》第二条", "law.txt#2", None),
        ("本规定第一条", "rule.txt#1", None),
        ("《不存在法》第九条", None, "not in the index"),
    ]
    assert xrefs[0]["target"]["citation"] == "《中华人民共和国示范法》第二条"
    assert searcher.search("违反 予以处罚", 1, mode="keyword", xrefs=False)[0].xrefs == ()
    assert [r.target.chunk_id for r in searcher.references(hit.chunk) if r.target] == ["law.txt#2", "rule.txt#1"]


def test_code_in_parts_amending_decisions_and_laws_named_in_titles() -> None:
    code = [
        _chunk("code/contract", 0, "第四百六十三条", 463, "第四百六十三条 本编调整合同关系。"),
        _chunk("code/tort", 0, "第一千一百六十五条", 1165, "第一千一百六十五条 过错责任。"),
    ]
    criminal = [_chunk("crim", 0, "第一百零二条", 102, "第一百零二条 背叛国家。")]
    docs = {
        "code/contract": {"title": "中华人民共和国民法典 合同编", "meta": {}},
        "code/tort": {"title": "中华人民共和国民法典 侵权责任编", "meta": {}},
        "crim": {"title": "中华人民共和国刑法", "meta": {}},
        "names": {"title": "关于适用刑法分则规定的犯罪的罪名的意见", "meta": {}},
        "amend": {"title": "关于修改《中华人民共和国民法典 侵权责任编》的决定", "meta": {}},
    }
    resolver = Resolver(_rows(docs), ChunkTable(code + criminal))
    cite = Chunk(
        "j#0", "j", "某解释", 0, "第一条 依照民法典第一千一百六十五条和刑法第一百零二条。", 0, 30, "zh", "第一条", 1
    )
    assert [r.target.chunk_id for r in resolver.references(cite) if r.target] == ["code/tort#0", "crim#0"]
    names = Chunk("names#0", "names", docs["names"]["title"], 0, "1．背叛国家罪（第102条）", 0, 14, "zh")
    assert [r.target.chunk_id for r in resolver.references(names) if r.target] == ["crim#0"]
    amend = Chunk("amend#0", "amend", docs["amend"]["title"], 0, "一、将第一千一百六十五条修改为：", 0, 16, "zh")
    assert [r.target.chunk_id for r in resolver.references(amend) if r.target] == ["code/tort#0"]


def _rows(docs: dict) -> dict[str, DocRow]:
    """The doc table of a test: rows written as {'title', 'meta'} dicts."""
    return {d: DocRow.from_dict(d, row) for d, row in docs.items()}
