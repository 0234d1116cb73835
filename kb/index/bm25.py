"""BM25 per store segment: postings and passage lengths are written once with the segment, scored at query time.

Each segment keeps, for every term, the rows that contain it and how often (`chunks-N.terms/`), plus each
row's length. A query combines the postings of its terms over all segments and computes bm25s's "lucene"
scores with statistics (live passages, average length, document frequencies) over the live rows only. So
the scores equal those of a fresh build, and an update writes its own small segment instead of rescoring
every passage (which took 2-4 s on 153,000 passages); a query reads only its terms' postings (memory-mapped).
"""
from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# An empty token list would leave a row without length; a placeholder term keeps it at 1, as bm25s did.
EMPTY = "\u2400"
_ARRAYS = ("indptr", "rows", "tf", "lengths")


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

    def write(self, path: Path, first_row: int) -> None:
        """Postings by term (rows numbered from first_row) and row lengths, one memory-mappable file each."""
        row_of = np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(self.offsets)) + first_row
        order = np.argsort(self.terms, kind="stable")  # rows stay ascending within a term
        indptr = np.zeros(len(self.vocab) + 1, np.int64)
        np.cumsum(np.bincount(self.terms, minlength=len(self.vocab)), out=indptr[1:])
        lengths = np.bincount(row_of - first_row, weights=self.counts, minlength=self.rows)
        arrays: dict[str, np.ndarray] = {"indptr": indptr, "rows": row_of[order].astype(np.int32), "tf": self.counts[order],
                  "lengths": lengths.astype(np.float32)}
        path.mkdir(parents=True, exist_ok=True)
        (path / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
        for name, values in arrays.items():
            with open(path / f"{name}.npy", "wb") as fh:
                np.save(fh, values)
                fh.flush()
                os.fsync(fh.fileno())

    @classmethod
    def read(cls, path: Path, first_row: int) -> TermCounts:
        """Back to rows (compaction): the inverse of write."""
        vocab = tuple(json.loads((path / "vocab.json").read_text(encoding="utf-8")))
        indptr, rows, tf, lengths = (np.load(path / f"{name}.npy") for name in _ARRAYS)
        terms = np.repeat(np.arange(len(vocab), dtype=np.int32), np.diff(indptr))
        order = np.argsort(rows, kind="stable")
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(np.bincount(rows - first_row, minlength=len(lengths)), out=offsets[1:])
        return cls(vocab, terms[order], tf[order].astype(np.int32), offsets)


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


class _Postings:
    """One segment's postings, memory-mapped."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(json.loads((path / "vocab.json").read_text(encoding="utf-8")))}
        self.indptr, self.rows, self.tf, self.lengths = (np.load(path / f"{n}.npy", mmap_mode="r") for n in _ARRAYS)
        if len(self.lengths) != end - start or len(self.indptr) != len(self.vocab) + 1 \
                or len(self.rows) != len(self.tf) or int(self.indptr[-1]) != len(self.rows):
            raise ValueError(f"{path.name} disagrees with its segment's {end - start} rows")

    def get(self, token: str) -> tuple[np.ndarray, np.ndarray] | None:
        i = self.vocab.get(token)
        if i is None:
            return None
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.rows[a:b], self.tf[a:b]

    def count(self, token: str) -> int:
        """Rows of this segment holding the token (deleted ones included)."""
        i = self.vocab.get(token)
        return 0 if i is None else int(self.indptr[i + 1]) - int(self.indptr[i])


class Bm25:
    """BM25 over the live rows of a generation's segments."""

    def __init__(self, parts: list[tuple[Path, int, int]], live: np.ndarray, k1: float, b: float) -> None:
        """Args: parts: (postings folder, first row, end row) per segment. Raises OSError or ValueError when damaged."""
        self.parts = [_Postings(path, start, end) for path, start, end in parts]
        self.n_rows = len(live)
        self.live = live
        lengths = np.concatenate([p.lengths for p in self.parts]) if self.parts else np.zeros(0, np.float32)
        if len(lengths) != self.n_rows:
            raise ValueError(f"postings cover {len(lengths)} rows, the store {self.n_rows}")
        self.n_live = int(live.sum())
        avg = float(lengths[live].mean()) if self.n_live else 1.0
        # bm25s computes this part in float64 and the rest in float32; so does this.
        self.norm = (k1 * ((1 - b) + b * lengths.astype(np.float64) / avg)).astype(np.float32)

    def df(self, token: str) -> int:
        """Passages holding the token, over every segment (a deleted passage still counts until compaction)."""
        return sum(p.count(token) for p in self.parts)

    def scores(self, tokens: list[str]) -> np.ndarray | None:
        """Each row's BM25 score for the tokens (repeats count again), or None when no token occurs in a live row."""
        rows_all, scores_all = [], []
        for token in tokens:
            hits = [h for h in (p.get(token) for p in self.parts) if h is not None]
            if not hits:
                continue
            rows = np.concatenate([h[0] for h in hits])
            tf = np.concatenate([h[1] for h in hits]).astype(np.float32)
            keep = self.live[rows]
            rows, tf = rows[keep], tf[keep]
            if not len(rows):
                continue
            df = np.float32(len(rows))
            idf = np.log(np.float32(1) + (np.float32(self.n_live) - df + np.float32(0.5)) / (df + np.float32(0.5)))
            rows_all.append(rows)
            scores_all.append(idf * tf / (self.norm[rows] + tf))
        if not rows_all:
            return None
        return np.bincount(np.concatenate(rows_all), weights=np.concatenate(scores_all), minlength=self.n_rows)
