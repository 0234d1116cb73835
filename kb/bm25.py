"""BM25 over per-row term counts: rebuilt from stored counts in about a second, scored with one bincount.

The files are bm25s's own layout (`bm25s.BM25.load` opens them) and the scores are bm25s's "lucene" variant,
but both directions are vectorised: bm25s builds with a Python loop over documents (about half a minute for
150,000 passages) and scores with `np.add.at` (several milliseconds per common term).
"""
from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# An empty token list would make bm25s drop the row; a placeholder keeps every row and its length 1, as before.
EMPTY = "\u2400"
_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")


@dataclass(frozen=True)
class TermCounts:
    """Bags of words of consecutive rows: row i holds vocab[terms[j]] counts[j] times, offsets[i] <= j < offsets[i+1]."""

    vocab: tuple[str, ...]
    terms: np.ndarray  # int32
    counts: np.ndarray  # int32
    offsets: np.ndarray  # int64, rows + 1

    @property
    def rows(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_tokens(cls, token_lists: list[list[str]]) -> TermCounts:
        """Count each row's tokens."""
        builder = CountsBuilder()
        builder.add(token_lists)
        return builder.build()

    @classmethod
    def empty(cls, rows: int) -> TermCounts:
        """Rows without any terms (holes left by deleted passages)."""
        return cls((), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(rows + 1, np.int64))

    @classmethod
    def concat(cls, parts: list[TermCounts]) -> TermCounts:
        """Rows of several parts one after another, over one vocabulary."""
        vocab: dict[str, int] = {}
        terms, counts, offsets, base = [], [], [np.zeros(1, np.int64)], 0
        for part in parts:
            remap = np.asarray([vocab.setdefault(t, len(vocab)) for t in part.vocab], np.int32)
            terms.append(remap[part.terms] if len(part.terms) else part.terms)
            counts.append(part.counts)
            offsets.append(part.offsets[1:] + base)
            base += int(part.offsets[-1])
        return cls(tuple(vocab), np.concatenate(terms or [np.zeros(0, np.int32)]).astype(np.int32),
                   np.concatenate(counts or [np.zeros(0, np.int32)]).astype(np.int32), np.concatenate(offsets))

    def take(self, rows: np.ndarray) -> TermCounts:
        """The given rows, in that order (compaction)."""
        rows = np.asarray(rows, np.int64)
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        starts = np.repeat(self.offsets[rows] - (np.cumsum(lengths) - lengths), lengths)
        pick = starts + np.arange(int(lengths.sum()))
        return TermCounts(self.vocab, self.terms[pick], self.counts[pick],
                          np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def save(self, path: Path) -> None:
        vocab = np.frombuffer("\n".join(self.vocab).encode("utf-8"), np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, vocab=vocab, terms=self.terms, counts=self.counts, offsets=self.offsets)
            fh.flush()
            os.fsync(fh.fileno())

    @classmethod
    def load(cls, path: Path) -> TermCounts:
        with np.load(path) as z:
            text = z["vocab"].tobytes().decode("utf-8")
            return cls(tuple(text.split("\n")) if text else (), z["terms"], z["counts"], z["offsets"])


class CountsBuilder:
    """Term counts gathered document by document, so a build never holds every token string at once."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.terms = array("i")
        self.counts = array("i")
        self.offsets = array("q", [0])

    def add(self, token_lists: list[list[str]]) -> None:
        """Append one row per token list."""
        for tokens in token_lists:
            for token, n in Counter(tokens or [EMPTY]).items():
                self.terms.append(self.ids.setdefault(token, len(self.ids)))
                self.counts.append(n)
            self.offsets.append(len(self.terms))

    def build(self) -> TermCounts:
        return TermCounts(tuple(self.ids), np.frombuffer(self.terms, np.int32).copy(),
                          np.frombuffer(self.counts, np.int32).copy(), np.frombuffer(self.offsets, np.int64).copy())


def write_bm25(path: Path, counts: TermCounts, live: np.ndarray, k1: float, b: float) -> None:
    """Score matrix (term x row, CSC) of the live rows; dead rows get no entries, so they never match.

    Statistics (document count, average length, document frequencies) come from the live rows only,
    so the scores equal those of a fresh build of the same passages.
    """
    n_rows = counts.rows
    lengths = np.diff(counts.offsets)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    keep = live[rows]
    rows, terms, tf = rows[keep], counts.terms[keep].astype(np.int64), counts.counts[keep].astype(np.float32)
    n_vocab = len(counts.vocab)
    df = np.bincount(terms, minlength=n_vocab).astype(np.float32)
    doc_len = np.bincount(rows, weights=tf, minlength=n_rows).astype(np.float32)
    n_live = int(live.sum())
    avg_len = np.float32(doc_len[live].mean()) if n_live else np.float32(1.0)
    idf = np.log(np.float32(1) + (np.float32(n_live) - df + np.float32(0.5)) / (df + np.float32(0.5)))
    tfc = tf / (np.float32(k1) * (np.float32(1 - b) + np.float32(b) * doc_len[rows] / avg_len) + tf)
    scores = (idf[terms] * tfc).astype(np.float32)
    order = np.argsort(terms * max(n_rows, 1) + rows, kind="stable")
    indptr = np.zeros(n_vocab + 1, np.int64)
    np.cumsum(np.bincount(terms, minlength=n_vocab), out=indptr[1:])
    path.mkdir(parents=True, exist_ok=True)
    for name, array in zip(_FILES, (scores[order], rows[order].astype(np.int32), indptr)):
        with open(path / name, "wb") as fh:
            np.save(fh, array)
            fh.flush()
            os.fsync(fh.fileno())
    (path / "vocab.index.json").write_text(json.dumps({t: i for i, t in enumerate(counts.vocab)}, ensure_ascii=False),
                                           encoding="utf-8")
    params = {"k1": k1, "b": b, "delta": 0.5, "method": "lucene", "idf_method": "lucene", "dtype": "float32",
              "int_dtype": "int32", "num_docs": n_rows, "version": "kb", "backend": "numpy"}
    (path / "params.index.json").write_text(json.dumps(params, indent=1), encoding="utf-8")


class Bm25:
    """A BM25 index opened for search; the score arrays are memory-mapped, not read into memory."""

    def __init__(self, path: Path) -> None:
        """Raises OSError or ValueError when a file is missing or damaged."""
        params = json.loads((path / "params.index.json").read_text(encoding="utf-8"))
        self.n_rows = int(params["num_docs"])
        self.vocab: dict[str, int] = json.loads((path / "vocab.index.json").read_text(encoding="utf-8"))
        self.data, self.indices, self.indptr = (np.load(path / name, mmap_mode="r") for name in _FILES)
        if len(self.indptr) < len(self.vocab) + 1 or len(self.data) != len(self.indices) \
                or (len(self.indptr) and int(self.indptr[-1]) != len(self.data)):
            raise ValueError("score arrays disagree in length")

    def scores(self, tokens: list[str]) -> np.ndarray | None:
        """Each row's BM25 score for the tokens (repeats count again), or None when no token is indexed."""
        ids = [self.vocab[t] for t in tokens if t in self.vocab]
        if not ids:
            return None
        spans = [(int(self.indptr[i]), int(self.indptr[i + 1])) for i in ids]
        rows = np.concatenate([self.indices[s:e] for s, e in spans])
        weights = np.concatenate([self.data[s:e] for s, e in spans])
        return np.bincount(rows, weights=weights, minlength=self.n_rows)
