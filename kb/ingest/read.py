"""File -> Document: read txt, md, html, pdf and docx from the corpus folder with their metadata."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import re
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from kb import config
from kb.errors import CorpusError, IngestError
from kb.ingest.document import META_FIELDS, REPEALS_SEP, DocMeta, Document, blank_spans
from kb.ingest.formats import decode, html_to_text, looks_like_html, read_docx, split_front_matter
from kb.ingest.markdown import looks_like_markdown, render_markdown
from kb.ingest.pdfpages import label_runs
from kb.ingest.scans import scan_extra
from kb.ingest.sidecars import cap, cap_extra, check_inside, check_values, fit_json, read_sidecar
from kb.legal.meta import iso_date, legal_meta, repealed_titles

log = logging.getLogger(__name__)

# A doc_id is stored in 4,096-byte fields by Milvus (chunk ids add '#n'): longer paths are refused on both backends.
MAX_ID_BYTES = 4000

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
    return not (path.name in config.IGNORED_NAMES or path.name.endswith(config.IGNORED_SUFFIXES) or _hidden(path.name))


def _hidden(name: str) -> bool:
    """Dot files (.git, .DS_Store) are not documents; a name starting with '..' is walked so it is reported."""
    return name.startswith(".") and not name.startswith("..")


def walk_corpus(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (doc_id, path) for every candidate file under root, sorted, without leaving root.

    Raises:
        CorpusError: root does not exist or is not a folder.
    """
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist: create it or pass --corpus DIR")
    for path in sorted(root.rglob("*")):
        if not is_candidate(path) or any(_hidden(part) for part in path.relative_to(root).parts):
            continue
        if path.is_dir():
            continue
        yield path.relative_to(root).as_posix(), path


def check_file(root: Path, doc_id: str, path: Path) -> None:
    """Refuse, without opening it, a file a build must not read.

    Raises:
        IngestError: a link out of the corpus or a broken one, not a regular file (FIFO, device, socket),
            over the size limit, or a name that cannot be stored (not UTF-8, starting with '..', too long).
    """
    try:
        size = len(doc_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise IngestError(doc_id, "file name is not valid UTF-8; rename the file") from None
    if size > MAX_ID_BYTES:
        raise IngestError(doc_id, f"path is {size} bytes, over the {MAX_ID_BYTES}-byte limit; shorten it")
    if path.name.startswith(".."):
        raise IngestError(doc_id, "file name starts with '..' (reads as a parent folder); rename the file")
    check_inside(root, path)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a file"
        )
        raise IngestError(doc_id, f"not a regular file ({kind}); not read")
    if info.st_size > config.MAX_FILE_BYTES:
        raise IngestError(
            doc_id,
            f"file is {info.st_size // 2**20} MB, over the {config.MAX_FILE_BYTES // 2**20} MB "
            "limit (KB_MAX_FILE_BYTES)",
        )


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
    if not usable or _TIMER.active:  # an outer limit (kb.ingest.guard) already covers this code
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise IngestError(doc_id, f"reading took over {seconds:g} s (KB_FILE_TIMEOUT); skipped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    _TIMER.active = True
    try:
        yield
    finally:
        _TIMER.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Timer:
    active = False


_TIMER = _Timer()


def _read_document(root: Path, doc_id: str, overrides: dict[str, str] | None) -> Document:
    path = root / doc_id
    check_file(root, doc_id, path)
    suffix = path.suffix.lower()
    if suffix not in config.SUPPORTED_SUFFIXES:
        raise IngestError(
            doc_id, f"unsupported file type '{suffix or '(none)'}' (supported: {' '.join(config.SUPPORTED_SUFFIXES)})"
        )
    if path.stat().st_size == 0:
        raise IngestError(doc_id, "empty file")
    sha = file_sha256(path)
    extra: dict[str, str] = {}
    pages: tuple[tuple[int, int, int], ...] = ()
    furniture: tuple[tuple[int, int], ...] = ()
    header, title = "", None
    if suffix == ".pdf":
        from kb.ingest.pdf import read_pdf

        try:
            pdf = read_pdf(path)
        except IngestError as exc:
            raise IngestError(doc_id, exc.reason) from exc
        text, pages, encoding, fmt, furniture = pdf.text, pdf.pages, None, "pdf", pdf.furniture
        if pdf.repaired_words:
            extra["repaired_words"] = str(pdf.repaired_words)
        extra.update(scan_extra(pdf.scan))
        if any(label != str(n) for n, label in enumerate(pdf.printed, start=1) if label):
            extra["page_labels"] = label_runs(list(pdf.printed))  # printed page numbers, for citations
    elif suffix in config.IMAGE_SUFFIXES:
        from kb.ingest.pdf import pages_to_text
        from kb.ingest.scans import ocr_image_file

        try:
            scan = ocr_image_file(path)
            pdf = pages_to_text(path, [scan.pages[n].text if n in scan.pages else "" for n in scan.numbers], scan)
        except IngestError as exc:
            raise IngestError(doc_id, exc.reason) from exc
        text, pages, encoding, fmt = pdf.text, pdf.pages, None, "image"
        extra.update(scan_extra(scan))
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
            {
                cap(k, 100): cap_extra(str(v))
                for k, v in front.items()
                if isinstance(v, (str, int, float, datetime.date)) and str(v).strip()
            }
        )
        title = cap(str(front["title"])) if isinstance(front.get("title"), (str, int, float)) else None
        fmt = "html" if suffix in config.HTML_SUFFIXES else suffix.lstrip(".")
        if fmt == "html" or looks_like_html(body):
            body, html_title = html_to_text(body)
            title = title or html_title
            fmt = "html"
        elif suffix in (".md", ".markdown") or looks_like_markdown(body):
            body = render_markdown(body)  # escapes and emphasis never reach a passage; offsets index this text
        text = body
        header, text_title = _lawref_header(text)
        title = title or text_title
    if not text.strip():
        raise IngestError(doc_id, "no text after conversion")
    body = blank_spans(text, furniture)  # a running header is neither the title nor part of the metadata
    title = cap(title or _guess_title(body) or path.stem) or cap(path.stem)
    lang = detect_lang(body)
    values: dict[str, str | None] = dict.fromkeys(META_FIELDS)
    if lang == "zh":
        values.update(legal_meta(title, header, body))
        repeals = repealed_titles(body)
        if repeals:
            extra["repeals"] = REPEALS_SEP.join(repeals)
    else:
        values["level"] = "commentary"
        values["published"] = _front_matter_date(extra)
    side = dict(overrides or {})
    if "!error" in side:  # a metadata.csv row that failed kb.ingest.sidecars.check_values
        raise IngestError(doc_id, side["!error"])
    side = {**check_values(side, "metadata.csv"), **read_sidecar(path, root)}
    title = side.pop("title", "") or title
    lang = side.pop("lang", "") or lang
    values.update({k: v for k, v in side.items() if k in META_FIELDS})
    extra.update({k: v for k, v in side.items() if k not in META_FIELDS})
    values = {k: cap(v) if isinstance(v, str) else v for k, v in values.items()}
    fixed = {**values, "source_format": fmt, "encoding": encoding, "sha256": sha}
    meta = DocMeta(
        **values, source_format=fmt, encoding=encoding, sha256=sha, extra=tuple(sorted(fit_json(extra, fixed).items()))
    )
    return Document(
        doc_id=doc_id,
        path=str(path),
        title=title,
        lang=lang,
        text=text,
        meta=meta,
        page_spans=pages,
        furniture=furniture,
    )


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
