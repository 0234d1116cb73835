"""Policy KB: cited hybrid search over Chinese and English policy documents."""
from kb.chunk import Chunk, chunk_document
from kb.cite import citation, highlight_spans
from kb.config import VERSION as __version__
from kb.embed import Embedder, HashingEmbedder, load_embedder
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
from kb.index import BuildReport, build
from kb.ingest import DocMeta, Document, read_document, walk_corpus
from kb.quote import QuoteChecker, QuoteMatch, QuoteReport, check_quote
from kb.quotediff import DiffOp
from kb.search import Hit, Searcher
from kb.verify import verify

__all__ = [
    "BuildReport", "Chunk", "CorpusError", "DiffOp", "DocMeta", "Document", "Embedder", "HashingEmbedder", "Hit",
    "IndexCorruptError", "IndexMissingError", "IngestError", "KbError", "ModelLoadError", "ModelMismatchError",
    "QueryError", "QuoteChecker", "QuoteMatch", "QuoteReport", "Searcher", "__version__", "build", "check_quote",
    "chunk_document", "citation", "highlight_spans", "load_embedder", "read_document", "verify", "walk_corpus",
]
