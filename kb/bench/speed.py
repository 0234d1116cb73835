"""`python -m kb bench`: ingest, embedding, build, size, memory, latency, ANN recall and update figures.

Each measured phase runs in its own process, so its peak RSS is its own (os.wait4), and the serving figures
come from a process that never built anything.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kb import config

E5_LAYERS, E5_HIDDEN, E5_FFN = 12, 384, 1536
E5_MATMUL_PARAMS = E5_LAYERS * (4 * E5_HIDDEN * E5_HIDDEN + 2 * E5_HIDDEN * E5_FFN)
ENGLISH_QUERIES = Path(__file__).parent / "queries_en.txt"


def queries(n_stard: int) -> list[str]:
    """The fixed query set: the first n STARD train questions, then the English questions."""
    from kb.bench.evaluate import _stard_rows

    english = [q for q in ENGLISH_QUERIES.read_text(encoding="utf-8").splitlines() if q.strip()]
    return [r["query"] for r in _stard_rows(n_stard)] + english


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """Best-of GFLOP/s of a square torch matmul on all threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def encoder_flops(token_counts: list[int], window: int = 512) -> float:
    """Useful e5-small FLOPs: 2·params·tokens for the matmuls plus QK^T and PV attention, per 512-token window."""
    total = 0.0
    for t in token_counts:
        rest = t - 2
        while True:
            length = min(rest, window - 2) + 2
            total += 2 * E5_MATMUL_PARAMS * length + E5_LAYERS * 4 * length * length * E5_HIDDEN
            rest -= window - 2
            if rest <= 0:
                break
    return total


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {f"p{p}": round(float(np.percentile(ms, p)), 1) for p in (50, 95, 99)} | {
        "mean": round(float(np.mean(ms)), 1)
    }


def phase_ingest(corpus: Path) -> dict[str, object]:
    """Read + chunk every file, then tokenize for BM25, timed apart."""
    from kb.chunk import chunk_document
    from kb.ingest.read import read_document, walk_corpus
    from kb.ingest.sidecars import load_sidecars
    from kb.text.lexical import tokenize_many

    t0 = time.perf_counter()
    sidecars = load_sidecars(corpus)
    texts: list[str] = []
    chars, docs = 0, 0
    for doc_id, _ in walk_corpus(corpus):
        try:
            chunks = chunk_document(read_document(corpus, doc_id, sidecars.get(doc_id)))
        except Exception:
            continue
        docs += 1
        chars += sum(len(c.text) for c in chunks)
        texts.extend(c.index_text() for c in chunks)
    t1 = time.perf_counter()
    tokenize_many(texts)
    t2 = time.perf_counter()
    return {
        "documents": docs,
        "passages": len(texts),
        "passage_chars": chars,
        "ingest_chunk_s": round(t1 - t0, 1),
        "tokenize_s": round(t2 - t1, 1),
    }


def phase_encoder(corpus: Path, sample: int) -> dict[str, object]:
    """e5 throughput on a random sample of the corpus's passages (no cache), against the matmul peaks measured now.

    Two ways to use both cores: the build's (one single-threaded worker process per core) and one process with
    a thread per core.
    """
    import torch

    from kb.chunk import chunk_document
    from kb.embed.e5torch import TorchE5
    from kb.embed.models import E5Embedder
    from kb.ingest.read import read_document, walk_corpus
    from kb.ingest.sidecars import load_sidecars

    sidecars = load_sidecars(corpus)
    files = [d for d, _ in walk_corpus(corpus)]
    rng = random.Random(0)
    texts: list[str] = []
    for doc_id in rng.sample(files, min(len(files), max(1, sample // 8))):
        texts.extend(c.index_text() for c in chunk_document(read_document(corpus, doc_id, sidecars.get(doc_id))))
    texts = sorted(rng.sample(texts, min(sample, len(texts))), key=len)  # the build's order
    counter = TorchE5()
    t0 = time.perf_counter()
    tokens = counter.token_counts(texts)
    t_tok = time.perf_counter() - t0
    flops = encoder_flops(tokens)
    engines = {"processes": E5Embedder(engine="torch"), "threads": E5Embedder(engine="torch", workers=1)}
    for engine in engines.values():
        engine.passage(texts[: 2 * config.EMBED_BATCH])  # start workers, load weights
    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}
    secs = {}
    for name, engine in engines.items():
        t0 = time.perf_counter()
        for i in range(0, len(texts), 16 * config.EMBED_BATCH):
            engine.passage(texts[i : i + 16 * config.EMBED_BATCH])
        secs[name] = time.perf_counter() - t0
    peaks = {k: max(v, matmul_peak(k)) for k, v in peaks.items()}
    out: dict[str, object] = {
        "precision": counter.precision,
        "cores": os.cpu_count(),
        "workers": config.EMBED_WORKERS,
        "torch_threads": torch.get_num_threads(),
        "passages": len(texts),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "tokenizer_s_per_passage_ms": round(1000 * t_tok / len(texts), 2),
        "peak_fp32_gflops": round(peaks["float32"], 1),
        "peak_bf16_gflops": round(peaks["bfloat16"], 1),
    }
    for name, s in secs.items():
        gflops = flops / s / 1e9
        out[name] = {
            "passages_per_s": round(len(texts) / s, 1),
            "tokens_per_s": round(sum(tokens) / s),
            "encoder_gflops": round(gflops, 1),
            "share_of_fp32_peak": round(gflops / peaks["float32"], 3),
            "share_of_bf16_peak": round(gflops / peaks["bfloat16"], 3),
        }
    return out


def phase_build(corpus: Path, index: Path, model: str, xling: str, compact: bool) -> dict[str, object]:
    from kb.embed.models import build_embedders
    from kb.index.build import build

    report = build(corpus, index, build_embedders(model, xling), compact=compact)
    return {
        "seconds": round(report.seconds, 2),
        "stages": {k: round(v, 2) for k, v in report.stages.items()},
        "indexed": len(report.indexed),
        "reused": len(report.reused),
        "passages": report.chunks,
        "embedded": report.embedded,
        "compacted": report.compacted,
    }


def phase_serve(index: Path, n_stard: int) -> dict[str, object]:
    """Load, warm up, then each query alone in each mode: latency percentiles in ms."""
    from kb.search.searcher import Searcher

    t0 = time.perf_counter()
    searcher = Searcher(index)
    load = time.perf_counter() - t0
    qs = queries(n_stard)
    out: dict[str, object] = {"load_s": round(load, 2), "queries": len(qs), "passages": searcher.index.n}
    for q in qs[:20]:
        searcher.search(q, 10, rerank=True)
    # The reranker (kb.search.rerank) is timed apart: "hybrid" is the fused list alone, "hybrid+rerank" the default.
    for name, mode, rerank in (
        ("keyword", "keyword", False),
        ("semantic", "semantic", False),
        ("hybrid", "hybrid", False),
        ("hybrid+rerank", "hybrid", True),
    ):
        ms = []
        for q in qs:
            t = time.perf_counter()
            searcher.search(q, 10, mode=mode, rerank=rerank)
            ms.append(1000 * (time.perf_counter() - t))
        out[name] = _percentiles(ms)
    return out


def phase_ann(index: Path, n_stard: int) -> dict[str, object]:
    """Recall and latency of an IVF index against exact search over the same vectors, as the dense channel asks."""
    from kb.catalog.filters import Filters
    from kb.index import vectors
    from kb.search.searcher import Searcher, allowed_rows

    searcher = Searcher(index)
    exact = searcher.index.vectors["dense"]
    qs = queries(n_stard)
    vecs = searcher.embedder("dense").query(qs)
    masks = [allowed_rows(searcher.index, Filters()) for _ in qs]  # the real default filter
    t0 = time.perf_counter()
    ivf = vectors.create(vectors.all_rows(exact), vectors.IVF)
    built = time.perf_counter() - t0
    out: dict[str, object] = {"rows": exact.ntotal, "nlist": ivf.nlist, "ivf_build_s": round(built, 1)}

    def run(idx: object, nprobe: int | None) -> tuple[list[list[int]], list[float]]:
        rows, ms = [], []
        for v, m in zip(vecs, masks):
            t = time.perf_counter()
            rows.append(vectors.nearest(idx, v, m, config.CANDIDATES, nprobe=nprobe))
            ms.append(1000 * (time.perf_counter() - t))
        return rows, ms

    def recall(got: list[list[int]]) -> dict[str, float]:
        return {
            f"recall@{k}": round(
                float(np.mean([len(set(g[:k]) & set(t[:k])) / max(len(t[:k]), 1) for g, t in zip(got, truth)])), 4
            )
            for k in (10, 100, 200)
        }

    truth, ms = run(exact, None)
    out["exact"] = _percentiles(ms)
    for nprobe in (16, 64, 128, 256, 512):
        got, ms = run(ivf, nprobe)
        out[f"ivf_nprobe{nprobe}"] = {**_percentiles(ms), **recall(got)}
    import faiss  # int8 codes would halve the vectors again: what would that cost in recall?

    int8 = faiss.IndexScalarQuantizer(exact.d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    matrix = vectors.all_rows(exact)
    int8.train(matrix)
    int8.add(matrix)
    got, ms = run(int8, None)
    out["exact_int8"] = {**_percentiles(ms), **recall(got)}
    return out


def _child(args: list[str]) -> tuple[dict, float, float]:
    """Run one phase in a fresh process: (its JSON result, wall seconds, peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kb.bench.speed", *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"bench phase {args[0]} failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0, usage.ru_maxrss / 1024


def disk_usage(folder: Path) -> int:
    """Bytes under a folder, each hard-linked file once."""
    seen, total = set(), 0
    for p in folder.rglob("*"):
        st = p.lstat()
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _one_changed_file(corpus: Path, scratch: Path) -> tuple[Path, str]:
    """A linked copy of the corpus with one mid-sized law's article edited (the original file is untouched)."""
    from kb.ingest.read import walk_corpus

    copy = scratch / "corpus"
    shutil.copytree(corpus, copy, copy_function=_link)
    files = sorted((p.stat().st_size, d, p) for d, p in walk_corpus(copy) if p.suffix == ".md")
    _, doc_id, path = files[len(files) // 2]
    text = path.read_text(encoding="utf-8")
    path.unlink()  # a hard link to the original: replace it, never write through it
    at = text.find("第二条")
    # A new sentence each run, so the edited passage is never in the embedding cache: the model must load.
    edit = f"第二条 本条于{time.time_ns()}为基准测试所改。"
    path.write_text(text[:at] + edit + text[at + 3 :] if at >= 0 else text + f"\n{edit}\n", encoding="utf-8")
    return copy, doc_id


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run(
    corpus: Path,
    index: Path,
    n_stard: int = 200,
    model: str = config.DEFAULT_MODEL,
    xling: str = "none",
    sample: int = 512,
    skip: tuple[str, ...] = (),
) -> dict[str, object]:
    """Every figure for one corpus and index (built or updated first); `skip` leaves phases out."""
    from kb.index.generations import current_generation

    result: dict[str, object] = {
        "corpus": str(corpus),
        "index": str(index),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg()[0],
    }
    common = ["--model", model, "--xling", xling]
    if "ingest" not in skip:
        result["ingest"], _, _ = _child(["ingest", str(corpus)])
    if "encoder" not in skip:
        result["encoder"], _, _ = _child(["encoder", str(corpus), "--sample", str(sample)])
    if "build" not in skip:
        data, wall, rss = _child(["build", str(corpus), str(index), *common, "--compact"])
        result["build"] = {**data, "wall_s": round(wall, 1), "peak_rss_mb": round(rss)}
    gen = current_generation(index)
    result["size_mb"] = {
        p.name: round(disk_usage(p) / 2**20, 2) if p.is_dir() else round(p.stat().st_size / 2**20, 2)
        for p in sorted(gen.iterdir())
    } | {"total": round(disk_usage(gen) / 2**20, 2)}
    if "serve" not in skip:
        data, _, rss = _child(["serve", str(index), "--queries", str(n_stard)])
        result["serve"] = {**data, "peak_rss_mb": round(rss)}
    if "ann" not in skip:
        result["ann"], _, _ = _child(["ann", str(index), "--queries", str(n_stard)])
    if "update" not in skip:
        with tempfile.TemporaryDirectory(dir=index.parent, prefix="bench-update-") as tmp:
            scratch = Path(tmp)
            copy, doc_id = _one_changed_file(corpus, scratch)
            shutil.copytree(index, scratch / "index", copy_function=_link, ignore=shutil.ignore_patterns(".lock"))
            data, wall, rss = _child(["build", str(copy), str(scratch / "index"), *common])
            result["update"] = {"changed": doc_id, **data, "wall_s": round(wall, 1), "peak_rss_mb": round(rss)}
            data, wall, _ = _child(["build", str(copy), str(scratch / "index"), *common])
            result["no_change"] = {"seconds": data["seconds"], "wall_s": round(wall, 1)}
    return result


def _phase_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m kb.bench.speed")
    p.add_argument("phase", choices=("ingest", "encoder", "build", "serve", "ann"))
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--model", default=config.DEFAULT_MODEL)
    p.add_argument("--xling", default="none")
    p.add_argument("--compact", action="store_true")
    p.add_argument("--sample", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    a = p.parse_args(argv)
    fn = {
        "ingest": lambda: phase_ingest(a.paths[0]),
        "encoder": lambda: phase_encoder(a.paths[0], a.sample),
        "build": lambda: phase_build(a.paths[0], a.paths[1], a.model, a.xling, a.compact),
        "serve": lambda: phase_serve(a.paths[0], a.queries),
        "ann": lambda: phase_ann(a.paths[0], a.queries),
    }
    print(json.dumps(fn[a.phase](), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(_phase_main(sys.argv[1:]))
