"""A read-only str -> int table over two sorted arrays (memory-mapped), looked up by binary search.

Vocabularies of half a million strings cost a cold process a second or more to build or unmarshal as a dict,
while a search looks up a few hundred of them. Sorted arrays are mapped in no time and answer each lookup in
microseconds. Used for jieba's dictionary (kb.text.jiebadict) and the models' tokenizers (kb.embed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


def sorted_arrays(table: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of `table` sorted by code point, the order numpy compares unicode arrays in."""
    keys = np.array(sorted(table)) if table else np.zeros(0, dtype="<U1")
    return keys, np.array([table[k] for k in keys.tolist()], dtype=np.int64)


# Lookups a table remembers. jieba asks for every substring of a sentence up to the longest word, and the same
# substrings come back from passage to passage: the reranker tokenising a question's 100 candidates made 60,000
# binary searches (numpy calls of ~5 us each) for ~0.3 s a question. A dict answers a repeated one in ~0.1 us; at
# the bound it starts afresh (about 30 MB a table when full).
MEMO = 200_000


class SortedMap(Mapping[str, int]):
    """str -> int lookups over `keys` (sorted unicode array) and `values` (same length)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        self._keys, self._values = keys, values
        self._width = int(keys.dtype.itemsize // 4)
        self._memo: dict[str, int] = {}

    def find(self, key: str) -> int:
        """Row of `key`, or -1."""
        row = self._memo.get(key)
        if row is not None:
            return row
        row = self._search(key)
        if len(self._memo) >= MEMO:
            self._memo = {}  # a new dict, so a thread reading the old one meanwhile is not disturbed
        self._memo[key] = row
        return row

    def _search(self, key: str) -> int:
        if not key or len(key) > self._width:
            return -1
        i = int(np.searchsorted(self._keys, key))
        return i if i < len(self._keys) and self._keys[i] == key else -1

    def __getitem__(self, key: str) -> int:
        i = self.find(key)
        if i < 0:
            raise KeyError(key)
        return int(self._values[i])

    def get(self, key: str, default=None):  # hot path: no KeyError round trip
        i = self.find(key)
        return default if i < 0 else int(self._values[i])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.find(key) >= 0

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)
