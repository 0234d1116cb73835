"""Exceptions raised by the library; each message says what to do about it."""

from __future__ import annotations


class KbError(Exception):
    """Base class: scripts print the message on one line and exit non-zero."""


class CorpusError(KbError):
    """The corpus folder itself is missing or unusable (fatal for a build)."""


class IngestError(KbError):
    """One file could not be read; the build skips it and reports the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class IndexMissingError(KbError):
    """No index has been built at the given folder yet."""


class IndexCorruptError(KbError):
    """An index file is missing, truncated or does not match the manifest."""


class IndexWriteError(KbError):
    """The index folder cannot be written (disk full, read-only); the previous index stays in service."""


class ModelMismatchError(KbError):
    """The index was built with another embedding model than the one asked for."""


class ModelLoadError(KbError):
    """An embedding model could not be loaded (offline, missing package, bad path)."""


class QueryError(KbError):
    """A query or filter the search cannot answer (empty, unknown document, ...)."""
