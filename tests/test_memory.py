"""The question memory: labels parsed to articles, nearest questions, the weight file, articles found in an index,
and the channel that joins only the tail of a result list."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from kb import config
from kb.embed import tower as qtower
from kb.embed.memory import Article, build
from kb.errors import ModelLoadError
from kb.search import fusion
from kb.search.memory import Answers
from kb.search.searcher import Searcher

ROOT = Path(__file__).parent.parent


def _unit(*rows: list[float]) -> np.ndarray:
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_labels_parse_to_law_number_and_sub() -> None:
    a = Article.of(
        "劳动合同法第三十八条",
        "用人单位有下列情形之一的，\n劳动者可以解除劳动合同：（一）未按照劳动合同约定提供劳动保护",
    )
    assert a is not None and (a.law, a.number, a.sub) == ("劳动合同法", 38, None)
    assert a.key == "用人单位有下列情形之一的，劳动者可以解除劳动合同：（一）未按" and len(a.key) == 30
    b = Article.of("刑法第一百三十三条之一", "在道路上驾驶机动车")
    assert b is not None and (b.law, b.number, b.sub) == ("刑法", 133, 1)
    c = Article.of("最高人民法院关于适用《民法典》有关担保制度的解释第四十四条", "主债务诉讼时效期间届满")
    assert c is not None and c.law == "最高人民法院关于适用《民法典》有关担保制度的解释" and c.number == 44
    assert Article.of("劳动合同法", "无条号") is None


def test_nearest_questions_vote_for_their_articles_above_the_floor() -> None:
    arts = [Article("甲法", n, None, f"第{n}条") for n in (1, 2, 3)]
    memory = build(_unit([1, 0], [0.8, 0.6], [0, 1]), [[arts[0], arts[1]], [arts[1], arts[1]], [arts[2]]])
    assert len(memory.articles) == 3 and memory.offsets.tolist() == [0, 2, 3, 4]  # the repeated label counted once
    got = memory.nearest(np.array([1.0, 0.0], dtype=np.float32), questions=2, floor=0.0)
    assert [a for a, _ in got] == [1, 0]  # article 2 answered both near questions: 1.0 + 0.8
    assert got[0][1] == pytest.approx(1.8) and got[1][1] == pytest.approx(1.0)
    assert [a for a, _ in memory.nearest(np.array([1.0, 0.0], dtype=np.float32), 3, floor=0.9)] == [0, 1]
    assert memory.nearest(np.array([-1.0, 0.0], dtype=np.float32), 3, floor=0.5) == []
    assert build(np.zeros((0, 2)), []).nearest(np.array([1.0, 0.0]), 5, 0.0) == []


def test_the_memory_travels_in_the_tower_file_and_a_damaged_one_names_the_fix(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    shipped = qtower.load_weights()
    arts = [Article("消费者权益保护法", 25, None, "经营者采用网络、电视、电话、邮购等方式销售商品")]
    memory = build(_unit([1.0] + [0.0] * 383), [arts])
    path = tmp_path / "tower.safetensors"
    save_file({**shipped.tensors, **memory.tensors()}, str(path))
    loaded = qtower.load_weights(path).memory
    assert loaded is not None and loaded.articles == tuple(arts)
    assert np.allclose(loaded.vectors, memory.vectors) and loaded.offsets.tolist() == [0, 1]
    broken = {**memory.tensors(), "memory.answers": np.array([5], dtype=np.int64)}
    save_file({**shipped.tensors, **broken}, str(path))
    with pytest.raises(ModelLoadError, match=r"question memory is unreadable .*scripts/train.py memory"):
        qtower.load_weights(path)
    partial = {k: v for k, v in memory.tensors().items() if k != "memory.articles"}
    save_file({**shipped.tensors, **partial}, str(path))
    with pytest.raises(ModelLoadError, match="question memory"):
        qtower.load_weights(path)


def test_the_shipped_memory_holds_every_stard_train_question_through_the_shipped_tower() -> None:
    memory = qtower.load_weights().memory
    assert memory is not None and len(memory) == 1235
    assert np.allclose(np.linalg.norm(memory.vectors, axis=1), 1.0, atol=1e-2)
    per_question = np.diff(memory.offsets)
    assert per_question.min() >= 1 and 1100 <= len(memory.articles) <= int(per_question.sum())
    # In train.jsonl's order, each with its gold articles, embedded as a search embeds a Chinese question.
    from kb.bench.evaluate import SHARED

    path = SHARED / "benchmarks" / "stard" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not beside the checkout")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:3]]
    searcher = Searcher(ROOT / "index")
    for q, row in enumerate(rows):
        answered = [memory.articles[a] for a in memory.answers[memory.offsets[q] : memory.offsets[q + 1]]]
        assert answered == [Article.of(g["name"], g["text"]) for g in row["gold"]]
        assert float(memory.vectors[q] @ searcher.question_vector(row["query"], True)) > 0.99


@pytest.fixture(scope="module")
def bundled() -> Searcher:
    return Searcher(ROOT / "index")


def _article_chunk(searcher: Searcher, law: str, number: int) -> tuple[str, str]:
    """An article's first chunk in the bundled index and its first 30 characters after 第N条, as a label keys it."""
    doc_id = next(d for d, t in searcher.resolver.titles.items() if t.endswith(law))
    chunk = searcher.resolver.source.article_chunks(doc_id, number)[0]
    return chunk.chunk_id, re.sub(r"^第[一二三四五六七八九十百]+条", "", "".join(chunk.text.split()))[:30]


def test_an_article_is_found_by_title_number_and_opening_words(bundled: Searcher) -> None:
    chunk_id, key = _article_chunk(bundled, "消费者权益保护法", 25)
    arts = [
        Article("消费者权益保护法", 25, None, key),
        Article("中华人民共和国消费者权益保护法", 25, None, key),  # the label may carry the prefix
        Article("消费者权益保护法", 25, None, "经营者应当在七日内退还"),  # another version's words: not this one
        Article("消费者权益保护法", 26, None, key),  # another number
        Article("不在索引中的法", 25, None, key),
    ]
    answers = Answers(build(np.eye(len(arts), 384, dtype=np.float32), [[a] for a in arts]), bundled.resolver)
    assert [answers.chunk_ids(i) for i in range(len(arts))] == [(chunk_id,), (chunk_id,), (), (), ()]


def test_the_memory_channel_joins_the_tail_only(bundled: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    """A question whose nearest remembered question was answered by an article the channels rank low gets that
    article into its first 100, marked; its first HEAD results do not move. English questions and --tuned off get
    no memory."""
    question = "网购的东西不满意能退吗"
    before = bundled.search(question, 100, xrefs=False, rerank=False)
    listed = {h.chunk.chunk_id for h in before}
    # an article of the personal information law (in force) the channels do not bring into the first 100
    number, (chunk_id, key) = next(
        (n, found) for n in range(20, 70) if (found := _article_chunk(bundled, "个人信息保护法", n))[0] not in listed
    )
    vec = bundled.question_vector(question, True)
    memory = build(vec[None, :], [[Article("个人信息保护法", number, None, key)]])
    shipped = qtower.shipped()
    monkeypatch.setattr(qtower, "shipped", lambda: dataclasses.replace(shipped, memory=memory))
    bundled._answers = None
    assert bundled.rankings(question, 100)["memory"] == [chunk_id]
    # the shipped weight lifts a single vote over passages one channel ranks low; this small corpus has few
    monkeypatch.setitem(bundled.tower_weights, "memory", 50.0)
    after = bundled.search(question, 100, xrefs=False, rerank=False)
    head = [(h.chunk.chunk_id, h.score) for h in after[: config.HEAD]]
    assert head == [(h.chunk.chunk_id, h.score) for h in before[: config.HEAD]]
    found = {h.chunk.chunk_id: h for h in after}
    assert chunk_id in found and ("memory", 1) in found[chunk_id].channels
    assert found[chunk_id].rank > config.HEAD
    assert chunk_id not in [h.chunk.chunk_id for h in bundled.search(question, 100, xrefs=False, tuned=False)]
    english = bundled.search("can I return goods bought online", 100, xrefs=False, rerank=False)
    assert not any(ch == "memory" for h in english for ch, _ in h.channels)


def test_the_memory_shows_no_superseded_version_unless_asked(
    bundled: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled 网络安全法 is the 2016 text, marked 已修改: a remembered article of it is found, but the search's
    default filters keep it out of the memory channel, as they keep it out of every other channel."""
    question = "网络运营者泄露用户信息要承担什么责任"
    chunk_id, key = _article_chunk(bundled, "网络安全法", 42)
    memory = build(bundled.question_vector(question, True)[None, :], [[Article("网络安全法", 42, None, key)]])
    shipped = qtower.shipped()
    monkeypatch.setattr(qtower, "shipped", lambda: dataclasses.replace(shipped, memory=memory))
    bundled._answers = None
    assert "memory" not in bundled.rankings(question, 100)
    assert bundled.rankings(question, 100, include_repealed=True)["memory"] == [chunk_id]


def test_a_tail_only_channel_leaves_the_head_of_the_fusion_alone() -> None:
    ranked = {"bm25": list(range(15)), "dense": list(range(14, -1, -1))[:8] + [20, 21]}
    prior = [1.0] * 100

    def run(channels: dict[str, list[int]]) -> fusion.Fused[int]:
        return fusion.fuse(
            channels,
            {"bm25": 1.0, "dense": 1.0, "memory": 5.0},
            20,
            prior=prior.__getitem__,
            tie=lambda r: r,
            doc_of=lambda r: r // 50,
            neighbour=lambda r, d: None,
            fetch=lambda rows: {r: _chunk(r) for r in rows},
        )

    plain, with_memory = run(ranked), run({**ranked, "memory": [99, 3]})
    assert "memory" in config.TAIL_ONLY
    assert with_memory.order[: config.HEAD] == plain.order[: config.HEAD]  # weight 5 and all: not in the head
    assert 99 in with_memory.order[config.HEAD :] and 99 not in plain.order
    assert ("memory", 1) in with_memory.channels[99]


def _chunk(row: int) -> object:
    from kb.chunk import Chunk

    text = f"passage {row}"
    return Chunk(f"d.txt#{row}", "d.txt", "d", row, text, 0, len(text), "en")


def test_a_fold_remembers_only_the_questions_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """kb.train.cv.fold_memory builds each fold's memory from the other folds' questions: `remember` holds exactly
    the questions asked for, in order, with their gold articles (what a held-out question must not find)."""
    from kb.train import memory as train_memory
    from tests.conftest import prepared_set

    rows = [
        {"gold": [{"name": f"劳动合同法第{n}条", "text": f"条文{i}"} for n in ("一", "二")[: i + 1]]} for i in range(3)
    ]
    monkeypatch.setattr(train_memory, "_stard_rows", lambda limit: rows)
    prep = prepared_set(["zh", "zh", "zh", "en"], [0, 1, 2, 1])
    got = train_memory.remember(prep, [2, 0], _unit([1, 0], [0, 1]))
    assert len(got) == 2
    assert [[got.articles[a].key for a in got.answers[got.offsets[q] : got.offsets[q + 1]]] for q in (0, 1)] == [
        ["条文2", "条文2"],
        ["条文0"],
    ]
    assert [(a.number, a.key) for a in got.articles] == [(1, "条文2"), (2, "条文2"), (1, "条文0")]
