"""Incremental builds share unchanged parts, rank exactly as a fresh build, compact, pick ANN by size, stay atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kb import config
from kb.embed.models import HashingEmbedder
from kb.errors import IndexCorruptError
from kb.index.bm25 import Bm25, TermCounts
from kb.index.build import build
from kb.index.generations import current_generation, read_manifest
from kb.quote.check import QuoteChecker
from kb.search.searcher import Searcher
from kb.text.lexical import bm25s_module, tokenize_many
from tests.conftest import ROOT, make_corpus

QUERIES = [
    "网购商品七日内无理由退货",
    "电子商务经营者",
    "live-stream talent training",
    "rural logistics county",
    "Sponsored listings advertisements",
    "直播营销人员",
]


def _results(index: Path) -> list[list[tuple[str, str, float]]]:
    searcher = Searcher(index, embedders={"dense": HashingEmbedder()})
    out = []
    for q in QUERIES:
        for mode in ("hybrid", "keyword", "semantic"):
            out.append(
                [
                    (h.chunk.chunk_id, h.chunk.text, round(h.score, 6))
                    for h in searcher.search(q, 20, mode=mode, include_repealed=True)
                ]
            )
        # The legal filters read per-row columns, which must cover appended rows and skip replaced ones.
        levels = sorted({str(d["meta"]["level"]) for d in searcher.documents() if d["meta"].get("level")})
        for filters in (
            {"levels": levels[:1]},
            {"lang": "zh"},
            {"as_of": "2020-01-01"},
            {"date_from": "2018"},
            {"docs": ["zh/ecommerce_law.md"]},
        ):
            out.append(
                [
                    (h.chunk.chunk_id, [(r.ref.text, r.target.chunk_id if r.target else None) for r in h.xrefs])
                    for h in searcher.search(q, 20, **filters)
                ]
            )
    out.append([(d["doc_id"], d["chunks"], json.dumps(d["meta"], sort_keys=True)) for d in searcher.documents()])
    out.append(repr(searcher.facets()))
    return out


def _edit(corpus: Path) -> None:
    """Change one file in the middle of the corpus, add one, delete one."""
    law = corpus / "zh" / "ecommerce_law.md"
    law.write_text(law.read_text(encoding="utf-8").replace("七日", "十五日"), encoding="utf-8")
    (corpus / "zh" / "added.txt").write_text(
        "新增文件\n\n第一条 网购商品退货。\n第二条 乙。\n第三条 丙。\n", encoding="utf-8"
    )
    (corpus / "guide.docx").unlink()


def test_bm25_over_segments_and_deleted_rows_matches_bm25s(corpus: Path, tmp_path: Path) -> None:
    from kb.chunk import chunk_document
    from kb.ingest.read import read_document, walk_corpus

    chunks = [c for doc_id, _ in walk_corpus(corpus) for c in chunk_document(read_document(corpus, doc_id))]
    tokens = tokenize_many([c.index_text() for c in chunks]) + [[]]
    half = len(tokens) // 2
    TermCounts.from_tokens(tokens[:half]).write(tmp_path / "a", 0)
    TermCounts.from_tokens(tokens[half:]).write(tmp_path / "b", half)
    live = np.ones(len(tokens), dtype=bool)
    live[[1, 2, half + 3]] = False  # replaced passages: out of the statistics and the results
    ours = Bm25([(tmp_path / "a", 0, half), (tmp_path / "b", half, len(tokens))], live, 1.2, 0.75)
    reference = bm25s_module().BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([t or ["\u2400"] for t, ok in zip(tokens, live) if ok], show_progress=False)
    for query in (["电子商务"], ["退货", "商品", "商品"], ["rural", "logist"]):
        got = ours.scores(query)
        np.testing.assert_allclose(got[live], reference.get_scores(query), rtol=1e-5, atol=1e-6)
        assert not got[~live].any()
    assert ours.scores(["nowhere-to-be-found"]) is None


def test_term_counts_write_and_read_back(tmp_path: Path) -> None:
    counts = TermCounts.from_tokens([["a", "b", "a"], [], ["c", "a"]])
    counts.write(tmp_path / "p", 10)
    back = TermCounts.read(tmp_path / "p", 10)

    def bags(c: TermCounts) -> list[dict[str, int]]:
        return [
            {c.vocab[t]: int(n) for t, n in zip(c.terms[a:b], c.counts[a:b])}
            for a, b in zip(c.offsets[:-1], c.offsets[1:])
        ]

    assert bags(back) == bags(counts) == [{"a": 2, "b": 1}, {"\u2400": 1}, {"c": 1, "a": 1}]
    assert np.load(tmp_path / "p" / "rows.npy").min() == 10


def test_update_shares_unchanged_parts_and_ranks_as_a_fresh_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "COMPACT_DEAD_SHARE", 0.9)  # the tiny corpus changes by more than the default share
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "index"
    build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    first = current_generation(out)
    _edit(corpus)
    report = build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    assert not report.compacted and sorted(report.indexed) == ["zh/added.txt", "zh/ecommerce_law.md"]
    gen = current_generation(out)
    manifest = read_manifest(gen)
    old, appended = manifest["segments"]
    assert (gen / f"{old['name']}.sqlite").stat().st_ino == (first / f"{old['name']}.sqlite").stat().st_ino
    assert appended["rows"][0] == old["rows"][1] and manifest["deleted"]
    assert manifest["counts"]["chunks"] < manifest["counts"]["rows"]
    fresh = tmp_path / "fresh"
    build(corpus, fresh, {"dense": HashingEmbedder()}, cache_dir=None)
    assert _results(out) == _results(fresh)
    searcher = Searcher(out)
    doc, chunks = searcher.source("zh/ecommerce_law.md")
    assert "十五日" in doc.text and all(doc.text[c.char_start : c.char_end] == c.text for c in chunks)
    assert "guide.docx" not in {d["doc_id"] for d in searcher.documents()}
    checker = QuoteChecker(out)
    assert checker.check("消费者有权自收到商品之日起十五日内退货").verdict == "verbatim"
    assert checker.check("消费者有权自收到商品之日起七日内退货").verdict == "altered"
    assert checker.check("网购商品退货").matches[0].doc_id == "zh/added.txt"
    assert "guide.docx" not in checker.parts.quote.rows
    unchanged = build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    assert unchanged.indexed == [] and len(read_manifest(current_generation(out))["segments"]) == 2


def test_compaction_once_deleted_rows_pile_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "index"
    build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    monkeypatch.setattr(config, "COMPACT_DEAD_SHARE", 0.01)
    _edit(corpus)
    report = build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    manifest = read_manifest(current_generation(out))
    assert report.compacted and len(manifest["segments"]) == 1 and manifest["deleted"] == []
    assert manifest["counts"]["chunks"] == manifest["counts"]["rows"]
    fresh = tmp_path / "fresh"
    build(corpus, fresh, {"dense": HashingEmbedder()}, cache_dir=None)
    assert _results(out) == _results(fresh)


def test_approximate_index_chosen_by_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "COMPACT_DEAD_SHARE", 0.9)
    corpus = make_corpus(tmp_path / "corpus")
    small = build(corpus, tmp_path / "exact", {"dense": HashingEmbedder()}, cache_dir=None)
    assert read_manifest(current_generation(tmp_path / "exact"))["channels"]["dense"]["kind"] == "exact"
    build(corpus, tmp_path / "ivf", {"dense": HashingEmbedder()}, cache_dir=None, ann_min_rows=small.chunks)
    dense = read_manifest(current_generation(tmp_path / "ivf"))["channels"]["dense"]
    assert dense["kind"] == "ivf" and dense["faiss"].startswith("IndexIVF")
    # Fewer cells than nprobe: every cell is searched, so the approximate index answers as the exact one.
    assert _results(tmp_path / "ivf") == _results(tmp_path / "exact")
    _edit(corpus)
    report = build(corpus, tmp_path / "ivf", {"dense": HashingEmbedder()}, cache_dir=None, ann_min_rows=small.chunks)
    assert not report.compacted
    assert read_manifest(current_generation(tmp_path / "ivf"))["channels"]["dense"]["kind"] == "ivf"
    assert Searcher(tmp_path / "ivf").search("网购商品退货", 3)[0].chunk.doc_id.startswith("zh/")


def test_killed_build_leaves_the_previous_index_in_service(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "index"
    build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    before = current_generation(out)
    _edit(corpus)
    # A build whose embedder hangs, killed with SIGKILL once its new generation folder exists.
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\nfrom kb.embed.models import HashingEmbedder\nfrom kb.index.build import build\n"
        "class Slow(HashingEmbedder):\n    def passage(self, texts):\n        time.sleep(60)\n"
        "build(Path(sys.argv[2]), Path(sys.argv[3]), {'dense': Slow()}, cache_dir=None)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(corpus), str(out)])
    try:
        deadline = time.time() + 60
        while not list(out.glob("*.tmp*")) and time.time() < deadline:
            time.sleep(0.05)
        assert list(out.glob("*.tmp*")), "the build never started its generation"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert current_generation(out) == before
    assert Searcher(out).search("直播营销人员", 1)[0].chunk.article == "第六条"
    report = build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    assert "zh/ecommerce_law.md" in report.indexed and not list(out.glob("*.tmp*"))


def test_old_index_format_says_rebuild(index: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "index"
    shutil.copytree(index, old)
    manifest_path = current_generation(old) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format"] = 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(
        IndexCorruptError, match=r"index format 1, this version reads format 2: rebuild with `python -m kb build"
    ):
        Searcher(old)
    build(make_corpus(tmp_path / "corpus"), old, {"dense": HashingEmbedder()}, cache_dir=None)
    assert Searcher(old).search("直播营销人员", 1)[0].chunk.article == "第六条"


def test_narrow_filter_on_an_approximate_index_scores_every_allowed_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kb.index import vectors

    corpus = make_corpus(tmp_path / "corpus")
    build(corpus, tmp_path / "exact", {"dense": HashingEmbedder()}, cache_dir=None)
    monkeypatch.setattr(vectors, "n_lists", lambda rows: 4)
    build(corpus, tmp_path / "ivf", {"dense": HashingEmbedder()}, cache_dir=None, ann_min_rows=1)
    monkeypatch.setattr(config, "IVF_NPROBE", 1)  # one cell of four probed: a filter alone would miss rows
    for doc in ("zh/ecommerce_law.md", "en/notes.txt"):
        ivf = Searcher(tmp_path / "ivf").search("商品 goods", 50, docs=[doc], mode="semantic")
        exact = Searcher(tmp_path / "exact").search("商品 goods", 50, docs=[doc], mode="semantic")
        assert [h.chunk.chunk_id for h in ivf] == [h.chunk.chunk_id for h in exact] and ivf
