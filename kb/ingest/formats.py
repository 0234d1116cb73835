"""Byte decoding and format conversion: raw files to plain text with light Markdown structure."""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

import yaml
from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from kb import config
from kb.errors import IngestError

log = logging.getLogger(__name__)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters other than tab / newline / carriage return / form feed: a decoded
# "text" with more than a trace of them is binary data that happened to decode.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode(data: bytes, path: str) -> tuple[str, str]:
    """Decode file bytes, detecting BOMs, UTF-8, GB18030/GBK and UTF-16 without a BOM.

    Returns:
        The text with line endings normalised to "\\n", and the encoding used.
    Raises:
        IngestError: the file is empty or is binary data.
    """
    if not data.strip():
        raise IngestError(path, "empty file")
    encoding = _guess_encoding(data)
    if encoding is None:
        raise IngestError(path, "binary data, not text (no text encoding fits)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:  # a BOM promised this encoding, then the bytes broke it (a lone surrogate)
        text = data.decode(encoding, errors="replace")
        if text.count("\ufffd") * 100 > len(text):
            raise IngestError(
                path, f"undecodable bytes: the file starts as {encoding} but is not valid {encoding}"
            ) from None
    if len(_CONTROL.findall(text[:100_000])) > max(8, len(text[:100_000]) // 200):
        raise IngestError(path, f"binary data, not text (decodes as {encoding} but is mostly control characters)")
    return normalise_newlines(text).lstrip("\ufeff"), encoding


def _guess_encoding(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    head = data[:4096]
    # UTF-16 without a BOM: every other byte of ASCII text is NUL.
    if head.count(b"\x00") > len(head) // 4:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        name = "utf-16-le" if odd > even else "utf-16-be"
        try:
            data.decode(name)
            return name
        except UnicodeDecodeError:
            return None
    for name in ("utf-8", "gb18030"):
        try:
            data.decode(name)
            return name
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data[:1_000_000]).best()
    if best is None or b"\x00" in data:
        return None
    try:
        data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return best.encoding


def normalise_newlines(text: str) -> str:
    """Turn CRLF and lone CR into LF so offsets mean the same on every platform."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.S)


def split_front_matter(text: str) -> tuple[dict[str, object], str]:
    """Split YAML front matter (Jekyll / Hugo style) from the body; bad YAML is left in the body."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    try:
        data = yaml.load(m.group(1), Loader=_FrontMatterLoader)
    except Exception as exc:  # YAMLError, and ValueError from a date like 2023-02-30 or 0000-01-01
        log.warning("front matter is not valid YAML (%s); kept as text", " ".join(str(exc).split())[:200])
        return {}, text
    if not isinstance(data, dict):
        return {}, text
    return {str(k): v for k, v in data.items()}, text[m.end() :]


# Aliases let a few hundred bytes of YAML expand into megabytes ("billion laughs"); front matter needs few.
MAX_YAML_ALIASES = 20


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that refuses front matter using more than MAX_YAML_ALIASES aliases."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"over {MAX_YAML_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


# Raw HTML inside Markdown or text (WordPress exports): a few real block tags are enough.
_HTML_HINT = re.compile(r"<(p|h[1-6]|div|ul|ol|li|table|figure|br|span|a)\b[^>]*>|<!--\s*/?wp:", re.I)


def looks_like_html(text: str) -> bool:
    """True when a text file carries enough raw HTML markup to need converting."""
    return len(_HTML_HINT.findall(text[:200_000])) >= 3


# Not <form>: ASP.NET pages wrap the whole body in one (its controls are dropped one by one). Not <embed> or
# <object>: the parser nests everything after an unclosed <embed> inside it, and <object> holds fallback text.
_DROP = {
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "iframe",
    "svg",
    "button",
    "template",
    "head",
    "meta",
    "link",
    "select",
    "input",
    "canvas",
    "textarea",
}
_BLOCK = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "figure",
    "figcaption",
    "dl",
    "dt",
    "dd",
    "body",
    "html",
    "hr",
    "address",
    "details",
    "summary",
    "thead",
    "tbody",
    "tfoot",
    "caption",
}
_HEADING = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")
# Deep nesting (hostile or generated HTML) must not exhaust Python's recursion limit.
_MAX_DEPTH = 200


def html_to_text(html: str) -> tuple[str, str | None]:
    """Convert HTML to paragraphs, with headings kept as Markdown '#' lines.

    Returns:
        The text, and the page's <title> (or None).
    """
    soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    blocks: list[str] = []
    buf: list[str] = []
    _walk(soup, blocks, buf, 0)
    _flush(buf, blocks)
    return "\n\n".join(blocks), title or None


def _flush(buf: list[str], blocks: list[str], prefix: str = "") -> None:
    lines = [_SPACES.sub(" ", part).strip() for part in "".join(buf).split("\n")]
    text = "\n".join(line for line in lines if line)
    buf.clear()
    if text:
        blocks.append(prefix + text)


def _walk(node: Tag, blocks: list[str], buf: list[str], depth: int) -> None:
    for child in node.children:
        if isinstance(child, Comment) or not isinstance(child, (NavigableString, Tag)):
            continue
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # skip CData, Doctype, ProcessingInstruction
                buf.append(str(child).replace("\n", " "))
            continue
        name = child.name
        if name in _DROP:
            continue
        if name == "br":
            buf.append("\n")
        elif name in _HEADING:
            _flush(buf, blocks)
            text = _SPACES.sub(" ", child.get_text(" ", strip=True))
            if text:
                blocks.append("#" * _HEADING[name] + " " + text)
        elif name in ("td", "th"):
            buf.append(" ")
            _walk_or_flat(child, blocks, buf, depth)
            buf.append(" ")
        elif name in _BLOCK:
            _flush(buf, blocks)
            _walk_or_flat(child, blocks, buf, depth)
            _flush(buf, blocks, "- " if name == "li" else "")
        else:
            _walk_or_flat(child, blocks, buf, depth)


def _walk_or_flat(node: Tag, blocks: list[str], buf: list[str], depth: int) -> None:
    if depth >= _MAX_DEPTH:
        buf.append(node.get_text(" "))
    else:
        _walk(node, blocks, buf, depth + 1)


def _check_zip(path: Path) -> None:
    """Refuse a .docx that unpacks to more than MAX_UNZIPPED_BYTES, before anything is unpacked.

    zipfile stops reading a member at its declared size, so the declared sizes bound what parsing can unpack.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise IngestError(path.name, f"corrupt .docx ({type(exc).__name__})") from exc
    if total > config.MAX_UNZIPPED_BYTES:
        raise IngestError(
            path.name,
            f".docx unpacks to {total // 2**20} MB, over the "
            f"{config.MAX_UNZIPPED_BYTES // 2**20} MB limit (KB_MAX_UNZIPPED_BYTES)",
        )


# File signatures of what most often hides behind a wrong extension.
_MAGIC = {
    b"%PDF": "a PDF",
    b"\xd0\xcf\x11\xe0": "an old Word (.doc) or Excel file",
    b"{\\rt": "RTF",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff\xe0": "a JPEG image",
    b"\xff\xd8\xff\xe1": "a JPEG image",
}
_RENAME = {"a PDF": ".pdf"}


def read_docx(path: Path) -> tuple[str, str | None]:
    """Read a .docx: paragraphs and tables in order, Heading styles as Markdown '#' lines.

    Returns:
        The text and the document's Title-style paragraph or core-properties title (or None).
    Raises:
        IngestError: the file is not a readable .docx.
    """
    import docx
    import docx.text.paragraph
    from docx.opc.exceptions import PackageNotFoundError

    with path.open("rb") as fh:
        head = fh.read(8)
    if not head.startswith(b"PK"):
        kind = _MAGIC.get(head[:4], "not a ZIP package")
        raise IngestError(
            path.name,
            f"not a .docx: the content is {kind}"
            + (f"; rename the file to {_RENAME[kind]}" if kind in _RENAME else ""),
        )
    _check_zip(path)
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise IngestError(path.name, f"not a readable .docx ({type(exc).__name__})") from exc
    except Exception as exc:  # zipfile.BadZipFile, lxml errors: any malformed package
        raise IngestError(path.name, f"corrupt .docx ({type(exc).__name__})") from exc
    blocks: list[str] = []
    title = (document.core_properties.title or "").strip() or None
    body = document.element.body
    if len(body) > config.MAX_DOCX_BLOCKS:
        raise IngestError(
            path.name,
            f".docx holds {len(body)} paragraphs and tables, over the "
            f"{config.MAX_DOCX_BLOCKS} limit (KB_MAX_DOCX_BLOCKS)",
        )
    for element in body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = docx.text.paragraph.Paragraph(element, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            if style == "Title":
                title = title or text
                blocks.append("# " + text)
            elif style.startswith("Heading"):
                level = int(style.split()[-1]) if style.split()[-1].isdigit() else 1
                blocks.append("#" * min(level + 1, 6) + " " + text)
            else:
                blocks.append(text)
        elif tag == "tbl":
            table = docx.table.Table(element, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    blocks.append(" | ".join(cells))
    return "\n\n".join(blocks), title
