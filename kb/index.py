"""Build, save and load the index folder: chunk store + BM25 + vectors + manifest, atomically and incrementally."""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb import config
from kb.chunk import Chunk, read_passages
from kb.embed import Embedder, EmbeddingCache, embed_passages
from kb.errors import IndexCorruptError, IndexMissingError, IngestError, KbError
from kb.ingest import Document, file_sha256, load_sidecars, read_sidecar, walk_corpus
from kb.lexical import TOKENIZER_VERSION, bm25s_module, tokenize_many
from kb.quoteindex import QUOTE_FILE, write_quote_index
from kb.store import Store, write_store

log = logging.getLogger(__name__)

FORMAT = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
KEEP_GENERATIONS = 2


def chunking_settings() -> dict[str, object]:
    """The settings that decide chunk boundaries; a change forces every file to be re-chunked."""
    return {"version": config.CHUNKER_VERSION, "zh_max_chars": config.ZH_MAX_CHARS,
            "en_chunk_chars": config.EN_CHUNK_CHARS, "en_chunk_overlap": config.EN_CHUNK_OVERLAP,
            "tokenizer": TOKENIZER_VERSION}


@dataclass
class BuildReport:
    """What a build did, for the CLI summary."""

    indexed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    generation: str = ""


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


def read_manifest(gen: Path) -> dict[str, object]:
    """Parse a generation's manifest.

    Raises:
        IndexCorruptError: unreadable JSON or an unknown format.
    """
    try:
        manifest = json.loads((gen / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen / MANIFEST} is unreadable ({exc}): rebuild with `python -m kb build`") from exc
    if manifest.get("format") != FORMAT:
        raise IndexCorruptError(f"{gen} has index format {manifest.get('format')}, this version reads {FORMAT}: "
                                "rebuild with `python -m kb build`")
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


def _source_key(path: Path, overrides: dict[str, str]) -> str:
    """File hash plus its metadata overrides and META_VERSION: editing metadata.csv or a .meta.json, or a
    change in what is read from texts, re-reads the file."""
    extra = json.dumps({**overrides, **read_sidecar(path), "meta_version": config.META_VERSION}, sort_keys=True,
                       ensure_ascii=False)
    return file_sha256(path) + ":" + hashlib.sha1(extra.encode()).hexdigest()[:12]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build(corpus: Path, index_dir: Path, embedders: dict[str, Embedder],
          progress: Callable[[str, int, int], None] | None = None,
          cache_dir: Path | None = config.CACHE_DIR) -> BuildReport:
    """Build or update the index for a corpus; the previous index stays usable until the new one is complete.

    Args:
        embedders: channel name ('dense', 'xling') -> embedder; may be empty for a BM25-only index.
        progress: called as (stage, done, total) for progress bars.
    Raises:
        CorpusError: the corpus folder is missing.
        KbError: another build holds the lock.
    """
    t0 = time.time()
    report = BuildReport()
    step = progress or (lambda stage, done, total: None)
    files = list(walk_corpus(corpus))
    with build_lock(index_dir):
        previous, prev_manifest, prev_gen = _previous(index_dir)
        sidecars = load_sidecars(corpus)
        docs: list[tuple[Document, str]] = []
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        hashes: list[str] = []
        for n, (doc_id, path) in enumerate(files):
            step("read", n, len(files))
            try:
                key = _source_key(path, sidecars.get(doc_id, {}))
                if doc_id in previous and previous[doc_id][0] == key:
                    _, doc, doc_chunks, doc_tokens, doc_hashes = previous[doc_id]
                    report.reused.append(doc_id)
                else:
                    doc, doc_chunks = read_passages(corpus, doc_id, sidecars.get(doc_id))
                    doc_tokens = tokenize_many([c.index_text() for c in doc_chunks])
                    doc_hashes = [EmbeddingCache.key(c.index_text()) for c in doc_chunks]
                    report.indexed.append(doc_id)
            except IngestError as exc:
                report.skipped[doc_id] = exc.reason
                log.warning("skipped %s: %s", doc_id, exc.reason)
                continue
            except OSError as exc:  # the source key's hashing failed (a link loop, a vanished file)
                report.skipped[doc_id] = f"unreadable ({exc.strerror or exc})"
                continue
            docs.append((doc, key))
            chunks.extend(doc_chunks)
            tokens.extend(doc_tokens)
            hashes.extend(doc_hashes)
        step("read", len(files), len(files))
        report.removed = sorted(set(previous) - {d.doc_id for d, _ in docs} - set(report.skipped))
        report.chunks = len(chunks)
        name = _next_generation(index_dir)
        tmp = index_dir / f"{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            channels = _embed_channels(embedders, chunks, hashes, prev_gen, prev_manifest, cache_dir, tmp, report, step)
            write_store(tmp / "chunks.sqlite", docs, chunks, tokens, hashes)
            _write_bm25(tmp / "bm25", tokens)
            step("quote index", 0, 1)
            quote = write_quote_index(tmp / QUOTE_FILE, [d for d, _ in docs],
                                      prev_gen / QUOTE_FILE if prev_gen else None)
            step("quote index", 1, 1)
            manifest = {
                "format": FORMAT, "kb_version": config.VERSION, "generation": name,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "chunking": chunking_settings(),
                "bm25": {"k1": config.BM25_K1, "b": config.BM25_B, "method": "lucene"},
                "channels": channels,
                "quote": quote,
                "counts": {"documents": len(docs), "chunks": len(chunks), "skipped": len(report.skipped)},
                "files": {d.doc_id: key.split(":")[0] for d, key in docs},
                "skipped": report.skipped,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            _fsync_dir(tmp)
            os.replace(tmp, index_dir / name)
            pointer_tmp = index_dir / f"{CURRENT}.tmp{os.getpid()}"
            pointer_tmp.write_text(name + "\n", encoding="utf-8")
            os.replace(pointer_tmp, index_dir / CURRENT)
            _fsync_dir(index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _prune(index_dir, keep=name)
    report.generation = name
    report.seconds = time.time() - t0
    return report


def _previous(index_dir: Path) -> tuple[dict, dict[str, object], Path | None]:
    """Reusable documents of the last build, when its chunking settings match ours."""
    try:
        gen = current_generation(index_dir)
        manifest = read_manifest(gen)
    except (IndexMissingError, IndexCorruptError):
        return {}, {}, None
    if manifest.get("chunking") != chunking_settings():
        log.info("chunking settings changed since the last build: re-reading every file")
        return {}, manifest, gen
    try:
        return Store(gen / "chunks.sqlite").previous(), manifest, gen
    except (IndexCorruptError, Exception) as exc:  # a damaged old store only costs a full rebuild
        log.warning("previous index at %s unreadable (%s): full rebuild", gen, exc)
        return {}, {}, None


def _embed_channels(embedders: dict[str, Embedder], chunks: list[Chunk], hashes: list[str], prev_gen: Path | None,
                    prev_manifest: dict, cache_dir: Path | None, out: Path, report: BuildReport,
                    step: Callable[[str, int, int], None]) -> dict[str, dict[str, object]]:
    channels: dict[str, dict[str, object]] = {}
    texts = [c.index_text() for c in chunks]
    for channel, embedder in embedders.items():
        known = _previous_vectors(prev_gen, prev_manifest, channel, embedder)
        cache = EmbeddingCache(cache_dir / f"embeddings-{embedder.name.replace('/', '_')}.sqlite" if cache_dir else None)
        todo = len({h for h in hashes if h not in known})
        done = 0

        def tick(n: int, channel: str = channel, todo: int = todo) -> None:
            nonlocal done
            done += n
            step(f"embed {channel}", done, todo)

        matrix, embedded = embed_passages(embedder, texts, cache, known, tick)
        report.embedded += embedded
        write_vectors(out / f"{channel}.faiss", matrix)
        channels[channel] = {"model": embedder.name, "dim": embedder.dim, "file": f"{channel}.faiss",
                             "faiss": "IndexScalarQuantizer(QT_fp16, inner product)"}
    return channels


def write_vectors(path: Path, matrix: np.ndarray) -> None:
    """An exact inner-product FAISS index storing each component as float16 (half the memory, same ranking)."""
    import faiss

    index = faiss.IndexScalarQuantizer(matrix.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index.train(matrix)
    index.add(matrix)
    faiss.write_index(index, str(path))
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def read_vectors(path: Path) -> object:
    """Load a FAISS index written by write_vectors (raises RuntimeError when the file is damaged)."""
    import faiss

    return faiss.read_index(str(path))


def _previous_vectors(gen: Path | None, manifest: dict, channel: str, embedder: Embedder) -> dict[str, np.ndarray]:
    info = (manifest.get("channels") or {}).get(channel)
    if gen is None or not info or info.get("model") != embedder.name:
        return {}
    try:
        vectors = read_vectors(gen / str(info["file"]))
        hashes = Store(gen / "chunks.sqlite").column("hash")
        if len(hashes) != vectors.ntotal:
            return {}
        matrix = vectors.reconstruct_n(0, vectors.ntotal)
    except (OSError, RuntimeError, IndexCorruptError):
        return {}
    return {h: matrix[i] for i, h in enumerate(hashes)}


def _write_bm25(path: Path, tokens: list[list[str]]) -> None:
    retriever = bm25s_module().BM25(k1=config.BM25_K1, b=config.BM25_B, method="lucene")
    # An empty token list would make bm25s drop the row; a placeholder keeps row i == chunk i.
    retriever.index([t or ["\u2400"] for t in tokens] or [["\u2400"]], show_progress=False)
    retriever.save(str(path), show_progress=False)


def _next_generation(index_dir: Path) -> str:
    numbers = [int(p.name[1:7]) for p in index_dir.glob("g[0-9][0-9][0-9][0-9][0-9][0-9]*") if p.name[1:7].isdigit()]
    return f"g{max(numbers, default=0) + 1:06d}"


def _prune(index_dir: Path, keep: str) -> None:
    """Delete old generations and leftovers of killed builds, keeping the newest few for readers still on them."""
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
