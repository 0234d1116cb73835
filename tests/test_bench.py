"""`python scripts/bench.py` runs every phase end to end (hashing embedder, tiny corpus); the figures live in BENCHMARKS."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_corpus

_spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
bench_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_script)  # type: ignore[union-attr]


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_bench_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_CACHE_DIR", str(tmp_path / "cache"))  # the phases run in child processes
    corpus = make_corpus(tmp_path / "corpus")
    before = _digest(corpus)
    out = tmp_path / "bench.json"
    assert (
        bench_script.main(
            [
                "--corpus",
                str(corpus),
                "--index",
                str(tmp_path / "index"),
                "--model",
                "hashing",
                "--queries",
                "3",
                "--skip",
                "encoder",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["ingest"]["documents"] == 6 and result["ingest"]["passages"] == result["build"]["passages"]
    assert result["build"]["compacted"] and result["build"]["peak_rss_mb"] > 0
    assert result["size_mb"]["total"] > 0 and "dense.faiss" in result["size_mb"]
    for mode in ("keyword", "semantic", "hybrid"):
        assert result["serve"][mode]["p99"] >= result["serve"][mode]["p50"] >= 0
    assert result["serve"]["queries"] == 23 and result["serve"]["peak_rss_mb"] > 0
    assert result["ann"]["ivf_nprobe64"]["recall@10"] == 1.0  # one cell on a tiny corpus: nothing missed
    assert result["update"]["indexed"] == 1 and result["update"]["embedded"] >= 1
    assert result["no_change"]["seconds"] >= 0
    assert '"p95"' in capsys.readouterr().out
    assert _digest(corpus) == before  # the update phase edits a linked copy, never the corpus itself
