"""Passage vectors in FAISS: exact float16 inner product while that is fast enough, IVF beyond, filters by row mask.

Rows are only ever appended (a changed passage gets a new row and its old row is masked out), so an update
adds a few vectors to the previous index instead of rebuilding it: an IVF index keeps its trained centroids.
"""
from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from kb import config

# A faiss.Index; faiss is untyped, so its SWIG attributes (nlist, nprobe, reconstruct_n) read as Any.
Index = Any

EXACT = "exact"
IVF = "ivf"


def _faiss() -> Any:
    """The faiss module, imported on first use (it loads OpenMP and BLAS); untyped: its stubs lack IVF fields."""
    import faiss

    return faiss


def kind_for(rows: int, ann_min_rows: int | None = None) -> str:
    """Exact search below the size where it stops being fast enough, IVF from there (see docs/BENCHMARKS.md)."""
    return IVF if rows >= (config.ANN_MIN_ROWS if ann_min_rows is None else ann_min_rows) else EXACT


def n_lists(rows: int) -> int:
    """IVF cells: about 4·sqrt(rows), the usual rule, at most rows / 39 so k-means has enough points per cell."""
    return max(1, min(int(4 * math.sqrt(rows)), rows // 39))


def create(matrix: np.ndarray, kind: str) -> Index:
    """An index over the rows of matrix (float32, L2-normalised), stored as float16."""
    faiss = _faiss()

    d = matrix.shape[1]
    if kind == EXACT:
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, n_lists(len(matrix)), faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        index.by_residual = False  # float16 keeps each vector as is: same scores as exact search, less work
        # k-means on a fixed sample: 64 points per cell is plenty, and the same input gives the same cells.
        sample = np.random.default_rng(0).permutation(len(matrix))[:64 * index.nlist]
        index.cp.seed = 0
        index.train(np.ascontiguousarray(matrix[np.sort(sample)]))
        index.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct(row) for updates and checks
        index.nprobe = config.IVF_NPROBE
    if kind == EXACT:
        index.train(matrix[:1])  # fp16 needs no training; FAISS still wants the call
    index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    return index


def kind_of(index: Index) -> str:
    faiss = _faiss()

    return IVF if isinstance(index, faiss.IndexIVF) else EXACT


def describe(index: Index) -> str:
    """For the manifest."""
    if kind_of(index) == IVF:
        return f"IndexIVFScalarQuantizer(nlist={index.nlist}, QT_fp16, inner product)"
    return "IndexScalarQuantizer(QT_fp16, inner product)"


def append(index: Index, matrix: np.ndarray) -> Index:
    """Add rows at the end (IVF assigns them to its trained cells)."""
    if len(matrix):
        index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    return index


def rows_of(index: Index, rows: list[int]) -> np.ndarray:
    """Stored vectors of some rows, as float32."""
    if not rows:
        return np.zeros((0, index.d), np.float32)
    return np.stack([index.reconstruct(int(r)) for r in rows])


def all_rows(index: Index) -> np.ndarray:
    """Every stored vector, as float32 (compaction)."""
    return index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)


def write(index: Index, path: Path) -> None:
    faiss = _faiss()

    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:  # FAISS reports a failed write (disk full) this way
        raise OSError(errno.EIO, f"FAISS could not write the vectors ({str(exc).strip().splitlines()[0][:120]})",
                      str(path)) from exc
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def read(path: Path, mmap: bool = False) -> Index:
    """Load an index (raises RuntimeError when the file is damaged).

    With mmap an exact index's codes stay in the page cache instead of the process heap (serving);
    such an index cannot be added to.
    """
    faiss = _faiss()

    if mmap:
        index = faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY)
        if kind_of(index) == EXACT:
            del index
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        return index
    return faiss.read_index(str(path))


def nearest(index: Index, vec: np.ndarray, mask: np.ndarray, want: int, order: np.ndarray | None = None,
            nprobe: int | None = None) -> list[int]:
    """Rows of the `want` nearest vectors among the rows the mask allows.

    Ties (identical passages have identical vectors) fall to the lower `order` (reading order of the corpus),
    so an incrementally updated index ranks exactly as a fresh build; without `order`, to the lower row.
    """
    faiss = _faiss()

    allowed = int(mask.sum())
    if allowed == 0 or want <= 0:
        return []
    if kind_of(index) == IVF and allowed <= config.IVF_SCAN_BELOW:
        # A narrow filter (one document, a few laws) would leave the probed cells nearly empty: score the
        # allowed rows directly instead, which is exact and, for so few rows, faster.
        rows = np.flatnonzero(mask)
        scores = index.reconstruct_batch(rows) @ np.asarray(vec, dtype=np.float32)
        top = np.argsort(-scores, kind="stable")[:want]
        scores, rows = scores[top], rows[top]
        sort = np.lexsort((rows if order is None else order[rows], -scores))
        return [int(r) for r in rows[sort]]
    bits = None if allowed == len(mask) else np.packbits(mask, bitorder="little")
    sel = None if bits is None else faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bits))
    if kind_of(index) == IVF:
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe or config.IVF_NPROBE) if sel is not None \
            else faiss.SearchParametersIVF(nprobe=nprobe or config.IVF_NPROBE)
    else:
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
    scores, rows = index.search(np.ascontiguousarray(vec[None, :], dtype=np.float32), min(want, allowed), params=params)
    keep = rows[0] >= 0
    scores, rows = scores[0][keep], rows[0][keep]
    sort = np.lexsort((rows if order is None else order[rows], -scores))
    return [int(r) for r in rows[sort]]
