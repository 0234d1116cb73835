"""jieba's word-frequency table memory-mapped, so a search process segments its question without loading it all.

`jieba.initialize()` unmarshals a half-million-entry dict (one to two seconds of a cold search on a busy machine)
to segment a ten-character question that looks up a few dozen strings. `mapped_freq` writes the same table once
under the cache folder as two sorted arrays and serves lookups by binary search; segmentation is identical (a test
compares it with jieba's own). A build, which segments every passage, loads jieba's dict as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from kb import config
from kb.text.mapped import SortedMap, sorted_arrays

log = logging.getLogger(__name__)


def _folder(dict_path: Path, cache_dir: Path) -> Path:
    st = dict_path.stat()
    ident = hashlib.sha256(f"{dict_path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir / "models" / f"jieba-{ident}"


def mapped_freq(tokenizer: object, cache_dir: Path | None = None) -> tuple[SortedMap, int] | None:
    """(table, total) for jieba's default dictionary, written on first use; None when it cannot be made."""
    dict_path = Path(tokenizer.get_dict_file().name)  # type: ignore[attr-defined]
    folder = _folder(dict_path, cache_dir or config.CACHE_DIR)
    try:
        if not (folder / "total.txt").exists():
            _write(tokenizer, folder)
        keys = np.load(folder / "keys.npy", mmap_mode="r")
        freqs = np.load(folder / "freqs.npy", mmap_mode="r")
        total = int((folder / "total.txt").read_text())
    except (OSError, ValueError) as exc:
        log.info("mapped jieba dictionary unavailable (%s); loading jieba's own", exc)
        return None
    return SortedMap(keys.view(np.ndarray), freqs.view(np.ndarray)), total


def _write(tokenizer: object, folder: Path) -> None:
    with open(tokenizer.get_dict_file().name, "rb") as fh:  # type: ignore[attr-defined]
        freq, total = tokenizer.gen_pfdict(fh)  # type: ignore[attr-defined]
    keys, freqs = sorted_arrays(freq)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".jieba-", dir=folder.parent))
    np.save(tmp / "keys.npy", keys)
    np.save(tmp / "freqs.npy", freqs)
    (tmp / "total.txt").write_text(str(total))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process published it first
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
