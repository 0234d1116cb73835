"""Character offsets -> boxes on the page: where a passage of a PDF (text layer or OCR) or a scanned image lies.

Each page's glyphs come from PDFium's text page (one box per character, exact) or from the OCR lines (a line's box
shared out among its characters by width). The document's page text (cleaned: joined hyphens, split run-on words)
is aligned to the glyphs on non-space characters, so every character of a passage that the page shows gets a box;
the boxes of a passage are merged into one rectangle per line it spans.
Boxes are in PDF points with the origin at the top left of the page as displayed (y grows downwards).
"""

from __future__ import annotations

import difflib
import logging
import pathlib
import unicodedata
from dataclasses import dataclass

from kb import config
from kb.ingest.document import Document
from kb.ingest.ocr import OcrPage
from kb.ingest.read import file_sha256
from kb.ingest.scans import ocr_page, ocr_page_numbers

logger = logging.getLogger(__name__)

Rect = tuple[float, float, float, float]
# Latin letters, digits and punctuation are about half as wide as a CJK character in OCR'd lines.
_NARROW = 0.55


@dataclass(frozen=True)
class Box:
    """A rectangle on a page: page number from 1, x0 < x1 and y0 < y1 in PDF points from the top left."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float

    def to_dict(self) -> dict[str, float | int]:
        """The JSON shape (`--json`, the HTTP API)."""
        return {"page": self.page, "x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


@dataclass(frozen=True)
class Glyph:
    """One character shown on a page and its box."""

    char: str
    rect: Rect


def passage_boxes(doc: Document, start: int, end: int) -> list[Box]:
    """The boxes of doc.text[start:end] on its pages, one per line it spans ([] for a document without pages).

    Args:
        doc: a PDF or image Document (its `path` must still point at the file).
        start, end: character offsets into doc.text, as a Chunk or a quote match gives them.
    """
    path = source_file(doc) if doc.page_spans else None
    if path is None:
        return []
    ocr_pages = ocr_page_numbers(dict(doc.meta.extra))
    boxes: list[Box] = []
    for number, p_start, p_end in doc.page_spans:
        lo, hi = max(start, p_start), min(end, p_end)
        if lo >= hi:
            continue
        glyphs = page_glyphs(path, number, number in ocr_pages)
        rects = [glyphs[i].rect for i in align(doc.text[p_start:p_end], glyphs, lo - p_start, hi - p_start)]
        boxes += [Box(number, *(round(v, 2) for v in rect)) for rect in line_rects(rects)]
    return boxes


def source_file(doc: Document, corpus: pathlib.Path | None = None) -> pathlib.Path | None:
    """The file a Document was read from, if it is still there unchanged.

    An index records the path it was built from; a copied index (the shipped one) finds its file by doc_id
    under the corpus folder instead. A file whose hash changed would put boxes in the wrong places: None.
    """
    for path in (pathlib.Path(doc.path), (corpus or config.DEFAULT_CORPUS) / doc.doc_id):
        if path.is_file():
            if doc.meta.sha256 and file_sha256(path) != doc.meta.sha256:
                logger.warning("%s changed since it was indexed: no boxes until the index is rebuilt", path)
                return None
            return path
    return None


def page_glyphs(path: pathlib.Path, number: int, ocr: bool) -> list[Glyph]:
    """The glyphs of one page: OCR lines for a scanned page or image, else the PDF's text layer."""
    if ocr or path.suffix.lower() in config.IMAGE_SUFFIXES:
        page = ocr_page(path, number)
        return ocr_glyphs(page) if page else []
    return text_layer_glyphs(path, number)


def text_layer_glyphs(path: pathlib.Path, number: int) -> list[Glyph]:
    """Every character PDFium finds on a page with its tight box."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[number - 1]
        height = page.get_height()
        text = page.get_textpage()
        glyphs = []
        for i in range(text.count_chars()):
            code = pdfium_c.FPDFText_GetUnicode(text.raw, i)
            if code in (0, 0xFFFE, 0xFFFF) or chr(code).isspace():
                continue
            left, bottom, right, top = text.get_charbox(i, loose=True)  # line height, not ink
            glyphs.append(Glyph(chr(code), (left, height - top, right, height - bottom)))
        return glyphs
    finally:
        pdf.close()


def ocr_glyphs(page: OcrPage) -> list[Glyph]:
    """The characters of OCR lines, each line's box shared out by character width."""
    glyphs = []
    for line in page.lines:
        x0, y0, x1, y1 = line.box
        chars = list(line.text)
        if y1 - y0 > (x1 - x0) * 1.5 and len(chars) > 1:  # a vertical line (a column of CJK)
            step = (y1 - y0) / len(chars)
            glyphs += [Glyph(c, (x0, y0 + i * step, x1, y0 + (i + 1) * step)) for i, c in enumerate(chars)]
            continue
        widths = [1.0 if unicodedata.east_asian_width(c) in "WF" else _NARROW for c in chars]
        unit = (x1 - x0) / max(sum(widths), 1e-9)
        x = x0
        for char, w in zip(chars, widths, strict=True):
            if not char.isspace():
                glyphs.append(Glyph(char, (x, y0, x + w * unit, y1)))
            x += w * unit
    return glyphs


def align(page_text: str, glyphs: list[Glyph], start: int, end: int) -> list[int]:
    """The indices of the glyphs that page_text[start:end] aligns to, in text order."""
    ours = [(i, _key(c)) for i, c in enumerate(page_text) if not c.isspace()]
    theirs = [_key(g.char) for g in glyphs]
    matcher = difflib.SequenceMatcher(None, [k for _, k in ours], theirs, autojunk=False)
    found = []
    for a, b, size in matcher.get_matching_blocks():
        found += [b + k for k in range(size) if start <= ours[a + k][0] < end]
    return found


def _key(char: str) -> str:
    """A character as both sides compare it: full-width forms, ligatures and case folded."""
    return unicodedata.normalize("NFKC", char).casefold()[:1]


def line_rects(rects: list[Rect]) -> list[Rect]:
    """Glyph rects in text order merged into one rect per line (a new line where a glyph leaves the band)."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in rects:
        mid = (y0 + y1) / 2
        last = lines[-1] if lines else None
        if last is not None and last[1] <= mid <= last[3] and x0 >= last[0] - (y1 - y0):
            last[0], last[1], last[2], last[3] = min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)
        else:
            lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]
