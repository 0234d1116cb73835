"""The question tower and the training helpers: shipped weights, manifest hash, what it changes and what it leaves."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kb.embed import tower as qtower
from kb.errors import KbError, ModelLoadError, ModelMismatchError
from kb.search.fusion import fuse
from kb.train.data import definition_pairs, gold_rows, read_translations
from kb.train.tower import TrainConfig, folds, training_ids
from tests.conftest import prepared_set

ROOT = Path(__file__).parent.parent


def test_gold_rows_follow_the_30_character_rule() -> None:
    texts = ["第一条 甲乙丙丁" * 6, "无关条文", "第一条 甲乙丙丁" * 6, "第二条 其他"]
    allowed = np.array([True, True, False, True])
    gold = gold_rows(texts, allowed, [["第一条\n甲乙丙丁" * 6], ["第二条 其他"], ["不存在的条文"]])
    assert [g.tolist() for g in gold] == [[0], [3], []]  # row 2 holds it but the search may not return it


def test_definition_pairs_ask_what_the_article_defines() -> None:
    texts = [
        "第二条 本规定所称价格欺诈，是指经营者利用虚假的价格手段。",
        "第三条 本法所称电子商务是指通过网络销售。",
        "第四条 无定义",
    ]
    pairs = definition_pairs(texts, np.array([True, True, True]), limit=10)
    assert pairs == [("什么是价格欺诈？", texts[0]), ("什么是电子商务？", texts[1])]


def test_folds_are_disjoint_and_cover_every_question() -> None:
    parts = folds(103, 5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert [len(p) for p in parts] == [21, 21, 21, 20, 20]
    assert [p.tolist() for p in folds(103, 5, seed=0)] == [p.tolist() for p in parts]


def test_shipped_weights_are_small_and_recorded_in_the_shipped_index() -> None:
    weights = qtower.load_weights()
    assert weights.path.stat().st_size <= 30 * 1024 * 1024
    manifest = json.loads(
        (ROOT / "index" / (ROOT / "index" / "CURRENT").read_text().strip() / "manifest.json").read_text(
            encoding="utf-8"
        )
    )
    assert manifest["question_tower"]["sha256"] == weights.sha256 == qtower.sha256_of(qtower.WEIGHTS)


def test_an_index_tuned_with_other_weights_is_refused(tmp_path: Path) -> None:
    weights = qtower.load_weights()
    with pytest.raises(ModelMismatchError, match="rebuild with `python -m kb build"):
        qtower.check_manifest(qtower.TowerInfo("x", "0" * 64, (10, 11), ("zh",)), weights, str(tmp_path))
    qtower.check_manifest(qtower.manifest_entry(weights), weights, str(tmp_path))  # the same weights pass
    qtower.check_manifest(None, weights, str(tmp_path))  # an index from before the tower: packaged e5 vectors


def test_a_damaged_weight_file_says_how_to_fix_it(tmp_path: Path) -> None:
    bad = tmp_path / "tower.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match="retrain with `python scripts/train.py fit`"):
        qtower.load_weights(bad)
    with pytest.raises(ModelLoadError, match="missing"):
        qtower.load_weights(tmp_path / "absent.safetensors")


@pytest.mark.model
def test_tower_changes_questions_of_its_languages_only() -> None:
    from kb.embed.models import E5Embedder

    base = E5Embedder(workers=1)
    weights = qtower.load_weights()
    tuned = qtower.TunedE5(base, weights)
    zh = ["公司拖欠工资怎么办？", "什么是价格欺诈"]
    en = ["what measures address live-stream talent"]
    cos_zh = (tuned.query(zh) * base.query(zh)).sum(1)
    assert np.all(cos_zh < 0.99), cos_zh  # the tower moves Chinese questions (to about 0.5 cosine of e5)
    cos_en = (tuned.query(en) * base.query(en)).sum(1)
    assert np.all(cos_en < 0.99) if "en" in weights.langs else np.allclose(cos_en, 1.0, atol=1e-5), cos_en
    only_zh = qtower.TunedE5(base, dataclasses.replace(weights, langs=("zh",)))
    assert np.allclose(only_zh.query(en), base.query(en))  # a language the file was not trained on is untouched
    assert np.allclose(tuned.passage(zh), base.passage(zh))


@pytest.mark.model
def test_a_batch_in_both_languages_shares_the_lower_layers_and_gives_each_its_tower(monkeypatch) -> None:
    from kb import config
    from kb.embed.models import E5Embedder

    monkeypatch.setattr(config, "fast_start", lambda: False)  # a server's e5: torch, where the batch is shared
    base = E5Embedder(workers=1)
    tuned = qtower.TunedE5(base, dataclasses.replace(qtower.load_weights(), langs=("zh",)))
    zh, en = ["公司拖欠工资怎么办？", "什么是价格欺诈"], ["what measures address live-stream talent"]
    apart = np.concatenate([tuned.query(zh[:1]), tuned.query(en), tuned.query(zh[1:])])
    calls: list[int] = []
    engine = base._load()
    original = type(engine).query_with
    monkeypatch.setattr(type(engine), "query_with", lambda *a: calls.append(1) or original(*a))
    together = tuned.query([zh[0], en[0], zh[1]])
    assert calls == [1]  # one pass through the shared layers
    # The same vectors as one at a time, up to what bf16 batching moves (the zh rows moved ~0.5 by the tower).
    assert np.all((together * apart).sum(1) > 0.9999), (together * apart).sum(1)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_searcher_refuses_an_index_recorded_with_another_tower(tmp_path: Path) -> None:
    from kb.search.searcher import Searcher

    index = tmp_path / "index"
    shutil.copytree(ROOT / "index", index)
    gen = index / (index / "CURRENT").read_text().strip()
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    manifest["question_tower"]["sha256"] = "f" * 64
    (gen / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ModelMismatchError, match="question tower ffffffffffff"):
        Searcher(index)
    assert Searcher(index, tuned=False).search("什么是价格欺诈", 3)


@pytest.mark.model
def test_refresh_refuses_a_new_generation_recorded_with_another_tower(tmp_path: Path) -> None:
    from kb.search.searcher import Searcher

    index = tmp_path / "index"
    shutil.copytree(ROOT / "index", index)
    searcher = Searcher(index)
    old = searcher.generation
    new = index / "g999999"
    shutil.copytree(index / old, new)
    manifest = json.loads((new / "manifest.json").read_text(encoding="utf-8"))
    manifest["question_tower"]["sha256"] = "f" * 64
    (new / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    (index / "CURRENT").write_text("g999999\n", encoding="utf-8")
    with pytest.raises(ModelMismatchError, match="question tower ffffffffffff"):
        searcher.refresh()
    assert searcher.generation == old  # still serving what it had
    assert searcher.search("什么是价格欺诈", 3, rerank=False)


def test_a_question_and_its_translation_train_and_test_together() -> None:
    prep = prepared_set(["zh", "zh", "zh", "en", "en", "definition", "scifact"], [0, 1, 2, 2, 0, -1, -1])
    assert prep.positions("en") == [3, 4] and prep.positions("en", {0}) == [4]
    held = {2}  # STARD question 2 is in the test fold: neither its Chinese nor its English version trains
    assert training_ids(prep, held, TrainConfig()) == [0, 1, 4, 6]  # the shipped setting: all three sets
    assert training_ids(prep, held, TrainConfig(english=0, scifact=0)) == [0, 1]  # Chinese STARD questions alone
    assert training_ids(prep, held, TrainConfig(english=0, scifact=0, definitions=1)) == [0, 1, 5]


def test_translations_read_as_id_and_question(tmp_path: Path) -> None:
    path = tmp_path / "en.tsv"
    path.write_text("# our translations\n12\tIs it lawful?\n\n7\t Who pays? \n", encoding="utf-8")
    assert read_translations(path) == {12: "Is it lawful?", 7: "Who pays?"}
    path.write_text("12 Is it lawful?\n", encoding="utf-8")
    with pytest.raises(KbError, match="en.tsv:1: expected 'id<TAB>English question'"):
        read_translations(path)


def test_the_translations_cover_the_cross_lingual_questions() -> None:
    every = read_translations(ROOT / "scripts" / "data" / "stard-train-en.tsv")
    en100 = read_translations(ROOT / "scripts" / "data" / "stard-train-en100.tsv")
    assert all(every[qid] == text for qid, text in en100.items())
    assert len(every) >= 1200
    assert not any(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in every.values())  # no Chinese


def test_the_tower_applies_to_the_languages_it_was_trained_on() -> None:
    assert qtower.trained_langs({}) == ("zh",)  # a file from before English training
    assert qtower.trained_langs({"scripts/train.py": json.dumps({"english": 0, "scifact": 0})}) == ("zh",)
    assert qtower.trained_langs({"scripts/train.py": json.dumps({"english": 1, "scifact": 1})}) == ("zh", "en")
    # A garbled or foreign record reads as Chinese only.
    assert qtower.trained_langs({"scripts/train.py": "[1, 2]"}) == ("zh",)
    assert qtower.trained_langs({"scripts/train.py": "not json"}) == ("zh",)


def test_untrained_candidates_are_kept_per_index(tmp_path: Path) -> None:
    from kb.train.cv import untrained_cache

    national, whole = tmp_path / "national" / "index", tmp_path / "whole" / "index"
    assert untrained_cache(tmp_path, national) == untrained_cache(tmp_path, national)
    assert untrained_cache(tmp_path, national) != untrained_cache(tmp_path, whole)
    assert untrained_cache(tmp_path, national).parent == tmp_path
    # Fused with other weights (`train.py rerank-cv --weights`), the candidates are kept apart; with the shipped
    # weights they keep the name they had before weights could be changed.
    from kb import config
    from kb.train.cv import fusion_weights

    assert untrained_cache(tmp_path, national, 100, config.WEIGHTS) == untrained_cache(tmp_path, national)
    other = fusion_weights({"dense": 3.0})
    assert other == {**config.WEIGHTS, "dense": 3.0} and config.WEIGHTS["dense"] != 3.0
    assert untrained_cache(tmp_path, national, 100, other) != untrained_cache(tmp_path, national)
    assert untrained_cache(tmp_path, national, 100, other) == untrained_cache(tmp_path, national, 100, dict(other))


def test_train_weights_option_reads_channel_weights() -> None:
    from tests.conftest import load_script

    script = load_script("train")
    args = script._parser().parse_args(["rerank-cv", "--weights", "dense=3", "bm25=0.5"])
    assert dict(args.weights) == {"dense": 3.0, "bm25": 0.5}
    assert script._parser().parse_args(["rerank-cv"]).weights == []
    for wrong in ("dense", "dense=x", "dnese=3"):  # no number, not a number, no such channel
        with pytest.raises(SystemExit):
            script._parser().parse_args(["rerank-cv", "--weights", wrong])
    with pytest.raises(SystemExit):  # a step that ships weights fits with the product's own fusion
        script.main(["rerank-fit", "--weights", "dense=3"])


@pytest.mark.model
def test_definition_set_for_the_reranker_asks_what_each_article_defines(tmp_path: Path) -> None:
    from kb.train.data import prepare_definitions
    from tests.conftest import one_file_index

    law = (
        "# 示范价格规定\n\n第一条 为了规范价格行为，制定本规定。\n\n"
        "第二条 本规定所称价格欺诈，是指经营者利用虚假的价格手段诱骗消费者的行为。\n\n"
        "第三条 本规定所称明码标价，是指经营者公开标示商品价格的行为。\n"
    )
    index = one_file_index(tmp_path, "price.md", law)
    prep = prepare_definitions(index, 4, 10)
    assert sorted(prep.queries) == ["什么是价格欺诈？", "什么是明码标价？"]
    assert prep.kind == ["definition", "definition"] and prep.n_stard == 0 and prep.group == [-1, -1]
    assert prep.start == 8 and all(h.shape[1] == 384 for h in prep.hidden)
    from kb.search.searcher import Searcher

    store = Searcher(index, tuned=False).index.store
    for question, rows in zip(prep.queries, prep.gold):
        (chunk,) = store.chunks([int(r) for r in rows])
        assert question[3:-1] in chunk.text and "所称" in chunk.text


def test_chinese_questions_through_the_tower_fuse_with_its_weights() -> None:
    from kb import config
    from kb.search.searcher import Searcher

    searcher = Searcher(ROOT / "index")  # the shipped index: e5, recorded with the shipped tower (zh and en)
    assert config.TOWER_WEIGHTS and {**config.WEIGHTS, **config.TOWER_WEIGHTS} != config.WEIGHTS
    assert searcher.fusion_weights("什么是价格欺诈", True) == {**config.WEIGHTS, **config.TOWER_WEIGHTS}
    assert searcher.fusion_weights("什么是价格欺诈", False) == config.WEIGHTS  # --tuned off: the packaged e5
    assert searcher.fusion_weights("what is price fraud", True) == config.WEIGHTS  # measured for Chinese only
    searcher.tower_weights = {}
    assert searcher.fusion_weights("什么是价格欺诈", True) == config.WEIGHTS


def test_the_fusion_weights_reach_both_backends_fusion(searcher: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # A hashing-embedder index: no tower applies, so a tuned Chinese question keeps the searcher's weights.
    assert searcher.fusion_weights("电子商务经营者", True) == searcher.weights  # type: ignore[attr-defined]
    # Whatever fusion_weights gives for the question is what the backend's fusion receives.
    import importlib

    backend = importlib.import_module(type(searcher).__module__)
    given = {**searcher.weights, "dense": 7.0}  # type: ignore[attr-defined]
    asked: list[tuple[str, bool]] = []
    seen: list[object] = []
    monkeypatch.setattr(searcher, "fusion_weights", lambda query, tuned: asked.append((query, tuned)) or given)
    monkeypatch.setattr(
        backend, "fuse", lambda ranked, weights, *a, **kw: seen.append(weights) or fuse(ranked, weights, *a, **kw)
    )
    searcher.search("电子商务经营者", 3, tuned=True, rerank=False)  # type: ignore[attr-defined]
    searcher.search("电子商务经营者", 3, tuned=False, rerank=False)  # type: ignore[attr-defined]
    assert asked == [("电子商务经营者", True), ("电子商务经营者", False)] and seen == [given, given]


def _adapter_set(n_passages: int = 64, n_questions: int = 24, dim: int = 8) -> tuple[object, np.ndarray]:
    """A prepared set whose questions each have one gold passage, and question vectors near a mixture of it and
    a decoy, so the packaged passage vectors rank the gold passage poorly."""
    from kb.train.tower import Prepared

    rng = np.random.default_rng(1)
    passages = rng.normal(size=(n_passages, dim)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    gold = rng.choice(n_passages, n_questions, replace=False)
    decoy = (gold + 1) % n_passages
    vectors = passages[gold] + 1.5 * passages[decoy]
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    prep = Prepared(
        [f"q{i}" for i in range(n_questions)],
        [np.zeros((2, dim), np.float32)] * n_questions,
        10,
        [np.array([g]) for g in gold],
        [{}] * n_questions,
        passages,
        np.ones(n_passages, dtype=bool),
        n_questions,
        ["zh"] * n_questions,
        list(range(n_questions)),
    )
    return prep, vectors


def test_the_passage_adapter_learns_and_numpy_serves_what_torch_trained() -> None:
    import torch

    from kb.train.passage import Adapter, AdapterConfig, question_ids
    from kb.train.passage import fit as fit_adapter

    prep, vectors = _adapter_set()
    ids = question_ids(prep, held={0, 1})  # type: ignore[arg-type]
    assert ids == list(range(2, 24))
    cfg = AdapterConfig(hidden=16, epochs=30, lr=1e-2, batch=8, hard=4, random=16)
    tensors = fit_adapter(prep, ids, vectors[ids], cfg)  # type: ignore[arg-type]
    assert sorted(tensors) == sorted(qtower.ADAPTER_TENSORS)
    before, after = prep.passages, qtower.adapt_passages(prep.passages, tensors)  # type: ignore[attr-defined]

    def gold_rank(matrix: np.ndarray) -> float:
        gold = [int(prep.gold[i][0]) for i in ids]  # type: ignore[attr-defined]
        return float(np.mean([(matrix @ vectors[i] > matrix[g] @ vectors[i]).sum() for i, g in zip(ids, gold)]))

    assert gold_rank(after) < gold_rank(before) / 2, (gold_rank(before), gold_rank(after))
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    again = fit_adapter(prep, ids, vectors[ids], cfg)  # type: ignore[arg-type]
    assert all(np.array_equal(again[name], tensors[name]) for name in tensors)  # fixed seeds: the same tensors
    # The numpy forward a search runs equals the torch module training ran.
    torch.manual_seed(0)
    module = Adapter(8, 16)
    for p, name in zip(module.parameters(), qtower.ADAPTER_TENSORS):
        p.data = torch.from_numpy(tensors[name])
    with torch.no_grad():
        assert np.allclose(module(torch.from_numpy(before)).numpy(), after, atol=1e-5)
    # Untrained (its last layer at zero), the adapter changes nothing.
    untrained = Adapter(8, 16).tensors()
    assert np.allclose(qtower.adapt_passages(before, untrained), before, atol=1e-6)


def test_a_weight_file_keeps_its_passage_adapter_apart_from_the_layers(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    shipped = qtower.load_weights()
    path = tmp_path / "tower.safetensors"
    adapter = {name: np.ones((2, 2), np.float16) for name in qtower.ADAPTER_TENSORS}
    save_file({**shipped.tensors, **adapter}, str(path))
    loaded = qtower.load_weights(path)
    assert sorted(loaded.tensors) == sorted(shipped.tensors) and sorted(loaded.passage) == sorted(adapter)
    assert loaded.layers == shipped.layers
    save_file({**shipped.tensors, "passage.a.weight": np.ones((2, 2), np.float16)}, str(path))
    with pytest.raises(ModelLoadError, match="passage adapter holds"):
        qtower.load_weights(path)
    save_file({**shipped.tensors, "other.weight": np.ones((2, 2), np.float16)}, str(path))
    with pytest.raises(ModelLoadError, match="retrain"):
        qtower.load_weights(path)


def test_the_shipped_passage_adapter_moves_the_chinese_passages_for_tuned_questions() -> None:
    from kb.index import vectors
    from kb.search.searcher import Searcher

    assert qtower.load_weights().passage  # the shipped file holds a passage adapter
    searcher = Searcher(ROOT / "index")
    index = searcher.index
    stored = vectors.all_rows(index.vectors["dense"])
    adapted = vectors.all_rows(searcher.passage_vectors(index, "什么是价格欺诈", True))
    zh = index.columns.zh[: len(stored)]
    assert zh.any() and (~zh).any()
    moved = (stored * adapted).sum(1)
    assert 0.3 < moved[zh].mean() < 0.9, moved[zh].mean()  # Chinese passages move (mean cosine 0.50 to the stored)
    assert np.allclose(adapted[~zh], stored[~zh], atol=2e-3)  # English passages: trained on none, left as stored
    # Made once per generation, for Chinese questions through the tower; English ones and --tuned off: the stored.
    assert searcher.passage_vectors(index, "价格", True) is searcher.passage_vectors(index, "什么是价格欺诈", True)
    assert searcher.passage_vectors(index, "what is price fraud", True) is index.vectors["dense"]
    assert searcher.passage_vectors(index, "什么是价格欺诈", False) is index.vectors["dense"]
