"""Constants and environment fallbacks; CLI flags override these."""
from __future__ import annotations

import os
from pathlib import Path

VERSION = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("KB_CORPUS", ROOT / "corpus"))
DEFAULT_INDEX = Path(os.environ.get("KB_INDEX", ROOT / "index"))
CACHE_DIR = Path(os.environ.get("KB_CACHE_DIR", Path.home() / ".cache" / "policy-kb"))

# Files the corpus walker reads; anything else is reported as skipped.
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + (".pdf", ".docx")
# Sidecars and corpus notes that describe documents rather than being documents.
IGNORED_NAMES = ("README.md", "SOURCES.md", "metadata.csv", "LICENSE")
IGNORED_SUFFIXES = (".meta.json",)
MAX_FILE_BYTES = int(os.environ.get("KB_MAX_FILE_BYTES", 64 * 1024 * 1024))
# Seconds one file may take to read and convert before it is skipped (PDFs: see also KB_PDF_TIMEOUT).
FILE_TIMEOUT_S = float(os.environ.get("KB_FILE_TIMEOUT", 600))

# Chunking. Chinese articles average ~130 characters; an article above ZH_MAX_CHARS is
# split at 款 / sentence ends so one passage stays readable and fits e5's 512 tokens.
ZH_MAX_CHARS = 600
ZH_MIN_CHARS = 40
# English passages: ~220 e5 tokens each with a sentence of overlap, so a fact that
# straddles two passages is still found whole in one of them.
EN_CHUNK_CHARS = 1000
EN_CHUNK_OVERLAP = 150
CHUNKER_VERSION = "3"
# What kb.legalmeta reads from a text; a change re-reads every file (chunks and vectors are reused).
META_VERSION = "2"

# Embedding. The default model serves Chinese and English; the cross-lingual channel
# (multilingual USE) is the only packaged model that maps English questions onto
# Chinese passages, so it runs beside e5 rather than instead of it.
DEFAULT_MODEL = os.environ.get("KB_MODEL", "e5")
DEFAULT_XLING = os.environ.get("KB_XLING", "use")
EMBED_BATCH = 32
# Worker processes (one thread each) for embedding many passages with e5; 1 embeds in the calling process.
EMBED_WORKERS = int(os.environ.get("KB_EMBED_WORKERS", os.cpu_count() or 1))

# Retrieval. k=60 is the constant of Cormack et al. (2009); it flattens the head of
# each ranked list so one channel's rank-1 cannot drown the others. Channel weights
# were tuned on SciFact and STARD (docs/BENCHMARKS.md).
RRF_K = 60
# 200 per channel: the fused top 100 then draws on both lists' tails (STARD Recall@100 +0.9 points).
CANDIDATES = 200
# e5 is the stronger channel on both benchmarks (STARD Recall@100: e5 0.754, BM25 0.676).
WEIGHTS = {"bm25": 1.0, "dense": 1.5, "dense_x": 1.5, "xling": 1.0}
# Texts with these statuses are hidden unless asked for (--include-repealed): a civil servant must not
# be handed a superseded version as if it were in force.
HIDDEN_VALIDITY = ("已废止", "已修改")
# Ranking factor by legal level; the others stay at 1.0 (see kb.fusion.rrf).
LEVEL_PRIOR = {"宪法": 1.1, "法律": 1.1, "司法解释": 1.05}
# Results below the first HEAD are ordered for recall (kb.fusion): fusion of TAIL_CANDIDATES rows per channel,
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

# The question tower (kb.qtower): e5's last layers trained on Chinese legal questions, applied to Chinese
# questions; passages keep the packaged vectors. KB_TUNED=0 (or --tuned off) searches with the packaged e5 alone.
TUNED = os.environ.get("KB_TUNED", "1") not in ("0", "off", "false", "no")

BM25_K1 = 1.2
BM25_B = 0.75

# Vectors: exact (float16, inner product) search below ANN_MIN_ROWS passages, an IVF index from there.
# Exact search over the whole LawRefBook corpus (153,000 passages) takes 16 ms a query and loses nothing, so it
# stays up to about twice that size (~35 ms a search); IVF with 4·sqrt(n) cells and IVF_NPROBE = 256 reached
# recall@100 0.973 against exact search there in 1.2 ms (docs/BENCHMARKS.md).
ANN_MIN_ROWS = int(os.environ.get("KB_ANN_MIN_ROWS", 300_000))
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
