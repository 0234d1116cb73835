"""Policy KB: cited hybrid search over Chinese and English policy documents."""

from kb.backends import build_index, open_searcher
from kb.catalog.facets import Facets
from kb.catalog.filters import Filters
from kb.catalog.resolve import Resolved, Resolver, Target
from kb.catalog.timeline import Span
from kb.chunk import Chunk, chunk_document
from kb.cite import citation, highlight_spans
from kb.config import VERSION as __version__
from kb.embed.models import Embedder, HashingEmbedder, load_embedder
from kb.errors import (
    CorpusError,
    IndexCorruptError,
    IndexMissingError,
    IngestError,
    KbError,
    ModelLoadError,
    ModelMismatchError,
    QueryError,
)
from kb.index.build import build
from kb.index.report import BuildReport
from kb.index.verify import verify
from kb.ingest.boxes import Box, passage_boxes
from kb.ingest.document import DocMeta, Document
from kb.ingest.read import read_document, walk_corpus
from kb.legal.xref import Reference, find_references
from kb.quote.check import QuoteChecker, QuoteMatch, QuoteReport, check_quote
from kb.quote.diff import DiffOp
from kb.search.searcher import Hit, Searcher

__all__ = [
    "Box",
    "BuildReport",
    "Chunk",
    "CorpusError",
    "DiffOp",
    "DocMeta",
    "Document",
    "Embedder",
    "Facets",
    "Filters",
    "HashingEmbedder",
    "Hit",
    "IndexCorruptError",
    "IndexMissingError",
    "IngestError",
    "KbError",
    "ModelLoadError",
    "ModelMismatchError",
    "QueryError",
    "QuoteChecker",
    "QuoteMatch",
    "QuoteReport",
    "Reference",
    "Resolved",
    "Resolver",
    "Searcher",
    "Span",
    "Target",
    "__version__",
    "build",
    "build_index",  # kb.backends: the FAISS folder or Milvus (docs/MILVUS.md)
    "check_quote",
    "chunk_document",
    "citation",
    "find_references",
    "highlight_spans",
    "load_embedder",
    "open_searcher",
    "passage_boxes",
    "read_document",
    "verify",
    "walk_corpus",
]
