"""Scanned pages -> OCR text: PDF pages without a text layer and image files, cached by page content hash.

A page is rendered (pypdfium2) or loaded (Pillow) at OCR_DPI, hashed, and looked up in the OCR cache under the KB
cache dir before it is read, so a rebuild never OCRs a page again. Each file has a page limit (KB_OCR_MAX_PAGES)
and a time limit (KB_OCR_TIMEOUT); a page past either, or one the engine cannot read, is skipped with a one-line
reason and the rest of the file lands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kb import config
from kb.errors import IngestError
from kb.ingest.ocr import ENGINE, OCR_DPI, PT_PER_INCH, OcrPage, read_image

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_DPI = 200.0  # an image file without a resolution tag is taken as a 200-dpi scan
# A page whose text layer holds fewer characters is a scan (a stamped page number is not a text layer).
MIN_LAYER_CHARS = 5
MAX_RENDER_PX = 4000  # longest side of a page rendered for OCR (A4 at 200 dpi is 2,339)
# A page where fewer than 1 in 5,000 sampled pixels is darker than mid-grey holds no text (a blank verso).
BLANK_LEVEL, BLANK_SHARE = 128, 0.0002
# Page number -> (RGB pixels, their dpi): how one page becomes an image.
_PageImage = Callable[[int], tuple[np.ndarray, float]]


@dataclass(frozen=True)
class ScanResult:
    """Pages read by OCR (page number from 1 -> page) and pages skipped (page number -> reason)."""

    pages: dict[int, OcrPage] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)

    @property
    def numbers(self) -> list[int]:
        """Every page OCR was asked to read, in order."""
        return sorted({*self.pages, *self.skipped})


def scan_extra(scan: ScanResult) -> dict[str, str]:
    """What a Document's meta.extra records of OCR: the pages read (`ocr_pages`), their confidence weighted by
    characters (`ocr_confidence`), and the pages skipped and why (`ocr_skipped`)."""
    out = {}
    if scan.pages:
        out["ocr_pages"] = ",".join(map(str, sorted(scan.pages)))
        lines = [line for page in scan.pages.values() for line in page.lines]
        chars = sum(len(line.text) for line in lines)
        out["ocr_confidence"] = f"{sum(line.confidence * len(line.text) for line in lines) / max(1, chars):.3f}"
    if scan.skipped:
        out["ocr_skipped"] = " | ".join(f"p.{n}: {why}" for n, why in sorted(scan.skipped.items()))
    return out


def ocr_page_numbers(extra: dict[str, str]) -> frozenset[int]:
    """The pages of a document that were read by OCR, from its meta.extra."""
    return frozenset(int(n) for n in extra.get("ocr_pages", "").split(",") if n.strip().isdigit())


def passage_source(extra: dict[str, str], page: int | None, page_end: int | None) -> str | None:
    """`ocr` when a passage lies on a page read by OCR, `text` on a text-layer page, None without pages."""
    if page is None:
        return None
    ocr = ocr_page_numbers(extra)
    return "ocr" if any(n in ocr for n in range(page, (page_end or page) + 1)) else "text"


def ocr_missing_pages(path: pathlib.Path, raws: list[str]) -> tuple[list[str], ScanResult]:
    """Page texts with those of pages without a text layer read by OCR; a page OCR cannot read keeps its own."""
    numbers = [n for n, raw in enumerate(raws, start=1) if len("".join(raw.split())) < MIN_LAYER_CHARS]
    if not numbers:
        return raws, ScanResult()
    logger.info("%s: %d of %d pages have no text layer: OCR", path.name, len(numbers), len(raws))
    scan = ocr_pdf_pages(path, numbers)
    return [scan.pages[n].text if n in scan.pages else raw for n, raw in enumerate(raws, start=1)], scan


def ocr_pdf_pages(path: pathlib.Path, numbers: Sequence[int]) -> ScanResult:
    """OCR the given pages (numbers from 1) of a PDF, within the file's page and time limits."""
    with page_images(path) as (_, image):
        return _ocr_pages(path, numbers, image)


def ocr_image_file(path: pathlib.Path) -> ScanResult:
    """OCR every frame of an image file (a multi-page TIFF has several)."""
    with page_images(path) as (count, image):
        return _ocr_pages(path, range(1, count + 1), image)


def ocr_page(path: pathlib.Path, number: int) -> OcrPage | None:
    """One page of a PDF or image as OCR reads it: from the cache when it was read before (the page's boxes)."""
    with page_images(path) as (count, image):
        return _page(image, number)[0] if 1 <= number <= count else None


@contextlib.contextmanager
def page_images(path: pathlib.Path) -> Iterator[tuple[int, _PageImage]]:
    """The number of pages of a PDF or image file, and how to turn one into pixels for OCR."""
    if path.suffix.lower() in config.IMAGE_SUFFIXES:
        yield _image_frames(path)
        return
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise IngestError(str(path), f"corrupt PDF: pdfium cannot open it ({exc})") from exc

    def image(number: int) -> tuple[np.ndarray, float]:
        page = pdf[number - 1]
        # A poster-sized (or hostile) page would render to gigabytes: the engine reads 2,000 px anyway.
        dpi = min(float(OCR_DPI), MAX_RENDER_PX * PT_PER_INCH / max(page.get_width(), page.get_height(), 1.0))
        bitmap = page.render(scale=dpi / PT_PER_INCH)
        return np.asarray(bitmap.to_pil().convert("RGB")), dpi

    try:
        yield len(pdf), image
    finally:
        pdf.close()


def image_dpi(path: pathlib.Path) -> float:
    """The resolution an image file was scanned at (its dpi tag, else DEFAULT_IMAGE_DPI)."""
    from PIL import Image

    with Image.open(path) as img:
        return _dpi_of(img)


def _dpi_of(img: Any) -> float:
    dpi = img.info.get("dpi") or (DEFAULT_IMAGE_DPI,)
    return float(dpi[0]) if float(dpi[0]) >= 30 else DEFAULT_IMAGE_DPI  # 1 or 72 "dpi" tags are no scan's


def _image_frames(path: pathlib.Path) -> tuple[int, _PageImage]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        img = Image.open(path)
        frames = [frame.copy() for frame in ImageSequence.Iterator(img)]
    except (UnidentifiedImageError, OSError) as exc:
        raise IngestError(str(path), f"cannot read image: {str(exc).replace(str(path), path.name)}") from exc
    dpi = _dpi_of(img)

    def image(number: int) -> tuple[np.ndarray, float]:
        frame = frames[number - 1].convert("RGB")
        if dpi > OCR_DPI * 1.2:  # a 300-dpi scan reads as well at 200 dpi, in half the time
            size = (round(frame.width * OCR_DPI / dpi), round(frame.height * OCR_DPI / dpi))
            return np.asarray(frame.resize(size)), float(OCR_DPI)
        return np.asarray(frame), dpi

    return len(frames), image


def _ocr_pages(path: pathlib.Path, numbers: Sequence[int], image: _PageImage) -> ScanResult:
    """Read pages one by one: progress per page, the limits, the cache, one line per skipped page."""
    max_pages, limit_s = config.OCR_MAX_PAGES, config.OCR_TIMEOUT_S
    pages: dict[int, OcrPage] = {}
    skipped: dict[int, str] = {}
    started = time.monotonic()
    for done, number in enumerate(numbers):
        if done >= max_pages:
            skipped[number] = f"over the {max_pages}-page OCR limit (KB_OCR_MAX_PAGES)"
        elif time.monotonic() - started > limit_s:
            skipped[number] = f"OCR of this file passed {limit_s:g} s (KB_OCR_TIMEOUT)"
        else:
            try:
                page, cached = _page(image, number)
            except IngestError:
                raise
            except Exception as exc:  # the engine or renderer failed on this page only
                skipped[number] = f"OCR failed: {type(exc).__name__}: {str(exc)[:160]}"
            else:
                if page is None:  # a blank page (a book's empty versos): nothing to read, nothing to report
                    logger.debug("%s: page %d is blank", path.name, number)
                    continue
                if page.lines:
                    pages[number] = page
                else:
                    skipped[number] = "OCR found no text on the page"
                how = "cached" if cached else f"{time.monotonic() - started:.1f} s"
                logger.info("%s: OCR page %d (%d of %d, %s)", path.name, number, done + 1, len(numbers), how)
        if number in skipped:
            logger.warning("%s: page %d skipped: %s", path.name, number, skipped[number])
    return ScanResult(pages, skipped)


def _page(image: _PageImage, number: int) -> tuple[OcrPage | None, bool]:
    """One page read by OCR or taken from the cache (True when it came from the cache); None for a blank page."""
    pixels, dpi = image(number)
    if is_blank(pixels):
        return None, False
    key = page_key(pixels, dpi)
    hit = cache_get(key)
    if hit is not None:
        return hit, True
    page = read_image(pixels, dpi)
    cache_put(key, page)
    return page, False


def is_blank(pixels: np.ndarray) -> bool:
    """A page with (almost) no dark pixel: an empty page of a book, not worth an OCR pass."""
    sample = pixels[::4, ::4].min(axis=-1) if pixels.ndim == 3 else pixels[::4, ::4]
    return bool((sample < BLANK_LEVEL).mean() < BLANK_SHARE)


def page_key(pixels: np.ndarray, dpi: float) -> str:
    """The page's content hash: its pixels, their resolution and the OCR engine."""
    digest = hashlib.sha256(f"{ENGINE}|{dpi:g}|{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _cache_path(key: str) -> pathlib.Path:
    return config.CACHE_DIR / "ocr" / key[:2] / f"{key}.json"


def cache_get(key: str) -> OcrPage | None:
    """A cached page, or None (missing or unreadable: it is read again)."""
    try:
        return OcrPage.from_dict(json.loads(_cache_path(key).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cache_put(key: str, page: OcrPage) -> None:
    """Store a page atomically; a cache that cannot be written only costs a re-read later."""
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as fh:
            json.dump(page.to_dict(), fh, ensure_ascii=False)
        os.replace(fh.name, path)
    except OSError as exc:
        logger.warning("OCR cache %s not written (%s)", path.parent, exc)
