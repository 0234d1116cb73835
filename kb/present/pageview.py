"""A PDF page or scanned image drawn with a passage's boxes marked: what the app's source view shows."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from PIL import Image, ImageDraw

from kb import config
from kb.ingest.boxes import Box

MARK = (255, 214, 0, 96)  # translucent yellow, so the text under it stays legible
EDGE = (230, 120, 0, 255)
VIEW_DPI = 110  # wide enough to read beside the text column, small enough to send quickly


def page_image(path: pathlib.Path, page: int, boxes: Sequence[Box], dpi: int = VIEW_DPI) -> Image.Image:
    """The page `page` (from 1) of a PDF or image file at `dpi`, with the boxes on that page marked."""
    base = _render(path, page, dpi)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    scale, pad = dpi / 72, 1.5  # boxes are in points

    for box in boxes:
        if box.page == page:
            rect = ((box.x0 - pad) * scale, (box.y0 - pad) * scale, (box.x1 + pad) * scale, (box.y1 + pad) * scale)
            draw.rectangle(rect, fill=MARK, outline=EDGE, width=2)
    return Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")


def _render(path: pathlib.Path, page: int, dpi: int) -> Image.Image:
    if path.suffix.lower() in config.IMAGE_SUFFIXES:
        from kb.ingest.scans import image_dpi

        with Image.open(path) as img:
            img.seek(page - 1)
            frame = img.convert("RGB")
        scale = dpi / image_dpi(path)
        return frame.resize((round(frame.width * scale), round(frame.height * scale)))
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return pdf[page - 1].render(scale=dpi / 72).to_pil().convert("RGB")
    finally:
        pdf.close()
