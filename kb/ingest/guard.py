"""One guard around everything a build does for one corpus file: any failure skips that file, never the build.

Checks that need no reading (links, file type, size, name) run first, so a FIFO, a device or a link out of the
corpus is refused before anything opens it; the rest (hashing, decoding, parsing, chunking, metadata) runs
under `guarded`, which turns any exception into an IngestError with a one-line reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from kb import config
from kb.errors import IngestError
from kb.ingest.read import check_file, file_sha256, time_limit
from kb.ingest.sidecars import read_sidecar

log = logging.getLogger(__name__)

# Longest reason kept in a skip line: a parser's message can quote the whole offending input.
MAX_REASON = 300


def printable(text: str) -> str:
    """Text safe to print on one line: control characters, lone surrogates (undecodable file-name bytes)
    and line breaks shown as escapes, so a file name cannot ring the terminal, recolour it or split a row."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029) or 0xD800 <= code <= 0xDFFF:
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """A reason as one printable line of at most `limit` characters."""
    flat = printable(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def source_key(root: Path, doc_id: str, path: Path, overrides: dict[str, str]) -> str:
    """File hash plus its metadata overrides and META_VERSION, after check_file: editing metadata.csv or a
    .meta.json, or a change in what is read from texts, re-reads the file.

    Raises:
        IngestError: check_file refused the file, or its sidecar is unusable.
    """
    check_file(root, doc_id, path)
    extra = json.dumps(
        {**overrides, **read_sidecar(path, root), "meta_version": config.META_VERSION},
        sort_keys=True,
        ensure_ascii=False,
    )
    return file_sha256(path) + ":" + hashlib.sha1(extra.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def safe_hash(root: Path, doc_id: str, path: Path) -> str | None:
    """The file's content hash, or None when check_file refuses it or it cannot be read (for `kb check`)."""
    try:
        with guarded(doc_id):
            check_file(root, doc_id, path)
            return file_sha256(path)
    except IngestError:
        return None


def report_id(doc_id: str) -> str:
    """The doc_id as a skip report stores it: undecodable name bytes escaped, so the report can be written."""
    try:
        doc_id.encode("utf-8")
        return doc_id
    except UnicodeEncodeError:
        return printable(doc_id)


@contextlib.contextmanager
def guarded(doc_id: str) -> Iterator[None]:
    """Run one file's work within the time limit; any exception becomes IngestError(doc_id, one-line reason).

    KeyboardInterrupt and SystemExit pass: they stop the build, which keeps the previous index.
    """
    try:
        with time_limit(config.FILE_TIMEOUT_S, doc_id):
            yield
    except IngestError as exc:
        raise IngestError(doc_id, one_line(exc.reason)) from exc
    except OSError as exc:
        log.debug("%s: %s", printable(doc_id), exc, exc_info=True)
        raise IngestError(doc_id, one_line(f"unreadable ({exc.strerror or exc})")) from exc
    except Exception as exc:
        log.debug("%s: unexpected %s", printable(doc_id), type(exc).__name__, exc_info=True)
        message = str(exc).strip()
        raise IngestError(
            doc_id, one_line(f"cannot be read ({type(exc).__name__}{': ' + message if message else ''})")
        ) from exc


def skip(skipped: dict[str, str], exc: IngestError, doc_id: str) -> None:
    """Record a skipped file in a build report and the log."""
    key = report_id(doc_id)
    skipped[key] = one_line(exc.reason)
    log.warning("skipped %s: %s", printable(key), skipped[key])
