"""Research tools on a small corpus of two versions of a law and passages citing articles (tests/data/research):
version comparison, cited-by (and its incremental upkeep), pinpoint citations and the one-line errors."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DATA

from kb import cli
from kb.chunk import chunk_document, read_passages
from kb.cite import pinpoint
from kb.embed.models import HashingEmbedder
from kb.errors import QueryError
from kb.index.build import build
from kb.index.citedby import CITEDBY_FILE
from kb.index.generations import current_generation
from kb.ingest.document import DocMeta, Document
from kb.legal.pinpoint import Place, cn, parse_citation
from kb.research.citing import cited_by
from kb.research.compare import Article, align
from kb.research.laws import Laws
from kb.research.versions import compare_versions
from kb.search.searcher import Searcher

RESEARCH = DATA / "research"
ECOMMERCE = "法律/电子商务法(2018-08-31).md"
SPC = "司法解释/最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）(2022-03-01).md"
RULES = "部门规章/网络交易监督管理办法(2021-03-15).md"
LOCAL = "地方性法规/某省电子商务促进条例(2024-05-01).md"


def build_research(root: Path) -> Path:
    """Copy the research corpus to root/corpus and build it; returns the index folder."""
    shutil.copytree(RESEARCH, root / "corpus")
    build(root / "corpus", root / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    return root / "index"


@pytest.fixture(scope="module")
def research(tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    return Searcher(build_research(tmp_path_factory.mktemp("research")))


# --- version comparison ---


def test_company_law_versions_align_by_content(research: Searcher) -> None:
    result = compare_versions(research, "公司法", "2018", "2023")
    moves = [(p.status, p.old.label if p.old else None, p.new.label if p.new else None) for p in result.pairs]
    assert moves == [
        ("changed", "第一条", "第一条"),
        ("changed", "第二条", "第二条"),
        ("unchanged", "第三条", "第三条"),
        ("added", None, "第四条"),
        ("unchanged", "第四条", "第五条"),  # renumbered: matched by its text, not its number
        ("moved", "第七条", "第六条"),
        ("deleted", "第五条", None),
        ("unchanged", "第六条", "第七条"),
        ("added", None, "第八条"),
    ]
    assert result.counts() == {"unchanged": 3, "changed": 2, "moved": 1, "added": 2, "deleted": 1, "renumbered": 3}
    assert result.summary().startswith("中华人民共和国公司法 2018 -> 2023: 2 articles changed, 2 added, 1 deleted")
    first = result.pairs[0]
    added = "".join(d.quote for d in first.diff if d.op == "added")
    assert "、职工" in added and "根据宪法" in added  # only in the 2023 text
    assert all(d.op != "dropped" for d in first.diff)
    assert result.pairs[0].new is not None and result.pairs[0].new.chunk_id is not None


def test_default_versions_are_the_last_two(research: Searcher) -> None:
    result = compare_versions(research, "《中华人民共和国公司法》")
    assert (result.old.year, result.new.year) == ("2018", "2023")
    assert result.to_dict()["counts"]["added"] == 2  # JSON-ready


def test_alignment_survives_an_insertion_that_shifts_every_number() -> None:
    bodies = [f"第{n}项规定的内容，关于事项{n}{'甲乙丙丁戊己庚辛'[n % 8]}的具体要求如下。" for n in range(1, 9)]
    old = [Article(f"第{cn(n)}条", n, b, None) for n, b in enumerate(bodies, start=1)]
    new_bodies = ["新增加的一条规定，与旧法任何一条都不相同的完全新的内容。", *bodies]
    new = [Article(f"第{cn(n)}条", n, b, None) for n, b in enumerate(new_bodies, start=1)]
    pairs = align(old, new)
    assert [p.status for p in pairs] == ["added"] + ["unchanged"] * 8
    assert all(p.renumbered for p in pairs[1:])
    assert [p.old.number for p in pairs[1:] if p.old] == list(range(1, 9))


def test_empty_versions_compare_without_error() -> None:
    only = [Article("第一条", 1, "内容。", None)]
    assert [p.status for p in align([], only)] == ["added"]
    assert [p.status for p in align(only, [])] == ["deleted"]


# --- cited by ---


def test_cited_by_groups_citing_passages_by_level(research: Searcher) -> None:
    result = cited_by(research, "《中华人民共和国电子商务法》第三十八条")
    assert result.count == 4
    assert [(level, [p.citing.doc_id for p in ps]) for level, ps in result.groups] == [
        ("司法解释", [SPC, SPC]),
        ("部门规章", [RULES]),
        ("地方性法规", [LOCAL]),
    ]
    assert result.groups[0][1][0].citation.endswith("》第二条")
    # The law citing itself (第八十三条: 违反本法第三十八条) is not "cited by".
    assert all(p.citing.doc_id != ECOMMERCE for _, ps in result.groups for p in ps)
    assert result.to_dict()["count"] == 4


def test_a_paragraph_keeps_references_to_it_and_to_the_whole_article(research: Searcher) -> None:
    second = cited_by(research, "电子商务法第三十八条第二款")
    texts = [p.citing.text for _, ps in second.groups for p in ps]
    assert "电子商务法第三十八条第一款" not in texts
    assert "《中华人民共和国电子商务法》第三十八条第二款" in texts
    assert second.count == 3


def test_cited_by_follows_the_version_in_force_when_the_citing_text_was_made(research: Searcher) -> None:
    # The provincial rules of 2024-05-01 cite 公司法第七条: the 2023 revision only took effect on 2024-07-01.
    assert cited_by(research, "公司法第七条", "2018").count == 1
    assert cited_by(research, "公司法第七条", "2023").count == 0


def test_what_cites_the_same_article_in_an_earlier_version_counts(
    research: Searcher, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2023's 第六条 is 2018's 第七条 moved; the provincial rules cite 2018's 第七条.
    result = cited_by(research, "公司法第六条")
    assert result.version.year == "2023" and result.count == 1
    passage = result.groups[0][1][0]
    assert (passage.level, passage.via) == ("地方性法规", "2018 第七条")
    assert cited_by(research, "公司法第六条", earlier=False).count == 0
    assert cited_by(research, "公司法第七条").count == 0  # 2023's 第七条 was 2018's 第六条, which nobody cites
    assert cli.main(["cites", "公司法第六条", "--index", str(research.index_dir)]) == 0
    assert "(cites the earlier version, 2018 第七条)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("citation", "when", "message"),
    [
        ("《某某条例》第一条", None, "no law in the index matches '某某条例'; closest: "),
        ("《电子商务》第一条", None, "matches 2 laws: "),
        ("《公司法》第一条", "2020", "has no version of 2020; the index holds: 2018, 2023"),
        ("《电子商务法》第九十条", None, "电子商务法 has no 第九十条: its articles run 第一条 to 第八十三条"),
        ("《电子商务法》第三十八条第三款", None, "第三十八条 of 中华人民共和国电子商务法 has 2 款, not 第三款"),
        ("第三十八条", None, "names no article of a law"),
    ],
)
def test_bad_citations_get_one_line_naming_the_candidates(
    research: Searcher, citation: str, when: str | None, message: str
) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(")) as info:
        cited_by(research, citation, when)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diff", "某某法"], "error: no law in the index matches '某某法'; closest: "),
        (["diff", "法"], "error: '法' matches 4 laws: "),
        (
            ["diff", "公司法", "--from", "2019"],
            "error: 中华人民共和国公司法 has no version of 2019; the index holds: 2018, 2023",
        ),
        (
            ["diff", "电子商务法"],
            "error: the index holds one version of 中华人民共和国电子商务法 (2018); nothing to compare",
        ),
        (["diff", "公司法", "--from", "2023", "--to", "2023"], "error: --from and --to name the same version"),
        (
            ["cites", "《电子商务法》第一百条"],
            "error: 电子商务法 has no 第一百条: its articles run 第一条 to 第八十三条",
        ),
        (["export", "《电子商务法》第三十八条", "《商标法》第一条"], "error: no law in the index matches '商标法'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(
    research: Searcher, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--index", str(research.index_dir)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(message) and out.err.count("\n") == 1


def test_cli_diff_and_cites_print_what_changed_and_what_cites(
    research: Searcher, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["diff", "公司法", "--from", "2018", "--to", "2023", "--index", str(research.index_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("中华人民共和国公司法 2018 -> 2023: 2 articles changed")
    assert any(line.startswith("changed   第二条 -> 第二条") and "{+华人民共和+}" in line for line in out)
    assert any(line.startswith("deleted   第五条 -> —") for line in out)
    assert cli.main(["cites", "《中华人民共和国电子商务法》第三十八条", "--index", str(research.index_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "《中华人民共和国电子商务法》第三十八条 (2018 version): cited by 4 passages"
    assert out[1] == "司法解释 (2)"


def test_laws_lookup_names_a_code_filed_in_parts() -> None:
    rows = [
        {"doc_id": f"民法典/{part}.md", "title": f"中华人民共和国民法典 {part}", "meta": {"level": "法律"}}
        for part in ("总则", "侵权责任编")
    ]
    laws = Laws(rows)
    assert [v.doc_id for v in laws.documents("民法典")] == ["民法典/侵权责任编.md", "民法典/总则.md"]
    with pytest.raises(QueryError, match="民法典 is filed in parts; name one: "):
        laws.versions("民法典")


def test_a_text_older_than_the_version_it_cites_is_marked(tmp_path: Path) -> None:
    shutil.copytree(RESEARCH, tmp_path / "corpus")
    corpus = tmp_path / "corpus"
    (corpus / "部门规章" / "旧办法(2015-01-01).md").write_text(
        "# 旧办法\n\n第一条 依照电子商务法第三十八条处理。\n\n第二条 其他。\n\n第三条 完。\n", encoding="utf-8"
    )
    (corpus / "法律" / "修改决定(2024-01-01).md").write_text(
        "# 全国人民代表大会常务委员会关于修改《中华人民共和国电子商务法》的决定\n\n一、将第三十八条第二款中的“相应的责任”"
        "修改为“连带责任”。\n\n二、本决定自公布之日起施行。\n",
        encoding="utf-8",
    )
    with (corpus / "metadata.csv").open("a", encoding="utf-8") as fh:
        fh.write("部门规章/旧办法(2015-01-01).md,旧办法,部门规章,,,2015-01-01,2015-01-01,,\n")
        fh.write(
            "法律/修改决定(2024-01-01).md,全国人民代表大会常务委员会关于修改《中华人民共和国电子商务法》的决定,"
            "法律,,,2024-01-01,2024-01-01,,\n"
        )
    build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    result = cited_by(Searcher(tmp_path / "index"), "《中华人民共和国电子商务法》第三十八条")
    # The 2015 rules predate the law; the amending decision cites the text it amends: both are "older".
    assert (result.count, result.older) == (6, 2)
    assert [p.citing.older for p in dict(result.groups)["法律"]] == [True]
    rules = dict(result.groups)["部门规章"]
    assert [p.citing.older for p in rules] == [False, True]  # the older text listed last
    assert rules[-1].to_dict()["older"] is True


def _table(index: Path) -> set[tuple[object, ...]]:
    db = sqlite3.connect(current_generation(index) / CITEDBY_FILE)
    try:
        return set(db.execute("SELECT * FROM refs"))
    finally:
        db.close()


def test_cited_by_table_is_kept_up_to_date_incrementally(tmp_path: Path) -> None:
    index = build_research(tmp_path / "a")
    corpus = tmp_path / "a" / "corpus"
    assert Searcher(index).index.manifest.cited_by["references"] == 6
    # Remove a citing text, add another, and add a newer version of the cited law: references to 电子商务法 made
    # after 2020 now resolve to the new version, and the removed text's references are gone.
    (corpus / RULES).unlink()
    (corpus / "部门规章" / "新规定(2026-01-01).md").write_text(
        "# 网络直播营销管理规定\n\n第一条 依照《中华人民共和国电子商务法》第三十八条制定本规定。\n\n"
        "第二条 本规定自公布之日起施行。\n\n第三条 其他。\n",
        encoding="utf-8",
    )
    newer = (corpus / ECOMMERCE).read_text(encoding="utf-8")
    (corpus / "法律" / "电子商务法(2020-06-01).md").write_text(newer, encoding="utf-8")
    with (corpus / "metadata.csv").open("a", encoding="utf-8") as fh:
        fh.write("法律/电子商务法(2020-06-01).md,中华人民共和国电子商务法,法律,,,2020-06-01,2020-06-01,,\n")
        fh.write("部门规章/新规定(2026-01-01).md,网络直播营销管理规定,部门规章,,,2026-01-01,2026-01-01,,\n")
    build(corpus, index, {"dense": HashingEmbedder()}, cache_dir=None)
    fresh = tmp_path / "b"
    shutil.copytree(corpus, fresh / "corpus")
    build(fresh / "corpus", fresh / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    assert _table(index) == _table(fresh / "index")  # the incremental table is the full rebuild's
    rows = _table(index)
    assert not any(r[1] == RULES for r in rows)
    new_rule = [r for r in rows if r[1] == "部门规章/新规定(2026-01-01).md"]
    assert [r[3] for r in new_rule] == ["法律/电子商务法(2020-06-01).md"]
    # Unchanged texts made after 2020 (the SPC's of 2022) now cite the new version: re-resolved, not re-read.
    assert {r[3] for r in rows if r[1] == SPC} == {"法律/电子商务法(2020-06-01).md"}


def test_lookup_of_an_index_without_the_table_says_how_to_fix(research: Searcher, tmp_path: Path) -> None:
    from kb.errors import IndexCorruptError
    from kb.index.citedby import CitedByTable

    with pytest.raises(IndexCorruptError, match="rebuild with `python -m kb build`"):
        CitedByTable(tmp_path / "missing.sqlite")


# --- pinpoint citations ---

PINPOINT_TABLE = [
    "《中华人民共和国电子商务法》第三十八条",
    "《中华人民共和国电子商务法》第三十八条第二款",
    "《中华人民共和国电子商务法》第三十八条第一款、第二款",
    "《中华人民共和国公司法》第八条第三款",
    "《中华人民共和国公司法》第二十条第一款第三项",
    "《中华人民共和国民法典》第一千一百六十五条第一款",
    "《中华人民共和国民法典》第一千零一条",
    "《中华人民共和国刑法》第一百三十三条之一第一款第二项",
    "《中华人民共和国刑法》第二百八十七条之二",
    "《中华人民共和国消费者权益保护法》第五十五条第二款",
    "《中华人民共和国民事诉讼法》第一百二十二条第四项",
    "《中华人民共和国个人信息保护法》第十三条第一款第一项",
    "《中华人民共和国行政处罚法》第三十三条第二款",
    "《中华人民共和国立法法》第一百零五条",
    "《中华人民共和国广告法》第五十六条第三款",
    "《网络交易监督管理办法》第十条第二款",
    "《最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）》第二条",
    "《中华人民共和国反不正当竞争法》第十二条第二款第四项",
    "《中华人民共和国公司法》第二百六十六条",
    "《中华人民共和国食品安全法》第一百四十八条第二款",
    "《最高人民法院关于适用〈中华人民共和国民法典〉时间效力的若干规定》第二十条",
    "《人民检察院刑事诉讼规则》第三百三十条第一项至第十一项",
    "《人民检察院刑事诉讼规则》第三百三十条第十二项、第十三项",
]


@pytest.mark.parametrize("citation", PINPOINT_TABLE)
def test_pinpoint_citations_parse_back_to_the_same_place(citation: str) -> None:
    place = parse_citation(citation)
    assert place is not None
    assert place.citation() == citation
    assert parse_citation(place.citation()) == place


def test_every_part_of_a_split_article_is_cited_with_its_paragraphs() -> None:
    _doc, chunks = read_passages(RESEARCH, "法律/公司法(2023-12-29).md")
    parts = [c for c in chunks if c.article == "第八条"]
    assert len(parts) > 1  # the fixture's article is over the chunk limit
    places = [pinpoint(c, parts) for c in parts]
    assert all(p is not None and p.paragraphs for p in places)
    covered = [n for p in places if p for n in p.paragraphs]
    assert sorted(set(covered)) == [1, 2, 3]
    for c, p in zip(parts, places):
        assert p is not None and parse_citation(p.citation()) == p


def test_a_single_paragraph_split_at_its_items_is_cited_with_its_items() -> None:
    items = "".join(
        f"（{cn(n)}）第{cn(n)}项规定的具体审查内容，包括有关事实、证据、程序和法律适用是否清楚、充分、合法、正确，有无遗漏；\n"
        for n in range(1, 14)
    )
    text = f"第一条 总则。\n\n第二条 其他。\n\n第三百三十条 人民检察院审查移送起诉的案件，应当查明：\n{items}\n第三百三十一条 完。\n"
    doc = Document("rules.md", "rules.md", "人民检察院刑事诉讼规则", "zh", text, DocMeta())
    parts = [c for c in chunk_document(doc) if c.article == "第三百三十条"]
    assert len(parts) > 1
    places = [pinpoint(c, parts) for c in parts]
    assert all(p is not None and p.items and not p.paragraphs for p in places)
    assert [n for p in places if p for n in p.items] == list(range(1, 14))
    assert places[0] is not None and places[0].label().startswith("第三百三十条第一项至第")
    for p in places:
        assert p is not None and parse_citation(p.citation()) == p


def test_a_title_with_a_title_inside_is_cited_with_inner_brackets() -> None:
    place = Place("最高人民法院关于适用《中华人民共和国民法典》时间效力的若干规定", 20)
    assert place.citation() == "《最高人民法院关于适用〈中华人民共和国民法典〉时间效力的若干规定》第二十条"
    assert parse_citation(place.citation()) == place


def test_a_hit_names_the_paragraph_its_question_sits_in(research: Searcher) -> None:
    hits = research.search("续保 投保金额 承保范围 保险费率", 3)
    hit = next(h for h in hits if h.chunk.article == "第八条" and "保险费率" in h.chunk.text)
    assert hit.citation == "《中华人民共和国公司法》第八条第三款"
    assert hit.place == Place("中华人民共和国公司法", 8, None, (3,))
    assert parse_citation(hit.citation) == hit.place
    assert hit.to_dict()["pinpoint"] == hit.place.to_dict()


def test_an_unsplit_one_paragraph_article_gets_no_pinpoint(research: Searcher) -> None:
    hit = research.search("公司是企业法人 独立的法人财产", 1)[0]
    assert hit.chunk.article == "第三条"
    assert hit.place is None and hit.citation == "《中华人民共和国公司法》第三条"
