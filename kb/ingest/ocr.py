"""Page image -> lines of text with boxes and confidences: RapidOCR (PP-OCRv6 small, ONNX, CPU, models in the wheel).

Why RapidOCR 3 and not its text-line classifier: the classifier turns some upright English lines upside down
(measured: "sustainable development and …" read as "suusc on e u on"), so lines are read as detected and the
page's orientation (0/90/180/270) is decided once per page from how a sample of its lines reads.
Why 200 dpi: PP-OCR's detector and recogniser work on ~30-px text; 300-dpi pages read no better (docs/BENCHMARKS.md)
and take twice as long, so pages are rendered, or images scaled, to OCR_DPI before reading.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from kb.errors import IngestError

logger = logging.getLogger(__name__)

ENGINE = "rapidocr-3.10.0/PP-OCRv6-small"  # part of the cache key: another engine reads again
OCR_DPI = 200
PT_PER_INCH = 72
# A page is taken as upright without trying other turns when its lines are wide and read this confidently.
UPRIGHT_SCORE = 0.85
SAMPLE_LINES = 8  # lines read in each orientation to decide a page's turn
MIN_CONFIDENCE = 0.5  # lines read less surely than this are noise (stains, stamps, bleed-through)
# A line ending within 1.5 line heights of the text block's right edge is full: its sentence may run on.
FULL_LINE_SLACK = 1.5
SENTENCE_ENDS = "。！？；："
# A line opening an article, section or chapter starts one even when the line before lost its full stop.
_HEADING = re.compile(r"第[一二三四五六七八九十百千零〇两\d]+[条章节编款]")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3001\uff0c\uff08\uff09\u300a\u300b\u201c\u201d]")


@dataclass(frozen=True)
class OcrLine:
    """One line read from a page: its text, box (x0, y0, x1, y1 in PDF points, origin top left) and confidence."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class OcrPage:
    """What OCR read on one page: lines in reading order and the turn (degrees clockwise) the page needed."""

    lines: tuple[OcrLine, ...]
    rotation: int
    width: float  # the page in points, as displayed
    height: float

    @property
    def text(self) -> str:
        """The page's text: its lines in reading order, a Chinese line that runs on joined to the next.

        A full-width line (reaching the right edge of the text block) whose last and the next line's first
        characters are CJK continues the sentence: a line break there would split words for BM25 and jieba.
        Short lines (headings, a paragraph's last line), English lines and a line opening 第X条 keep their break.
        """
        right = max((line.box[2] for line in self.lines), default=0.0)
        out: list[str] = []
        runs_on = False
        for line in self.lines:
            if out and runs_on and _CJK.match(line.text) and not _HEADING.match(line.text):
                out[-1] += line.text
            else:
                out.append(line.text)
            full = line.box[2] >= right - FULL_LINE_SLACK * (line.box[3] - line.box[1])
            runs_on = full and bool(_CJK.match(line.text[-1:])) and line.text[-1] not in SENTENCE_ENDS
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape kept in the OCR cache."""
        lines = [{"text": ln.text, "box": list(ln.box), "confidence": ln.confidence} for ln in self.lines]
        return {"lines": lines, "rotation": self.rotation, "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OcrPage:
        """Inverse of to_dict."""
        lines = tuple(
            OcrLine(str(ln["text"]), tuple(float(v) for v in ln["box"]), float(ln["confidence"]))  # type: ignore[arg-type]
            for ln in data["lines"]
        )
        return cls(lines, int(data["rotation"]), float(data["width"]), float(data["height"]))


def read_image(pixels: np.ndarray, dpi: float) -> OcrPage:
    """Read one page image (RGB, H x W x 3) scanned at `dpi`.

    Raises:
        IngestError: the OCR engine is not installed (the message names the package).
    """
    engine = _engine()
    height, width = pixels.shape[:2]
    lines, turn = _read_turned(engine, pixels)
    scale = PT_PER_INCH / dpi
    out = []
    for text, quad, score in lines:
        x0, y0, x1, y1 = _unturn(quad, turn, width, height)
        out.append(OcrLine(text, (x0 * scale, y0 * scale, x1 * scale, y1 * scale), round(score, 4)))
    return OcrPage(tuple(out), (360 - 90 * turn) % 360, width * scale, height * scale)


Line = tuple[str, np.ndarray, float]


def _read_turned(engine: Any, pixels: np.ndarray) -> tuple[list[Line], int]:
    """Lines of the page read in its best orientation, and that orientation (np.rot90 turns)."""
    lines = _run(engine, pixels)
    if lines and _wide(lines) and _mean_score(lines) >= UPRIGHT_SCORE:
        return lines, 0
    boxes = [quad for _, quad, _ in lines] or _detect(engine, pixels)
    if not boxes:
        return lines, 0
    sample = sorted(boxes, key=lambda q: -_extent(q)[0] * _extent(q)[1])[:SAMPLE_LINES]
    crops = [_crop(pixels, quad) for quad in sample]
    scores = {turn: _crop_score(engine, crops, turn) for turn in range(4)}
    best = max(scores, key=lambda t: scores[t])
    logger.debug("orientation scores %s -> %d quarter turns", scores, best)
    if best == 0:
        return lines, 0
    turned = _run(engine, np.ascontiguousarray(np.rot90(pixels, best)))
    return (turned, best) if _mean_score(turned) > _mean_score(lines) else (lines, 0)


def _run(engine: Any, pixels: np.ndarray) -> list[Line]:
    result = engine(pixels, use_det=True, use_cls=False, use_rec=True)  # the engine keeps flags: pass all
    if result.boxes is None or result.txts is None:
        return []
    found = zip(result.txts, result.boxes, result.scores, strict=True)
    return [(str(t), np.asarray(b, dtype=float), float(s)) for t, b, s in found if t.strip() and s >= MIN_CONFIDENCE]


def _detect(engine: Any, pixels: np.ndarray) -> list[np.ndarray]:
    result = engine(pixels, use_det=True, use_cls=False, use_rec=False)
    return [] if result.boxes is None else [np.asarray(b, dtype=float) for b in result.boxes]


def _crop_score(engine: Any, crops: list[np.ndarray], turn: int) -> float:
    """Mean confidence of the sample crops read after `turn` quarter turns (counter-clockwise)."""
    total = 0.0
    for crop in crops:
        result = engine(np.ascontiguousarray(np.rot90(crop, turn)), use_det=False, use_cls=False, use_rec=True)
        total += float(result.scores[0]) if result.scores else 0.0
    return total / max(1, len(crops))


def _crop(pixels: np.ndarray, quad: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    return pixels[max(0, y0) : y1, max(0, x0) : x1]


def _extent(quad: np.ndarray) -> tuple[float, float]:
    span = quad.max(axis=0) - quad.min(axis=0)
    return float(span[0]), float(span[1])


def _wide(lines: list[Line]) -> bool:
    """Most text is in lines wider than tall (an upright or upside-down page, not a sideways one)."""
    wide = sum(len(t) for t, quad, _ in lines if _extent(quad)[0] >= _extent(quad)[1])
    return wide * 2 > sum(len(t) for t, _, _ in lines)


def _mean_score(lines: list[Line]) -> float:
    """Confidence weighted by characters: a page read well scores near 1."""
    chars = sum(len(t) for t, _, _ in lines)
    return sum(len(t) * s for t, _, s in lines) / chars if chars else 0.0


def _unturn(quad: np.ndarray, turn: int, width: int, height: int) -> tuple[float, float, float, float]:
    """A box found on the image turned `turn` quarter turns (np.rot90), in the unturned image's pixels."""
    xs, ys = quad[:, 0], quad[:, 1]
    if turn == 1:  # rotated[i, j] = original[j, W-1-i]
        xs, ys = width - ys, xs
    elif turn == 2:
        xs, ys = width - xs, height - ys
    elif turn == 3:  # rotated[i, j] = original[H-1-j, i]
        xs, ys = ys, height - xs
    return (
        max(0.0, float(xs.min())),
        max(0.0, float(ys.min())),
        min(float(width), float(xs.max())),
        min(float(height), float(ys.max())),
    )


@cache
def _engine() -> Any:
    """The OCR engine, loaded once (~1 s); its models come in the wheel, nothing is downloaded."""
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise IngestError(
            "OCR", "the OCR engine is not installed: pip install -e '.[ocr]' (rapidocr, onnxruntime)"
        ) from exc
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return RapidOCR(params={"Global.log_level": "warning", "Global.use_cls": False})
