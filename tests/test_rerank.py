"""The reranker (kb.search.rerank): features, the shipped weights and their hash, what it changes, and the switch."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kb.chunk import Chunk
from kb.errors import ModelLoadError, ModelMismatchError
from kb.ingest.document import DocMeta
from kb.search import rerank
from kb.search.hits import Hit
from kb.text.lexical import tokenize
from kb.train.rerank import RerankConfig, Sample, fit

ROOT = Path(__file__).parent.parent


def _hit(rank: int, text: str, doc: str = "zh/a.txt", title: str = "价格规定", article: str = "") -> Hit:
    chunk = Chunk(
        chunk_id=f"{doc}#{rank}",
        doc_id=doc,
        title=title,
        lang="zh" if any(ord(c) > 0x3000 for c in text) else "en",
        text=text,
        char_start=0,
        char_end=len(text),
        article=article,
        ordinal=rank,
    )
    return Hit(chunk, 1.0 / rank, rank, "", (), (("bm25", rank),), DocMeta(), doc)


def _feature(x: np.ndarray, name: str) -> list[float]:
    return x[:, rerank.FEATURES.index(name)].tolist()


def test_features_see_the_definition_the_question_asks_for() -> None:
    hits = [
        _hit(1, "第十九条 经营者不得实施下列价格欺诈行为", article="第十九条"),
        _hit(2, "第二条 本规定所称价格欺诈，是指经营者利用虚假的价格手段", article="第二条"),
        _hit(3, "Live-streaming hosts need training.", doc="en/b.txt", title="notes"),
    ]
    x = rerank.features("什么是价格欺诈", hits)
    assert x.shape == (3, len(rerank.FEATURES))
    assert _feature(x, "defines") == [0.0, 1.0, 0.0]
    assert _feature(x, "asks_def") == [0.0, 1.0, 0.0]
    assert _feature(x, "article") == [1.0, 1.0, 0.0]
    assert _feature(x, "same_lang") == [1.0, 1.0, 0.0]
    assert _feature(x, "ch_bm25")[0] == 1.0 and _feature(x, "ch_dense") == [0.0, 0.0, 0.0]
    assert rerank.defined_terms('The term "live commerce" means selling by video.') == ["live commerce"]


def _uncached_features(query: str, hits: list[Hit]) -> np.ndarray:
    """The passage columns as features() computed them before the per-passage cache: everything from scratch."""
    words = set(tokenize(query))
    long_words = {w for w in words if len(w) >= (2 if ord(w[0]) > 0x3000 else 5)}
    q_bigrams = rerank._bigrams(query)
    rows = []
    for h in hits:
        text, tokens, terms = h.chunk.text, set(tokenize(h.chunk.text)), rerank.defined_terms(h.chunk.text)
        rows.append(
            [
                len(words & tokens) / len(words),
                len(long_words & tokens) / max(len(long_words), 1),
                len(q_bigrams & rerank._bigrams(text)) / len(q_bigrams),
                len(words & set(tokenize(h.chunk.title))) / len(words),
                float(any(t in query.lower() for t in terms)),
                float(bool(h.chunk.article) or bool(rerank._ARTICLE.match(text))),
                np.log(max(len(text), 1) / 150.0),
            ]
        )
    return np.array(rows, dtype=np.float32)


def test_cached_passage_features_equal_computed_ones_on_a_miss_and_a_hit() -> None:
    hits = [
        _hit(1, "第十九条 经营者不得实施下列价格欺诈行为：（一）虚构原价", article="第十九条"),
        _hit(2, "本规定所称价格欺诈，是指经营者利用虚假的价格手段，诱骗消费者与其进行交易的行为。"),
        _hit(3, 'The term "price fraud" means misleading prices. Consumers may claim compensation.', doc="en/b.txt"),
    ]
    query = "什么是价格欺诈 price fraud"
    names = ["cover", "cover_long", "bigram", "title", "defines", "article", "length"]
    columns = [rerank.FEATURES.index(n) for n in names]
    rerank.passage_features.cache_clear()
    rerank.title_tokens.cache_clear()
    miss = rerank.features(query, hits)
    assert rerank.passage_features.cache_info().misses == 3
    hit = rerank.features(query, hits)
    assert rerank.passage_features.cache_info().hits == 3
    np.testing.assert_array_equal(miss, hit)
    np.testing.assert_array_equal(miss[:, columns], _uncached_features(query, hits))
    assert (miss[:, columns] != 0).any(axis=0).all()  # each compared column is non-zero somewhere


def test_the_passage_feature_cache_is_bounded() -> None:
    rerank.passage_features.cache_clear()
    for n in range(rerank.PASSAGE_CACHE + 100):
        rerank.passage_features(f"第{n}条 价格")
    info = rerank.passage_features.cache_info()
    assert info.maxsize == rerank.PASSAGE_CACHE and info.currsize == rerank.PASSAGE_CACHE
    rerank.passage_features.cache_clear()


def test_rerank_reorders_the_pool_only_and_renumbers_ranks() -> None:
    n = len(rerank.FEATURES)
    coef = np.zeros(n, dtype=np.float32)
    coef[rerank.FEATURES.index("defines")] = 1.0
    model = rerank.Reranker(np.zeros(n, np.float32), np.ones(n, np.float32), coef, pool=2)
    hits = [
        _hit(1, "第十九条 经营者不得实施下列价格欺诈行为"),
        _hit(2, "第二条 本规定所称价格欺诈，是指经营者利用虚假的价格手段"),
        _hit(3, "第三条 本规定所称价格欺诈，是指另一种说法"),
    ]
    out = model.rerank("什么是价格欺诈", hits)
    assert [h.chunk.chunk_id for h in out] == ["zh/a.txt#2", "zh/a.txt#1", "zh/a.txt#3"]  # #3 is outside the pool
    assert [h.rank for h in out] == [1, 2, 3]


def _scorer(feature: str, pool: int = 5) -> rerank.Reranker:
    n = len(rerank.FEATURES)
    coef = np.zeros(n, dtype=np.float32)
    coef[rerank.FEATURES.index(feature)] = 1.0
    return rerank.Reranker(np.zeros(n, np.float32), np.ones(n, np.float32), coef, pool)


def test_a_language_without_a_scorer_keeps_the_fused_order() -> None:
    models = rerank.Rerankers({"zh": _scorer("cover")})
    hits = [_hit(1, "第二十五条 七日无理由退货"), _hit(2, "goods bought online may be returned", doc="en/b.txt")]
    assert [h.chunk.chunk_id for h in models.rerank("return of goods bought online", hits)] == [
        "zh/a.txt#1",
        "en/b.txt#2",
    ]
    assert not models.applies("return of goods bought online") and models.applies("网购商品可以退货吗")


def test_other_language_passages_keep_their_places() -> None:
    """An English question's English passages are re-ordered among their own places; the Chinese article a
    cross-lingual channel put at 1 stays at 1, though it shares no word with the question."""
    models = rerank.Rerankers({"en": _scorer("cover")})
    hits = [
        _hit(1, "第二十五条 经营者采用网络方式销售商品，消费者有权自收到商品之日起七日内退货"),
        _hit(2, "Platform rules on sponsored listings.", doc="en/b.txt"),
        _hit(3, "Goods bought online may be returned within seven days.", doc="en/c.txt"),
    ]
    out = models.rerank("can goods bought online be returned", hits)
    assert [h.chunk.chunk_id for h in out] == ["zh/a.txt#1", "en/c.txt#3", "en/b.txt#2"]
    assert [h.rank for h in out] == [1, 2, 3]
    assert out[0].score == out[1].score  # not scored by the English model: it shows the score below it
    assert out[1].score >= out[2].score
    whole = models.models["en"].rerank("can goods bought online be returned", hits)  # without the language rule
    assert whole[0].chunk.chunk_id == "en/c.txt#3"


def test_a_cross_language_scorer_reorders_the_other_languages_passages_among_their_places() -> None:
    """An English question: the English scorer orders its English passages, the "en>zh" scorer its Chinese ones
    (reading the question with its translation), each among the places its passages hold; the shown scores
    still fall down the list."""
    models = rerank.Rerankers({"en": _scorer("cover", pool=5), "en>zh": _scorer("defines", pool=6)})
    hits = [
        _hit(1, "第十九条 经营者不得实施下列价格欺诈行为"),
        _hit(2, "Platform rules on sponsored listings.", doc="en/b.txt"),
        _hit(3, "第二条 本规定所称价格欺诈，是指经营者利用虚假的价格手段"),
        _hit(4, "What price fraud means for online shops.", doc="en/c.txt"),
        _hit(5, "第三条 其他规定"),
        _hit(6, "第四条 本规定所称价格欺诈，是指另一种说法"),  # outside the English scorer's pool, inside its own
    ]
    question = "what is price fraud"
    assert models.applies(question) and models.across(question) and not models.across("什么是价格欺诈")
    assert models.pool(question) == 6 and models.pool("什么是价格欺诈") == 0
    plain = models.rerank(question, hits)  # no translation: no Chinese word to find, the fused order stands
    assert [h.chunk.chunk_id for h in plain][:4] == ["zh/a.txt#1", "en/c.txt#4", "zh/a.txt#3", "en/b.txt#2"]
    out = models.rerank(question, hits, translated=question + " 价格欺诈")
    assert [h.chunk.chunk_id for h in out] == [
        "zh/a.txt#3",  # defines the translated term: first of the Chinese places (1, 3, 5, 6)
        "en/c.txt#4",  # the English places (2, 4) keep English passages, the better covered first
        "zh/a.txt#6",
        "en/b.txt#2",
        "zh/a.txt#1",
        "zh/a.txt#5",
    ]
    assert [h.rank for h in out] == [1, 2, 3, 4, 5, 6]
    assert all(a.score >= b.score for a, b in zip(out, out[1:]))
    # the Chinese question has no scorer here, and an English-only file leaves an English question's Chinese
    # passages where the fusion put them
    assert models.rerank("什么是价格欺诈", hits) == list(hits)
    english_only = rerank.Rerankers({"en": _scorer("cover", pool=5)})
    kept = english_only.rerank(question, hits, translated=question + " 价格欺诈")
    assert [h.chunk.chunk_id for h in kept if h.chunk.lang == "zh"] == [
        "zh/a.txt#1",
        "zh/a.txt#3",
        "zh/a.txt#5",
        "zh/a.txt#6",
    ]


def test_with_translation_appends_the_chinese_words_of_an_english_question() -> None:
    from kb.text.bilingual import with_translation

    held = {"劳动", "合同", "劳动合同", "工资"}
    out = with_translation("terminate a labor contract", lambda t: 5 if t in held else 0)
    assert out.startswith("terminate a labor contract ") and "劳动合同" in out.split()
    assert with_translation("解除劳动合同", lambda t: 5) == "解除劳动合同"  # a Chinese question is left alone
    assert with_translation("zzzq", lambda t: 5) == "zzzq"


def test_fit_learns_which_feature_marks_the_gold_passage() -> None:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(40):
        x = rng.normal(size=(10, len(rerank.FEATURES))).astype(np.float32)
        gold = np.zeros(10, dtype=bool)
        gold[int(np.argmax(x[:, rerank.FEATURES.index("cover")]))] = True
        samples.append(Sample(x, gold))
    model = fit(samples, RerankConfig(pool=10, steps=200))
    assert int(np.argmax(model.coef)) == rerank.FEATURES.index("cover")


def test_shipped_weights_load_and_their_hash_is_recorded(tmp_path: Path) -> None:
    shipped = rerank.load()
    raw = rerank.WEIGHTS.read_bytes()
    assert shipped.sha256 == hashlib.sha256(raw).hexdigest()
    assert rerank.WEIGHTS.stat().st_size < 100_000
    # fitted with the training default: every scorer re-orders as many candidates as it was trained on
    assert (shipped.models["zh"].pool, shipped.models["en"].pool) == (RerankConfig().pool, RerankConfig().english_pool)
    # a search fuses as many passages as the question's scorers re-order: an English question's cross-language
    # scorer takes its first 100 (its Chinese ones), the English scorer the English ones among the first 30
    across = shipped.models["en>zh"]
    assert (shipped.pool("什么是价格欺诈"), shipped.pool("what is price fraud")) == (
        shipped.models["zh"].pool,
        across.pool,
    )
    assert across.pool == RerankConfig().pool and across.reads_similarity  # it reads the adapted vectors' similarity
    assert rerank.Rerankers({"zh": shipped.models["zh"]}).pool("what is price fraud") == 0
    # Chinese from STARD train, English from SciFact train, English questions' Chinese passages from our translations
    assert set(shipped.models) == {"zh", "en", "en>zh"}
    assert json.loads(raw)["trained"]["across"] == 1
    assert all(np.abs(m.coef).sum() > 0 for m in shipped.models.values())  # trained, not zeros
    # save() writes the same bytes for the same models (so a retrain with the same data gives the same sha256)
    copy = tmp_path / "r.json"
    data = json.loads(raw)
    assert rerank.save(shipped.models, copy, data["trained"]) == shipped.sha256


def test_a_damaged_or_stale_reranker_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="missing"):
        rerank.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="retrain with `python scripts/train.py rerank-fit`"):
        rerank.load(bad)
    stale = tmp_path / "stale.json"
    data = json.loads(rerank.WEIGHTS.read_text(encoding="utf-8"))
    zh = data["models"]["zh"]
    stale.write_text(json.dumps({**data, "models": {"zh": {**zh, "features": zh["features"][:-1]}}}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="other features"):
        rerank.load(stale)


@pytest.mark.model
def test_search_switch_changes_the_order_and_keeps_the_passages_cited() -> None:
    from kb.search.searcher import Searcher

    searcher = Searcher(ROOT / "index")
    on = searcher.search("什么是价格欺诈", 10, rerank=True)
    off = searcher.search("什么是价格欺诈", 10, rerank=False)
    assert [h.rank for h in on] == list(range(1, 11))
    assert [h.chunk.chunk_id for h in on] != [h.chunk.chunk_id for h in off]
    assert all(h.citation for h in on)
    top3 = [h.chunk.text for h in on[:3]]
    assert any("本规定所称价格欺诈" in t for t in top3), [h.citation for h in on[:3]]
    assert not any("本规定所称价格欺诈" in h.chunk.text for h in off[:3])  # what the reranker fixes
    assert {h.chunk.chunk_id for h in on} <= {
        h.chunk.chunk_id for h in searcher.search("什么是价格欺诈", 30, rerank=False)
    }


def _shipped_manifest(index: Path) -> tuple[Path, dict]:
    path = index / (index / "CURRENT").read_text().strip() / "manifest.json"
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_the_shipped_index_records_the_shipped_reranker() -> None:
    _, manifest = _shipped_manifest(ROOT / "index")
    assert manifest["reranker"] == {"file": "reranker.json", "sha256": rerank.shipped().sha256}


def test_an_index_built_with_other_reranker_weights_is_refused_and_reported(tmp_path: Path) -> None:
    from kb.index.manifest import WeightsInfo
    from kb.index.verify import verify

    model = rerank.shipped()
    with pytest.raises(ModelMismatchError, match="reranker 000000000000.*rebuild with `python -m kb build`"):
        rerank.check_manifest(WeightsInfo("reranker.json", "0" * 64), model, "index/")
    rerank.check_manifest(WeightsInfo.of(rerank.WEIGHTS), model, "index/")  # the same weights pass
    rerank.check_manifest(None, model, "index/")  # an index from before the reranker was recorded
    index = tmp_path / "index"
    shutil.copytree(ROOT / "index", index)
    path, manifest = _shipped_manifest(index)
    manifest["reranker"]["sha256"] = "f" * 64
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    problems = verify(ROOT / "corpus", index, quick=True)
    assert [p for p in problems if "reranker" in p] == [
        f"reranker ffffffffffff recorded, reranker.json is {model.sha256[:12]}"
    ]


@pytest.mark.model
def test_search_refuses_an_index_recorded_with_other_reranker_weights(tmp_path: Path) -> None:
    from kb.search.searcher import Searcher

    index = tmp_path / "index"
    shutil.copytree(ROOT / "index", index)
    path, manifest = _shipped_manifest(index)
    manifest["reranker"]["sha256"] = "f" * 64
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    searcher = Searcher(index)
    with pytest.raises(ModelMismatchError, match="built for reranker ffffffffffff.*--rerank off"):
        searcher.search("什么是价格欺诈", 3)
    assert searcher.search("什么是价格欺诈", 3, rerank=False)


def test_sim_features_are_the_dense_similarity_and_its_gap_to_the_best() -> None:
    hits = [_hit(1, "第一条 价格欺诈"), _hit(2, "第二条 价格"), _hit(3, "第三条 其他")]
    x = rerank.features("什么是价格欺诈", hits, np.array([0.5, 0.9, 0.2], np.float32))
    assert _feature(x, "sim") == pytest.approx([0.5, 0.9, 0.2])
    assert _feature(x, "sim_gap") == pytest.approx([-0.4, 0.0, -0.7])
    none = rerank.features("什么是价格欺诈", hits)  # an index without vectors: both left at 0
    assert _feature(none, "sim") == _feature(none, "sim_gap") == [0.0, 0.0, 0.0]


def test_the_reranker_reads_the_similarity_a_searcher_gives(index: Path) -> None:
    from kb.search.searcher import Searcher, similarities

    searcher = Searcher(index)
    question = "网购商品七日内无理由退货"
    hits = searcher.search(question, 5, rerank=False)
    vec = searcher.question_vector(question, searcher.tuned)
    assert searcher.question_vector(question, searcher.tuned) is vec  # embedded once, kept for the reranker
    sims = similarities(searcher.index, vec, hits)
    assert sims is not None and len(sims) == len(hits)
    stored = searcher.index.vectors["dense"].reconstruct(searcher.index.rows_of([hits[0].chunk.chunk_id])[0])
    assert sims[0] == pytest.approx(float(stored @ vec), abs=1e-5)
    similarity = searcher._similarity(question, searcher.tuned)
    assert similarity is not None and np.allclose(similarity(hits), sims)
    seen: list[list[str]] = []
    model = rerank.shipped().models["zh"]
    model.rerank(question, hits, "zh", lambda hs: seen.append([h.chunk.chunk_id for h in hs]) or sims)
    assert seen == [[h.chunk.chunk_id for h in hits]]
    # the English scorer gives sim no weight, so it does not read the passages' vectors (a query on Milvus)
    english = rerank.shipped().models["en"]
    assert model.reads_similarity and not english.reads_similarity
    seen.clear()
    en_hits = searcher.search("seven-day no-reason return of goods bought online", 5, rerank=False, lang="en")
    assert len(en_hits) >= 2 and all(h.chunk.lang == "en" for h in en_hits)  # so the scorer does re-order them
    out = english.rerank("return of goods", en_hits, "en", lambda hs: seen.append([]) or np.ones(len(hs)))
    assert seen == [] and out == english.rerank("return of goods", en_hits, "en")


def test_reranker_samples_take_the_towers_candidates_only_when_asked(index: Path) -> None:
    from kb.embed.models import HashingEmbedder
    from kb.search.searcher import Searcher
    from kb.train.cv import candidate_samples
    from kb.train.tower import Prepared

    searcher = Searcher(index, tuned=False)
    rows = searcher.index.vectors["dense"].ntotal
    queries = ["公司注册资本", "网购商品七日内无理由退货"]
    prep = Prepared(
        queries,
        [np.zeros((2, 4), np.float32)] * 2,
        10,
        [np.array([0]), np.array([1])],
        [{"bm25": list(range(rows))[:8]}, {"bm25": list(range(rows))[::-1][:8]}],
        np.zeros((1, 4), np.float32),
        np.ones(rows, dtype=bool),
        2,
        ["zh", "zh"],
        [0, 1],
    )

    class Head:  # the tower's question vectors: the hashing embedder's, as the index was built with it
        def encode(self, hidden: list[np.ndarray]) -> np.ndarray:
            return HashingEmbedder().query(queries)

    untrained = candidate_samples(prep, searcher, Head(), 10, tower=False)  # type: ignore[arg-type]
    both = candidate_samples(prep, searcher, Head(), 10, tower=True)  # type: ignore[arg-type]
    assert len(untrained) == 2 and len(both) == 4
    assert all(np.array_equal(a.x, b.x) for a, b in zip(untrained, both[:2]))  # the untrained system's come first
    assert any(not np.array_equal(a.x, b.x) for a, b in zip(both[:2], both[2:]))  # the tower's rank otherwise
    # The shipped scorer was fitted the default way: the untrained system's STARD candidates only.
    trained = json.loads(rerank.WEIGHTS.read_text(encoding="utf-8"))["trained"]
    assert RerankConfig().tower_candidates == 0 and trained["tower_candidates"] == 0


def test_a_search_gives_the_cross_language_scorer_the_translated_question(
    index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kb.search.searcher import Searcher
    from kb.text.bilingual import with_translation

    seen: list[tuple[str, str | None, int]] = []

    class Spy(rerank.Reranker):
        def placements(self, query, head, lang=None, similarity=None):  # type: ignore[no-untyped-def]
            seen.append((query, lang, len(head)))
            return super().placements(query, head, lang, similarity)

    n = len(rerank.FEATURES)
    coef = np.zeros(n, dtype=np.float32)
    coef[rerank.FEATURES.index("cover")] = 1.0
    sha = rerank.shipped().sha256  # what the index recorded
    models = rerank.Rerankers({"en>zh": Spy(np.zeros(n, np.float32), np.ones(n, np.float32), coef, 40)}, sha)
    monkeypatch.setattr(rerank, "shipped", lambda: models)
    searcher = Searcher(index)
    question = "consumers may return goods within seven days"
    translated = searcher.translated(question)
    assert translated == with_translation(question, searcher.index.bm25.df) != question
    hits = searcher.search(question, 10)
    # the translation, the Chinese passages, the scorer's pool (the whole tiny corpus when it holds fewer)
    assert seen == [(translated, "zh", min(40, len(searcher.search(question, 40, rerank=False))))]
    fused = searcher.search(question, 10, rerank=False)
    assert [h.chunk.chunk_id for h in hits if h.chunk.lang == "en"] == [
        h.chunk.chunk_id for h in fused if h.chunk.lang == "en"
    ]  # no English scorer in this file: the English passages keep the fusion's order and places
    assert [h.chunk.lang for h in hits] == [h.chunk.lang for h in fused]
