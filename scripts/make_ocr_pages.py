"""Render bundled texts to image-only (scanned) PDFs and images, with the exact text of each page beside them.

The OCR tests and `scripts/ocr_bench.py` read these: `python scripts/make_ocr_pages.py tests/data/ocr` writes the
shipped set; `--notice N` writes an N-page scanned notice for the speed figure.
Fonts: Noto CJK (Debian `fonts-noto-cjk`) for Chinese, DejaVu for English.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import re
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = pathlib.Path(__file__).resolve().parents[1]
CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
A4_PT = (595, 842)
MARGIN_PT = 60
FONT_PT = 12
LINE_GAP = 1.6


def statute_text(name: str, start: int, chars: int) -> str:
    """Plain statute text (headings and comments dropped) from a bundled corpus file."""
    raw = (ROOT / "corpus" / "zh" / name).read_text(encoding="utf-8")
    body = raw.split("<!-- INFO END -->", 1)[-1]
    paras = [p.strip().lstrip("#").strip() for p in body.split("\n") if p.strip()]
    return "\n".join(paras)[start : start + chars]


def article_text(name: str, chars: int) -> str:
    """The first paragraphs of a bundled English article, cut at a sentence end."""
    raw = (ROOT / "corpus" / "en" / name).read_text(encoding="utf-8").split("\n---\n", 1)[-1]
    plain = re.sub(r"<[^>]+>", "\n", raw)  # the bundled articles are HTML fragments
    paras = [re.sub(r"\s+", " ", p).strip() for p in plain.split("\n") if p.strip()]
    text = "\n".join(paras)[:chars]
    return text[: text.rfind(".") + 1]


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Lines that fit `width`: CJK breaks anywhere, Latin between words."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for token in re.findall(r"[A-Za-z0-9'’.,;:()\-%$]+ ?|.", para):
            if line and font.getlength(line + token.rstrip()) > width:
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line += token
        lines.append(line.rstrip())
    return lines


def render(text: str, dpi: int, lang: str) -> list[tuple[Image.Image, str]]:
    """Pages (grayscale image, the text on it) of `text` set in 12 pt at `dpi`."""
    scale = dpi / 72
    size = (round(A4_PT[0] * scale), round(A4_PT[1] * scale))
    font = ImageFont.truetype(CJK_FONT if lang == "zh" else LATIN_FONT, round(FONT_PT * scale))
    margin = round(MARGIN_PT * scale)
    step = round(FONT_PT * scale * LINE_GAP)
    per_page = (size[1] - 2 * margin) // step
    lines = _wrap(text, font, size[0] - 2 * margin)
    pages = []
    for first in range(0, len(lines), per_page):
        chunk = lines[first : first + per_page]
        img = Image.new("L", size, 255)
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(chunk):
            draw.text((margin, margin + i * step), line, font=font, fill=0)
        pages.append((img, "\n".join(chunk)))
    return pages


def photo_like(img: Image.Image) -> Image.Image:
    """A phone photo of a page: skewed 2.5 degrees on a grey desk, uneven light, blur, sensor noise."""
    skewed = img.rotate(2.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=150)
    w, h = skewed.size
    light = Image.linear_gradient("L").resize((w, h)).point(lambda v: 255 - v // 5)
    lit = Image.composite(skewed, light, Image.new("L", (w, h), 200))
    lit = lit.filter(ImageFilter.GaussianBlur(0.8))
    return Image.blend(lit, Image.effect_noise((w, h), 40), 0.08)


def save_pdf(path: pathlib.Path, images: list[Image.Image], dpi: int) -> None:
    """An image-only PDF, JPEG pages (what a scanner writes), at `dpi`."""
    first, *rest = images
    first.save(path, "PDF", resolution=dpi, save_all=True, append_images=rest, quality=40)


def write_set(out: pathlib.Path) -> dict[str, object]:
    """The shipped test set; returns the truth table written to truth.json."""
    out.mkdir(parents=True, exist_ok=True)
    zh = statute_text("zh01_ecommerce_law.txt", 0, 1400)
    en = article_text("en03_cbec_ecommerce-from-basic-principles-to-chinas-success-.txt", 2600)
    truth: dict[str, object] = {}
    for lang, text in (("zh", zh), ("en", en)):
        for dpi in (150, 300):
            pages = render(text, dpi, lang)
            name = f"{lang}_scan_{dpi}.pdf"
            save_pdf(out / name, [img for img, _ in pages], dpi)
            truth[name] = {"lang": lang, "dpi": dpi, "pages": [t for _, t in pages]}
    zh_page, zh_truth = render(zh, 200, "zh")[0]
    en_page, en_truth = render(en, 200, "en")[0]
    # A page fed sideways (90), one upside down (180), one turned the other way (270).
    turned = [zh_page.rotate(90, expand=True), en_page.rotate(180), zh_page.rotate(270, expand=True)]
    save_pdf(out / "rotated.pdf", turned, 200)
    truth["rotated.pdf"] = {"lang": "mixed", "dpi": 200, "pages": [zh_truth, en_truth, zh_truth]}
    photo = photo_like(zh_page)
    photo.save(out / "photo_zh.jpg", quality=70)
    truth["photo_zh.jpg"] = {"lang": "zh", "dpi": 200, "pages": [zh_truth]}
    en_page.save(out / "en_page.png", optimize=True)
    truth["en_page.png"] = {"lang": "en", "dpi": 200, "pages": [en_truth]}
    en_page.save(out / "en_page.tiff", compression="tiff_lzw")
    truth["en_page.tiff"] = {"lang": "en", "dpi": 200, "pages": [en_truth]}
    truth["mixed.pdf"] = _mixed(out / "mixed.pdf", zh_page, zh_truth)
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return truth


def _mixed(path: pathlib.Path, scan: Image.Image, scan_truth: str) -> dict[str, object]:
    """Page 1 of a bundled text-layer PDF, then a scanned page: one file read page by page."""
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_page(pypdf.PdfReader(ROOT / "corpus" / "pdf" / "pdf02_cbec_journal_foreword.pdf").pages[0])
    buf = io.BytesIO()
    scan.save(buf, "PDF", resolution=200, quality=60)
    writer.add_page(pypdf.PdfReader(buf).pages[0])
    with open(path, "wb") as fh:
        writer.write(fh)
    return {"lang": "mixed", "dpi": 200, "pages": [None, scan_truth]}


def write_notice(out: pathlib.Path, pages: int) -> pathlib.Path:
    """An N-page scanned notice at 300 dpi made from bundled statutes (for the speed figure)."""
    texts = [statute_text(p.name, 0, 100_000) for p in sorted((ROOT / "corpus" / "zh").glob("zh*.txt"))]
    images = [img for img, _ in render("\n".join(texts), 300, "zh")[:pages]]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"notice_{pages}p_300dpi.pdf"
    save_pdf(path, images, 300)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=pathlib.Path, help="folder to write into")
    parser.add_argument("--notice", type=int, metavar="N", help="write an N-page scanned notice instead")
    args = parser.parse_args(argv)
    if args.notice:
        print(write_notice(args.out, args.notice))
        return 0
    truth = write_set(args.out)
    print(f"{len(truth)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
