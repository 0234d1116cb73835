"""The manifest of an index generation (manifest.json) as typed data: what a reader checks before it trusts a file.

The JSON keeps its shape (index format 2); `Manifest.from_dict` reads it and `to_dict` writes it back.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.embed.tower import TowerInfo


@dataclass(frozen=True)
class WeightsInfo:
    """A trained weight file the index is searched with (the reranker's): its name and sha256."""

    file: str
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WeightsInfo | None:
        return cls(str(data.get("file", "")), str(data.get("sha256", ""))) if data else None

    @classmethod
    def of(cls, path: Path) -> WeightsInfo | None:
        """What a build records about a weight file; None when it is not there."""
        return cls(path.name, hashlib.sha256(path.read_bytes()).hexdigest()) if path.is_file() else None


@dataclass(frozen=True)
class Segment:
    """One segment file and the row numbers it holds: start <= row < end."""

    name: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "rows": [self.start, self.end]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        return cls(str(data["name"]), int(data["rows"][0]), int(data["rows"][1]))


@dataclass(frozen=True)
class Channel:
    """An embedding channel: the model and dimension it was built with; for FAISS its file and index kind."""

    model: str
    dim: int
    file: str = ""
    details: tuple[tuple[str, object], ...] = ()  # FAISS: index description and kind ("exact" or "ivf")

    @property
    def kind(self) -> str:
        return str(dict(self.details).get("kind", "exact"))

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "dim": self.dim, **({"file": self.file} if self.file else {}),
                **dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Channel:
        details = tuple((k, v) for k, v in data.items() if k not in ("model", "dim", "file"))
        return cls(str(data["model"]), int(data["dim"]), str(data.get("file") or ""), details)


@dataclass(frozen=True)
class QuoteInfo:
    """The quote index: its file, folding signature, FTS tokenizer and document count."""

    file: str
    fold: str
    tokenizer: str
    documents: int

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "fold": self.fold, "tokenizer": self.tokenizer, "documents": self.documents}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuoteInfo:
        return cls(str(data["file"]), str(data["fold"]), str(data["tokenizer"]), int(data["documents"]))


@dataclass(frozen=True)
class Counts:
    """Documents, live passages, row numbers in use (deleted included) and skipped files."""

    documents: int = 0
    chunks: int = 0
    rows: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"documents": self.documents, "chunks": self.chunks, "rows": self.rows, "skipped": self.skipped}


@dataclass(frozen=True)
class Manifest:
    """What a generation holds and how it was built."""

    format: int
    kb_version: str
    generation: str
    created: str
    chunking: dict[str, object]
    bm25: dict[str, object]
    channels: dict[str, Channel]
    quote: QuoteInfo | None
    segments: tuple[Segment, ...]
    deleted: tuple[tuple[int, int], ...]
    counts: Counts
    files: dict[str, str] = field(default_factory=dict)  # doc_id -> sha256 of the source file
    skipped: dict[str, str] = field(default_factory=dict)  # doc_id -> why it is not in the index
    question_tower: TowerInfo | None = None  # the trained question layers the dense channel is searched with
    reranker: WeightsInfo | None = None  # the trained reranker (kb.search.rerank) searches re-order with
    cited_by: dict[str, object] = field(default_factory=dict)  # the cited-by table: file, version, references

    def to_dict(self) -> dict[str, object]:
        """The manifest.json shape."""
        return {"format": self.format, "kb_version": self.kb_version, "generation": self.generation,
                "created": self.created, "chunking": self.chunking, "bm25": self.bm25,
                "channels": {ch: c.to_dict() for ch, c in self.channels.items()},
                "quote": self.quote.to_dict() if self.quote else None,
                "segments": [s.to_dict() for s in self.segments], "deleted": [list(r) for r in self.deleted],
                "counts": self.counts.to_dict(), "files": self.files, "skipped": self.skipped,
                **({"question_tower": self.question_tower.to_dict()} if self.question_tower else {}),
                **({"reranker": self.reranker.to_dict()} if self.reranker else {}),
                **({"cited_by": self.cited_by} if self.cited_by else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Read manifest.json's contents (kb.index.generations.read_manifest checked the format)."""
        counts = data.get("counts") or {}
        quote = data.get("quote")
        return cls(
            format=int(data["format"]), kb_version=str(data.get("kb_version", "")),
            generation=str(data.get("generation", "")), created=str(data.get("created", "")),
            chunking=dict(data.get("chunking") or {}), bm25=dict(data.get("bm25") or {}),
            channels={ch: Channel.from_dict(c) for ch, c in (data.get("channels") or {}).items()},
            quote=QuoteInfo.from_dict(quote) if quote else None,
            segments=tuple(Segment.from_dict(s) for s in data.get("segments") or ()),
            deleted=tuple((int(a), int(b)) for a, b in data.get("deleted") or ()),
            counts=Counts(**{k: int(v) for k, v in counts.items() if k in Counts.__dataclass_fields__}),
            files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
            skipped={str(k): str(v) for k, v in (data.get("skipped") or {}).items()},
            question_tower=TowerInfo.from_dict(data.get("question_tower")),
            reranker=WeightsInfo.from_dict(data.get("reranker")),
            cited_by=dict(data.get("cited_by") or {}))
