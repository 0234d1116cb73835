"""Questions of concurrent searches share encoder calls (kb.serve.batch) and each gets its own vector back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kb.serve.batch import BatchingEmbedder


class SlowEmbedder:
    """Vector i of a call is [len(text), ord(text[0])]; each call takes 20 ms, so questions queue behind it."""

    name, dim = "slow", 2

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    def query(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        time.sleep(0.02)
        if self.fail_on in texts:
            raise RuntimeError("encoder failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    def passage(self, texts: list[str]) -> np.ndarray:
        return self.query(texts)


def ask_all(embedder: BatchingEmbedder, texts: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    start = threading.Barrier(len(texts))

    def ask(text: str) -> None:
        start.wait()
        try:
            out[text] = embedder.query([text])
        except RuntimeError as exc:
            out[text] = exc

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_concurrent_questions_are_batched_and_each_gets_its_own_vector() -> None:
    inner = SlowEmbedder()
    texts = [chr(ord("a") + i) * (i + 1) for i in range(24)]
    got = ask_all(BatchingEmbedder(inner, max_batch=8), texts)
    for t in texts:
        vec = got[t]
        assert isinstance(vec, np.ndarray) and vec.shape == (1, 2)
        assert vec[0].tolist() == [len(t), ord(t[0])]
    assert sum(inner.batches) == 24 and max(inner.batches) <= 8 and len(inner.batches) < 24


def test_a_lone_question_is_encoded_at_once() -> None:
    inner = SlowEmbedder()
    embedder = BatchingEmbedder(inner)
    assert embedder.query(["abc"])[0].tolist() == [3, ord("a")] and inner.batches == [1]
    assert embedder.query(["x", "yy"]).shape == (2, 2) and inner.batches == [1, 2]  # lists go straight through


def test_an_encoder_error_reaches_only_the_searches_of_that_batch() -> None:
    inner = SlowEmbedder(fail_on="boom")
    embedder = BatchingEmbedder(inner, max_batch=1)
    got = ask_all(embedder, ["boom", "fine", "also fine"])
    assert isinstance(got["boom"], RuntimeError)
    assert isinstance(got["fine"], np.ndarray) and isinstance(got["also fine"], np.ndarray)
    with pytest.raises(RuntimeError, match="encoder failed"):
        embedder.query(["boom"])
