"""File -> Document: read txt, md, html, pdf and docx from the corpus folder with their metadata."""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import json
import logging
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from kb import config
from kb.errors import CorpusError, IngestError
from kb.ingest.document import META_FIELDS, REPEALS_SEP, DocMeta, Document
from kb.ingest.formats import decode, html_to_text, looks_like_html, read_docx, split_front_matter
from kb.legal.meta import iso_date, legal_meta, repealed_titles

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_lang(text: str) -> str:
    """'zh' when CJK characters outweigh Latin words, else 'en'."""
    sample = text[:20_000]
    cjk = len(_CJK.findall(sample))
    latin = len(_LATIN.findall(sample))
    # A Chinese character carries about as much as a five-letter English word.
    return "zh" if cjk * 5 >= latin and cjk > 0 else "en"


def file_sha256(path: Path) -> str:
    """Content hash of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_candidate(path: Path) -> bool:
    """Files the walker considers at all (sidecars and corpus notes are not documents)."""
    return not (
        path.name in config.IGNORED_NAMES or path.name.endswith(config.IGNORED_SUFFIXES) or path.name.startswith(".")
    )


def walk_corpus(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (doc_id, path) for every candidate file under root, sorted, without leaving root.

    Raises:
        CorpusError: root does not exist or is not a folder.
    """
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist: create it or pass --corpus DIR")
    for path in sorted(root.rglob("*")):
        if not is_candidate(path) or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_dir():
            continue
        yield path.relative_to(root).as_posix(), path


def check_inside(root: Path, path: Path) -> None:
    """Refuse symlinks that leave the corpus folder.

    Raises:
        IngestError: path resolves outside root, or is a broken link.
    """
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise IngestError(path.name, f"broken or looping link ({exc.__class__.__name__})") from exc
    if not real.is_relative_to(root.resolve()):
        raise IngestError(path.name, "link points outside the corpus folder; not followed")


def load_sidecars(root: Path) -> dict[str, dict[str, str]]:
    """Read the corpus-level metadata.csv (doc_id plus any DocMeta / title column), if any."""
    table: dict[str, dict[str, str]] = {}
    csv_path = root / "metadata.csv"
    if csv_path.is_file():
        with csv_path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                doc_id = (row.pop("doc_id", "") or "").strip()
                if doc_id:
                    table[doc_id] = {k: v.strip() for k, v in row.items() if k and v and v.strip()}
    return table


def read_sidecar(path: Path) -> dict[str, str]:
    """Read '<file>.meta.json' beside a document, if present.

    Raises:
        IngestError: the sidecar exists but is not a JSON object.
    """
    side = path.with_name(path.name + ".meta.json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(side.name, f"sidecar is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IngestError(side.name, "sidecar must hold a JSON object")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def read_document(root: Path, doc_id: str, overrides: dict[str, str] | None = None) -> Document:
    """Read one corpus file into a Document, within the per-file time limit (config.FILE_TIMEOUT_S).

    Raises:
        IngestError: the file cannot be read, or reading it took too long; the message says why.
    """
    with time_limit(config.FILE_TIMEOUT_S, doc_id):
        return _read_document(root, doc_id, overrides)


@contextlib.contextmanager
def time_limit(seconds: float, doc_id: str) -> Iterator[None]:
    """Raise IngestError in the calling code once `seconds` have passed (main thread only, where signals arrive).

    A pathological file (HTML nested thousands deep, a regex-hostile line) must not stall a whole build;
    PDFs also run in a child process with their own limit (kb.ingest.pdf), which this one backs up.
    """
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise IngestError(doc_id, f"reading took over {seconds:g} s (KB_FILE_TIMEOUT); skipped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_document(root: Path, doc_id: str, overrides: dict[str, str] | None) -> Document:
    path = root / doc_id
    check_inside(root, path)
    suffix = path.suffix.lower()
    if suffix not in config.SUPPORTED_SUFFIXES:
        raise IngestError(
            doc_id, f"unsupported file type '{suffix or '(none)'}' (supported: {' '.join(config.SUPPORTED_SUFFIXES)})"
        )
    size = path.stat().st_size
    if size == 0:
        raise IngestError(doc_id, "empty file")
    if size > config.MAX_FILE_BYTES:
        raise IngestError(
            doc_id,
            f"file is {size // 2**20} MB, over the {config.MAX_FILE_BYTES // 2**20} MB limit (KB_MAX_FILE_BYTES)",
        )
    sha = file_sha256(path)
    extra: dict[str, str] = {}
    pages: tuple[tuple[int, int, int], ...] = ()
    header, title = "", None
    if suffix == ".pdf":
        from kb.ingest.pdf import read_pdf

        try:
            pdf = read_pdf(path)
        except IngestError as exc:
            raise IngestError(doc_id, exc.reason) from exc
        text, pages, encoding, fmt = pdf.text, pdf.pages, None, "pdf"
        if pdf.repaired_words:
            extra["repaired_words"] = str(pdf.repaired_words)
    elif suffix == ".docx":
        try:
            text, title = read_docx(path)
        except IngestError as exc:
            raise IngestError(doc_id, exc.reason) from exc
        encoding, fmt = None, "docx"
    else:
        text, encoding = decode(path.read_bytes(), doc_id)
        front, body = split_front_matter(text)
        # YAML reads an unquoted 2023-07-19 as a date object; it is kept as its ISO text.
        extra.update(
            {k: str(v) for k, v in front.items() if isinstance(v, (str, int, float, datetime.date)) and str(v).strip()}
        )
        title = str(front["title"]).strip() if front.get("title") else None
        fmt = "html" if suffix in config.HTML_SUFFIXES else suffix.lstrip(".")
        if fmt == "html" or looks_like_html(body):
            body, html_title = html_to_text(body)
            title = title or html_title
            fmt = "html"
        text = body
        header, text_title = _lawref_header(text)
        title = title or text_title
    if not text.strip():
        raise IngestError(doc_id, "no text after conversion")
    title = title or _guess_title(text) or path.stem
    lang = detect_lang(text)
    values: dict[str, str | None] = dict.fromkeys(META_FIELDS)
    if lang == "zh":
        values.update(legal_meta(title, header, text))
        repeals = repealed_titles(text)
        if repeals:
            extra["repeals"] = REPEALS_SEP.join(repeals)
    else:
        values["level"] = "commentary"
        values["published"] = _front_matter_date(extra)
    side = {**(overrides or {}), **read_sidecar(path)}
    title = side.pop("title", "") or title
    lang = side.pop("lang", "") or lang
    values.update({k: v for k, v in side.items() if k in META_FIELDS})
    extra.update({k: v for k, v in side.items() if k not in META_FIELDS})
    meta = DocMeta(**values, source_format=fmt, encoding=encoding, sha256=sha, extra=tuple(sorted(extra.items())))
    return Document(doc_id=doc_id, path=str(path), title=title, lang=lang, text=text, meta=meta, page_spans=pages)


_LAWREF_END = "<!-- INFO END -->"


def _lawref_header(text: str) -> tuple[str, str | None]:
    """LawRefBook Markdown: the header before '<!-- INFO END -->' and its '# title'."""
    head = text[: text.find(_LAWREF_END)] if _LAWREF_END in text[:5000] else text[:300]
    m = re.search(r"^#[ \t]+(.+?)[ \t]*$", head, re.M)
    return (head if _LAWREF_END in text[:5000] else ""), (m.group(1).strip() if m else None)


def _guess_title(text: str) -> str | None:
    """First line that reads like a title: a Markdown heading, or 2-20 words not ending a sentence."""
    for line in text.splitlines()[:12]:
        line = line.strip().lstrip("#").strip()
        if not line:
            continue
        words = line.split()
        if 2 <= len(words) <= 20 and not line.endswith((".", "。", ":", "：")) and not re.match(r"^[\d\-:/ ]+$", line):
            return line
        if _CJK.search(line) and len(line) <= 60:
            return line
    return None


def _front_matter_date(extra: dict[str, str]) -> str | None:
    for key in ("date", "datePublished", "published"):
        value = extra.get(key, "")
        m = re.search(r"(\d{4})-(\d{2})-(\d{2})", value)
        if m:
            return iso_date(*m.groups())
        m = re.search(r"(\w{3}) (\w{3}) (\d{1,2}) (\d{4})", value)
        if m:
            try:
                return (
                    datetime.datetime.strptime(f"{m.group(2)} {m.group(3)} {m.group(4)}", "%b %d %Y").date().isoformat()
                )
            except ValueError:
                return None
    return None


def source_key(path: Path, overrides: dict[str, str]) -> str:
    """File hash plus its metadata overrides and META_VERSION: editing metadata.csv or a .meta.json, or a
    change in what is read from texts, re-reads the file."""
    extra = json.dumps(
        {**overrides, **read_sidecar(path), "meta_version": config.META_VERSION}, sort_keys=True, ensure_ascii=False
    )
    return file_sha256(path) + ":" + hashlib.sha1(extra.encode()).hexdigest()[:12]
