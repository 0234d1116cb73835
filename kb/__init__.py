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
from kb.legal.pinpoint import Place, parse_citation
from kb.legal.xref import Reference, find_references
from kb.present.references import FORMATS as REFERENCE_FORMATS
from kb.present.references import export as export_references
from kb.quote.check import QuoteChecker, QuoteMatch, QuoteReport, check_quote
from kb.quote.diff import DiffOp
from kb.research.citing import CitedBy, cited_by
from kb.research.compare import Comparison, Pair
from kb.research.laws import Laws, Version
from kb.research.versions import compare_versions
from kb.research.works import Work, work_of_hit, works_of_citations
from kb.search.searcher import Hit, Searcher

__all__ = [
    "REFERENCE_FORMATS",
    "Box",
    "BuildReport",
    "Chunk",
    "CitedBy",
    "Comparison",
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
    "Laws",
    "ModelLoadError",
    "ModelMismatchError",
    "Pair",
    "Place",
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
    "Version",
    "Work",
    "__version__",
    "build",
    "build_index",  # kb.backends: the FAISS folder or Milvus (docs/MILVUS.md)
    "check_quote",
    "chunk_document",
    "citation",
    "cited_by",  # 法条联想 (kb.research.citing)
    "compare_versions",  # 新旧对照 (kb.research.versions)
    "export_references",  # GB/T 7714, BibTeX, CSL-JSON, RIS (kb.present.references)
    "find_references",
    "highlight_spans",
    "load_embedder",
    "open_searcher",
    "parse_citation",
    "passage_boxes",
    "read_document",
    "verify",
    "walk_corpus",
    "work_of_hit",
    "works_of_citations",
]
