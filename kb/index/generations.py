"""The index folder's generations: `CURRENT` names the live one; a build writes a new one and switches atomically."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from kb.errors import IndexCorruptError, IndexMissingError, KbError

# 2: chunk store in segments shared between generations, deleted rows, BM25 from stored term counts.
FORMAT = 2
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
KEEP_GENERATIONS = 2


def current_generation(index_dir: Path) -> Path:
    """The folder of the last complete build.

    Raises:
        IndexMissingError: nothing has been built there yet.
        IndexCorruptError: CURRENT names a folder that is gone.
    """
    pointer = index_dir / CURRENT
    if not pointer.is_file():
        raise IndexMissingError(f"no index at {index_dir}: run `python -m kb build --index {index_dir}`")
    name = pointer.read_text(encoding="utf-8").strip()
    gen = index_dir / name
    if not name or "/" in name or not (gen / MANIFEST).is_file():
        raise IndexCorruptError(f"{pointer} names '{name}', which has no {MANIFEST}: "
                                f"run `python -m kb build --index {index_dir}` to rebuild")
    return gen


def published(index_dir: Path, loaded: str) -> bool:
    """Whether a build has published another generation than `loaded` (a reader then reloads)."""
    try:
        name = (index_dir / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return name != loaded


def read_manifest(gen: Path) -> dict[str, object]:
    """Parse a generation's manifest.

    Raises:
        IndexCorruptError: unreadable JSON or another format than this version's.
    """
    try:
        manifest = json.loads((gen / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen / MANIFEST} is unreadable ({exc}): rebuild with `python -m kb build`") from exc
    if manifest.get("format") != FORMAT:
        raise IndexCorruptError(
            f"{gen} has index format {manifest.get('format')}, this version reads format {FORMAT}: rebuild with "
            f"`python -m kb build --index {gen.parent}` (the embedding cache makes that quick)")
    return manifest


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder (searches never take it)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise KbError(f"another build is running on {index_dir}; wait for it to finish") from exc
        yield


def next_generation(index_dir: Path) -> str:
    numbers = [int(p.name[1:7]) for p in index_dir.glob("g[0-9][0-9][0-9][0-9][0-9][0-9]*") if p.name[1:7].isdigit()]
    return f"g{max(numbers, default=0) + 1:06d}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(index_dir: Path, tmp: Path, name: str) -> None:
    """Move a complete generation into place and point CURRENT at it; a crash before the last rename changes nothing."""
    fsync_dir(tmp)
    os.replace(tmp, index_dir / name)
    pointer_tmp = index_dir / f"{CURRENT}.tmp{os.getpid()}"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    with open(pointer_tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(pointer_tmp, index_dir / CURRENT)
    fsync_dir(index_dir)


def prune(index_dir: Path, keep: str) -> None:
    """Delete old generations and leftovers of killed builds, keeping the newest few for readers still on them.

    Segment files shared with newer generations are hard links, so deleting an old folder frees only what no
    newer generation uses.
    """
    gens = sorted(p for p in index_dir.glob("g[0-9]*") if p.is_dir() and ".tmp" not in p.name)
    for old in gens[:-KEEP_GENERATIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in index_dir.glob("*.tmp*"):
        pid = leftover.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
