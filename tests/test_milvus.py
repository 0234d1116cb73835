"""The Milvus backend (milvus-lite here): incremental builds, parallel workers, Milvus-side fusion, its errors.

The search contract itself (hits, citations, filters, CLI) is tested on both backends in test_search.py
and test_filters.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, build_and_open
from test_filters import write_corpus

from kb.backends import build_index, open_searcher
from kb.cli import main
from kb.embed.models import HashingEmbedder
from kb.errors import KbError, QueryError
from kb.milvus.build import in_part
from kb.milvus.search import MilvusSearcher
from kb.milvus.store import target

QUERIES = ["公司注册资本", "公司登记", "网购商品七日内无理由退货", "Company capital note", "e-commerce 电子商务"]
FILTERS = [
    {},
    {"include_repealed": True},
    {"as_of": "2010-06-01"},
    {"validity": ["已废止"]},
    {"levels": ["行政法规"], "include_repealed": True},
    {"mode": "keyword"},
    {"lang": "en"},
]


def results(searcher: MilvusSearcher) -> list[object]:
    """Everything a user sees for a set of questions and filters, plus the document list and facets."""
    out: list[object] = [[h.to_dict() for h in searcher.search(q, 20, **f)] for q in QUERIES for f in FILTERS]
    return [*out, searcher.documents(), searcher.facets().to_dict()]


def kb_build(uri: str, corpus: Path, *extra: str) -> subprocess.Popen[str]:
    """`python -m kb build --backend milvus` in its own process, as a deployment's worker would run it."""
    cmd = [
        sys.executable,
        "-m",
        "kb",
        "build",
        "--backend",
        "milvus",
        "--uri",
        uri,
        "--corpus",
        str(corpus),
        "--model",
        "hashing",
        "--no-progress",
        *extra,
    ]
    env = {**os.environ, "KB_CACHE_DIR": str(Path(uri).parent / "cache")}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_writing_halves_match_one_build(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    shutil.copytree(ROOT / "tests" / "data" / "corpus", corpus / "more")
    docs = [p.relative_to(corpus).as_posix() for p in corpus.rglob("*.*") if p.name != "metadata.csv"]
    # new.txt repeals old.txt from the other half: the second writer must update the first one's spans.
    assert in_part("new.txt", (0, 2)) != in_part("old.txt", (0, 2))
    assert 0 < sum(in_part(d, (0, 2)) for d in docs) < len(docs)
    one, two = str(tmp_path / "one.db"), str(tmp_path / "two.db")
    single = kb_build(one, corpus)
    assert single.wait(120) == 0, single.stderr.read()  # type: ignore[union-attr]
    # Both workers start at once; milvus-lite lets one process at a time open the file, so they take turns.
    workers = [kb_build(two, corpus, "--part", f"{i}/2") for i in (1, 2)]
    outs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs
    indexed = sum(int(out.split("indexed ")[1].split(" ")[0]) for out, _ in outs)
    assert indexed == len(docs)
    a, b = MilvusSearcher(target(one)), MilvusSearcher(target(two))
    try:
        assert a.n == b.n and results(a) == results(b)
        assert {h.chunk.doc_id for h in b.search("公司注册资本", 20, validity=["已废止"])} >= {"old.txt"}
    finally:
        a.close()
        b.close()


def test_incremental_build_rewrites_only_what_changed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    new_law = (corpus / "new.txt").read_text(encoding="utf-8")
    (corpus / "new.txt").unlink()
    uri = str(tmp_path / "kb.db")
    embedders = {"dense": HashingEmbedder()}
    first = build_index("milvus", corpus, embedders, uri=uri, cache_dir=None)
    again = build_index("milvus", corpus, embedders, uri=uri, cache_dir=None)
    assert again.indexed == [] and again.embedded == 0 and again.generation == first.generation
    # A new text repeals old.txt; a passage is edited; a document is deleted.
    (corpus / "new.txt").write_text(new_law, encoding="utf-8")
    (corpus / "local.txt").write_text(
        (corpus / "local.txt").read_text(encoding="utf-8") + "第四条 地方新增条款。\n", encoding="utf-8"
    )
    (corpus / "note.md").unlink()
    serving = MilvusSearcher(target(uri))  # an app keeps serving while a build runs in its process
    assert not serving.refresh()
    third = build_index("milvus", corpus, embedders, uri=uri, cache_dir=None)
    assert sorted(third.indexed) == ["local.txt", "new.txt"] and third.removed == ["note.md"]
    assert serving.refresh() and "new.txt" in {d["doc_id"] for d in serving.documents()}
    serving.close()
    assert third.embedded == 4 + 1  # new.txt's four articles and local.txt's new one; its others are reused
    with MilvusSearcher(target(uri)) as updated:
        assert "old.txt" not in {h.chunk.doc_id for h in updated.search("公司注册资本", 20, mode="keyword")}
        assert updated.search("地方新增条款", 1)[0].chunk.article == "第四条"
        assert "note.md" not in {d["doc_id"] for d in updated.documents()}
        doc, chunks = updated.source("local.txt")
        assert all(doc.text[c.char_start : c.char_end] == c.text for c in chunks) and len(chunks) == 4
        fresh = build_and_open("milvus", corpus, tmp_path / "fresh")
        try:  # the updated collection answers exactly as one built from scratch
            assert results(updated) == results(fresh)  # type: ignore[arg-type]
        finally:
            fresh.close()  # type: ignore[attr-defined]


def test_milvus_hybrid_search_fusion_is_plain_rrf(tmp_path: Path, corpus: Path) -> None:
    uri = str(tmp_path / "kb.db")
    build_index("milvus", corpus, {"dense": HashingEmbedder()}, uri=uri, cache_dir=None)
    plain = MilvusSearcher(target(uri), weights={"bm25": 1.0, "dense": 1.0, "dense_x": 1.0})
    milvus = MilvusSearcher(target(uri), fusion="milvus")
    try:
        for q in ("网购商品七日内无理由退货", "live-stream talent training", "Sponsored listings"):
            ours, theirs = plain.search(q, 10, rerank=False), milvus.search(q, 10, rerank=False)
            assert [h.chunk.chunk_id for h in ours] == [h.chunk.chunk_id for h in theirs]
            assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], rel=1e-5)
            assert all(h.channels == () for h in theirs)  # Milvus does not say which channel found a hit
    finally:
        plain.close()
        milvus.close()


def test_milvus_lite_file_is_one_process_at_a_time(tmp_path: Path, corpus: Path) -> None:
    searcher = build_and_open("milvus", corpus, tmp_path)
    try:
        other = subprocess.run(
            [sys.executable, "-m", "kb", "search", "x", "--backend", "milvus", "--uri", str(tmp_path / "kb.db")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert other.returncode == 1
        assert other.stderr.strip().splitlines()[-1].startswith("error: cannot open")
        assert "milvus-lite allows one process per file" in other.stderr
    finally:
        searcher.close()  # type: ignore[attr-defined]


def test_errors_say_what_to_do(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KbError, match="a milvus-lite path must end in .db"):
        target(str(tmp_path / "kb"))
    with pytest.raises(KbError, match="needs --uri"):
        open_searcher("milvus")
    with pytest.raises(QueryError, match="unknown fusion"):
        MilvusSearcher(target(str(tmp_path / "x.db")), fusion="magic")
    assert main(["build", "--corpus", str(corpus), "--part", "1/2", "--index", str(tmp_path / "i")]) == 1
    assert "use it with --backend milvus" in capsys.readouterr().err
    assert main(["build", "--backend", "milvus", "--uri", str(tmp_path / "p.db"), "--part", "3/2"]) == 1
    assert "--part 3/2: give I/N" in capsys.readouterr().err
    assert main(["search", "x", "--uri", str(tmp_path / "p.db")]) == 1
    assert "apply to --backend milvus" in capsys.readouterr().err


def test_app_serves_a_milvus_collection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, corpus: Path) -> None:
    from test_app import run_app, shown

    uri = str(tmp_path / "kb.db")
    build_index("milvus", corpus, {"dense": HashingEmbedder()}, uri=uri, cache_dir=None)
    monkeypatch.setenv("KB_BACKEND", "milvus")
    monkeypatch.setenv("KB_MILVUS_URI", uri)
    at = run_app(monkeypatch, tmp_path / "no-index-folder", "七日内无理由退货")
    assert not at.exception
    assert "《示范电子商务法》第四条" in shown(at)
    at = run_app(monkeypatch, tmp_path / "no-index-folder")
    at.radio(key="page_choice").set_value("docs").run()
    assert not at.exception and "示范电子商务法" in set(at.dataframe[0].value["Title"])
    at.selectbox(key="docs_choice").set_value("zh/ecommerce_law.md").run()
    at.button(key="docs_open_btn").click().run()  # the source view reads the text back from Milvus
    assert not at.exception and at.header[0].value == "示范电子商务法"
    at.radio(key="page_choice").set_value("quote").run()
    at.text_area(key="quote").input("消费者有权自收到商品之日起七日内退货").run()
    # The interface follows the quote's language. (While the models still warm up, their banner comes first.)
    assert not at.exception and any("不可用" in info.value for info in at.info)


def test_cross_lingual_channel_is_a_second_vector_field(tmp_path: Path, corpus: Path) -> None:
    embedders = {"dense": HashingEmbedder(), "xling": HashingEmbedder(128)}
    build_index("milvus", corpus, embedders, uri=str(tmp_path / "kb.db"), cache_dir=None)
    build_index("faiss", corpus, embedders, index=tmp_path / "index", cache_dir=None)
    m = open_searcher("milvus", uri=str(tmp_path / "kb.db"), embedders=embedders)
    f = open_searcher("faiss", index=tmp_path / "index", embedders=embedders)
    try:
        for searcher in (m, f):  # an English question reaches Chinese passages through e5 and USE, as in FAISS
            hits = searcher.search("seven day returns of goods bought online", 30, mode="semantic")
            assert {name for h in hits for name, _ in h.channels if h.chunk.lang == "zh"} == {"dense_x", "xling"}
            assert {name for h in hits for name, _ in h.channels if h.chunk.lang == "en"} == {"dense"}
    finally:
        m.close()  # type: ignore[attr-defined]


def test_build_progress_counts_each_channel_to_its_total(tmp_path: Path, corpus: Path) -> None:
    """The embedding progress names its channel and counts up to the passages embedded (as the FAISS build)."""
    seen: list[tuple[str, int, int]] = []
    build_index(
        "milvus",
        corpus,
        {"dense": HashingEmbedder()},
        uri=str(tmp_path / "p.db"),
        cache_dir=None,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    embed = [s for s in seen if s[0].startswith("embed")]
    assert embed and {stage for stage, _, _ in embed} == {"embed dense"}
    assert all(done <= total for _, done, total in embed) and embed[-1][1] == embed[-1][2] > 0


def test_hostile_corpus_lands_the_same_documents_as_faiss_and_every_search_answers(tmp_path: Path) -> None:
    """Issue 14: names with newlines, quotes and backslashes, huge metadata, many pages, through milvus-lite."""
    from kb.index.build import build
    from kb.search.searcher import Searcher
    from tests.badcorpus import make_bad_corpus

    expect = make_bad_corpus(tmp_path / "corpus", big=False)
    faiss = build(tmp_path / "corpus", tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    where = str(tmp_path / "kb.db")
    done = kb_build(where, tmp_path / "corpus", "--xling", "none")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    assert "Traceback" not in out + err
    milvus = open_searcher("milvus", None, where)
    try:
        landed = {d["doc_id"] for d in milvus.documents()}
        assert landed == {d["doc_id"] for d in Searcher(tmp_path / "index").documents()} == set(faiss.indexed)
        assert landed == {d for d, (outcome, _) in expect.items() if outcome == "landed"}
        for doc_id in sorted(landed):
            detail = expect[doc_id][1]
            hits = milvus.search(detail, 3, docs=[doc_id], mode="keyword")
            assert hits and hits[0].chunk.doc_id == doc_id, doc_id
            assert milvus.search(detail, 3, docs=[doc_id]), doc_id
            doc, chunks = milvus.source(doc_id)
            assert doc.doc_id == doc_id and chunks
        for query in QUERIES:
            for f in FILTERS:
                if "levels" not in f:  # this corpus has no 行政法规
                    milvus.search(query, 10, **f)
        for doc_id in ("x'", "x\\", 'x"', "a\nb", "![x](http://127.0.0.1:8765/a)"):
            with pytest.raises(QueryError, match="no such document"):
                milvus.source(doc_id)
    finally:
        milvus.close()  # type: ignore[attr-defined]


def test_milvus_searches_the_passage_adapted_vectors_the_faiss_backend_makes(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    from dataclasses import replace

    import numpy as np

    from kb import config
    from kb.embed import tower
    from kb.embed.memory import Article
    from kb.embed.memory import build as build_memory
    from kb.embed.models import load_embedder
    from kb.index import vectors
    from kb.milvus.schema import ADAPTED
    from kb.milvus.store import MilvusDB
    from kb.search.searcher import Searcher, similarities

    embedders = {"dense": load_embedder("e5")}
    uri, folder, cache = str(tmp_path / "kb.db"), tmp_path / "index", tmp_path / "cache"
    build_index("faiss", corpus, embedders, index=folder, cache_dir=cache)
    build_index("milvus", corpus, embedders, uri=uri, cache_dir=cache)
    faiss, milvus = Searcher(folder), MilvusSearcher(target(uri))
    try:
        sha = tower.shipped().sha256
        assert milvus.db.require_manifest()["passage_adapter"] == {"field": ADAPTED, "sha256": sha}
        # The stored field holds what the FAISS backend makes at load: Chinese rows adapted, the others as stored.
        rows = {
            str(r["chunk_id"]): r
            for r in milvus.db.client.query(milvus.db.chunks, filter="ordinal >= 0", output_fields=["*"])
        }
        index = faiss.index
        adapted = vectors.all_rows(faiss.passage_vectors(index, "公司注册资本", True))
        stored = vectors.all_rows(index.vectors["dense"])
        for chunk_id, row in rows.items():
            i = int(index.rows_of([chunk_id])[0])
            assert np.allclose(row["dense"], stored[i], atol=2e-3), chunk_id
            assert np.allclose(row[ADAPTED], adapted[i], atol=2e-3), chunk_id
        zh = [c for c, r in rows.items() if r["lang"] == "zh"]
        assert zh and len(zh) < len(rows)
        assert all(not np.allclose(rows[c]["dense"], rows[c][ADAPTED], atol=1e-2) for c in zh)
        # Only a Chinese question through the tower searches them; both backends rank the semantic channels alike.
        assert milvus.dense_field("公司注册资本", True) == ADAPTED
        assert milvus.dense_field("公司注册资本", False) == milvus.dense_field("company capital", True) == "dense"
        for query in ("公司注册资本", "网购商品七日内无理由退货", "Company capital note"):
            for tuned in (True, False):
                ranked = [
                    [h.chunk.chunk_id for h in s.search(query, 8, mode="semantic", tuned=tuned, rerank=False)]
                    for s in (faiss, milvus)
                ]
                assert ranked[0] == ranked[1], (query, tuned)
        # The reranker's sim feature reads the adapted vectors for an English question too (the cross-language
        # scorer orders its Chinese candidates with them), in both backends alike.
        question = "company registered capital"
        hits = faiss.search(question, 10, rerank=False)
        assert {h.chunk.lang for h in hits} == {"zh", "en"}
        vec = faiss.question_vector(question, True)
        expected = similarities(index, vec, hits, faiss.adapted_vectors(index))
        assert not np.allclose(expected, similarities(index, vec, hits), atol=1e-3)  # the Chinese rows differ
        for backend in (faiss, milvus):
            similarity = backend._similarity(question, True)
            assert similarity is not None and np.allclose(similarity(hits), expected, atol=2e-3)
        # The question memory (kb.search.memory) gives both backends the same channel, filters applied.
        question = "网店不发货怎么办"
        law = next(d for d, t in faiss.resolver.titles.items() if "电子商务法" in t)
        article = next(c for c in faiss.source(law)[1] if c.article_no)
        memory = build_memory(
            faiss.question_vector(question, True)[None, :],
            [[Article(faiss.resolver.titles[law], int(article.article_no), None, "".join(article.text.split())[:30])]],
        )
        shipped = tower.shipped()
        monkeypatch.setattr(tower, "shipped", lambda: replace(shipped, memory=memory))
        for backend in (faiss, milvus):
            assert backend.rankings(question, 100)["memory"] == [article.chunk_id]
            others = [d for d in backend.docs if d != law]
            assert "memory" not in backend.rankings(question, 100, docs=others)
            assert "memory" not in backend.rankings(question, 100, tuned=False)
        monkeypatch.undo()
    finally:
        milvus.close()
    # The same tower file: the next build keeps every row. Another one (a retrained adapter): the build rewrites
    # the field with it and records its hash, so no search reads vectors made with another adapter.
    with MilvusDB(target(uri)) as db:
        generation = db.generation()
    build_index("milvus", corpus, embedders, uri=uri, cache_dir=cache)
    with MilvusDB(target(uri)) as db:
        assert db.require_manifest()["passage_adapter"]["sha256"] == sha
        assert db.generation() == generation
    # Another reranker file alone: the rows stay, the manifest records the new hash (searchers check it).
    reranker = tmp_path / "reranker.json"
    reranker.write_text(config.RERANK_WEIGHTS.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    monkeypatch.setattr(config, "RERANK_WEIGHTS", reranker)
    build_index("milvus", corpus, embedders, uri=uri, cache_dir=cache)
    with MilvusDB(target(uri)) as db:
        assert db.generation() == generation
        assert db.require_manifest()["reranker"]["sha256"] == hashlib.sha256(reranker.read_bytes()).hexdigest()
    shipped = tower.shipped()
    other = replace(
        shipped,
        sha256="0" * 64,
        passage={**shipped.passage, "passage.b.bias": shipped.passage["passage.b.bias"] + 0.05},
    )
    monkeypatch.setattr(tower, "shipped", lambda path=tower.WEIGHTS: other)
    build_index("milvus", corpus, embedders, uri=uri, cache_dir=cache)
    with MilvusDB(target(uri)) as db:
        assert db.require_manifest()["passage_adapter"]["sha256"] == "0" * 64
        after = {
            str(r["chunk_id"]): r[ADAPTED]
            for r in db.client.query(db.chunks, filter="ordinal >= 0", output_fields=["chunk_id", ADAPTED])
        }
    assert after.keys() == rows.keys()
    expect = tower.adapt_chinese_rows(
        np.array([rows[c]["dense"] for c in zh], np.float32), np.ones(len(zh), bool), other.passage
    )
    assert np.allclose([after[c] for c in zh], expect, atol=1e-5)
