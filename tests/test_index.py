"""Index folder: manifest, incremental builds, atomic publication, integrity and model checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kb.embed.models import HashingEmbedder
from kb.errors import IndexCorruptError, IndexMissingError, ModelMismatchError
from kb.index.build import build
from kb.index.generations import current_generation, read_manifest
from kb.index.loader import load_index
from kb.search.searcher import Searcher
from tests.conftest import make_corpus


class CountingEmbedder(HashingEmbedder):
    """Hashing embedder that counts the passages it was asked to embed."""

    def __init__(self) -> None:
        super().__init__(64)
        self.calls = 0

    def passage(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return super().passage(texts)


class FailingEmbedder(HashingEmbedder):
    def passage(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("model crashed mid-build")


def test_manifest_describes_the_index(index: Path, corpus: Path) -> None:
    manifest = read_manifest(current_generation(index))
    dense = manifest["channels"]["dense"]
    assert (dense["model"], dense["dim"], dense["file"]) == ("hashing-256", 256, "dense.faiss")
    assert manifest["chunking"]["zh_max_chars"] > 0 and manifest["kb_version"]
    assert set(manifest["files"]) == {
        "en/notes.txt",
        "en/rural_commerce.md",
        "guide.docx",
        "report.pdf",
        "zh/ecommerce_law.md",
        "zh/policy_opinion.txt",
    }
    assert len(manifest["files"]["report.pdf"]) == 64
    loaded = load_index(index)
    assert loaded.n == manifest["counts"]["chunks"] == loaded.vectors["dense"].ntotal
    rows = loaded.store.chunks([0, loaded.n - 1])
    assert rows[0].chunk_id.endswith("#0")


def test_incremental_build_reembeds_only_changes(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "index"
    emb = CountingEmbedder()
    first = build(corpus, out, {"dense": emb}, cache_dir=None)
    assert emb.calls == first.chunks and not first.reused
    emb.calls = 0
    notes = corpus / "en" / "notes.txt"
    notes.write_text(
        notes.read_text(encoding="utf-8") + "\n# Deposits\n\nDeposits are refunded within 30 days.\n", encoding="utf-8"
    )
    (corpus / "guide.docx").unlink()
    (corpus / "zh" / "new.txt").write_text("新增文件\n\n第一条 甲。\n第二条 乙。\n第三条 丙。\n", encoding="utf-8")
    second = build(corpus, out, {"dense": emb}, cache_dir=None)
    assert sorted(second.indexed) == ["en/notes.txt", "zh/new.txt"]
    assert second.removed == ["guide.docx"]
    assert "zh/ecommerce_law.md" in second.reused
    assert 0 < emb.calls <= 8  # only the changed file's new passages and the new file's
    third = build(corpus, out, {"dense": emb}, cache_dir=None)
    assert third.indexed == [] and third.embedded == 0
    hits = Searcher(out, embedders={"dense": emb}).search("Deposits refunded", 3)
    assert hits[0].chunk.doc_id == "en/notes.txt"


def test_embedding_cache_survives_a_deleted_index(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    emb = CountingEmbedder()
    build(corpus, tmp_path / "a", {"dense": emb}, cache_dir=tmp_path / "cache")
    emb.calls = 0
    build(corpus, tmp_path / "b", {"dense": emb}, cache_dir=tmp_path / "cache")
    assert emb.calls == 0


def test_failed_build_keeps_previous_index(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "index"
    build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    before = current_generation(out)
    (corpus / "en" / "extra.txt").write_text("Extra heading words\n\nA new passage about tariffs.", encoding="utf-8")
    with pytest.raises(RuntimeError, match="model crashed"):
        build(corpus, out, {"dense": FailingEmbedder()}, cache_dir=None)
    assert current_generation(out) == before
    assert not list(out.glob("*.tmp*"))
    assert Searcher(out).search("直播营销人员", 1)[0].chunk.article == "第六条"


def test_missing_index_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match=r"run `python -m kb build --index"):
        Searcher(tmp_path / "none")


def test_model_mismatch_is_an_error(index: Path) -> None:
    with pytest.raises(ModelMismatchError, match="was built with model 'hashing-256'"):
        Searcher(index, model="e5")
    with pytest.raises(ModelMismatchError, match="rebuild"):
        Searcher(index, embedders={"dense": HashingEmbedder(128)})


@pytest.mark.parametrize("damage", ["truncate_vectors", "drop_bm25", "garble_manifest", "dangling_current"])
def test_damaged_index_is_detected(index: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    gen = current_generation(copy)
    if damage == "truncate_vectors":
        data = (gen / "dense.faiss").read_bytes()
        (gen / "dense.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "drop_bm25":
        shutil.rmtree(next(gen.glob("chunks-*.terms")))
    elif damage == "garble_manifest":
        (gen / "manifest.json").write_text("{", encoding="utf-8")
    else:
        (copy / "CURRENT").write_text("g999999\n", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="rebuild"):
        Searcher(copy)


def test_manifest_chunk_count_mismatch_is_detected(index: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    gen = current_generation(copy)
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    manifest["counts"]["chunks"] += 1
    (gen / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="the manifest says"):
        load_index(copy)
