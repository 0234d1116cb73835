"""OCR accuracy and speed on the shipped scanned test pages (tests/data/ocr, made by scripts/make_ocr_pages.py).

For every page: character error rate against the text that was rendered (spaces and line breaks ignored), the
第X条 articles found on the OCR text against those found on the original, and seconds per page.

    python scripts/ocr_bench.py                      # the engine Policy KB uses (RapidOCR 3, PP-OCRv6 small)
    python scripts/ocr_bench.py --engine rapidocr-onnxruntime   # the older package, if installed, to compare
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

from kb.errors import KbError
from kb.ingest.ocr import read_image
from kb.ingest.scans import page_images
from kb.legal.structure import find_articles

ROOT = pathlib.Path(__file__).resolve().parents[1]
Reader = Callable[[np.ndarray, float], str]


def cer(got: str, want: str) -> float:
    a, b = "".join(got.split()), "".join(want.split())
    return Levenshtein.distance(a, b) / max(1, len(b))


def articles(text: str) -> set[int]:
    return {number for _, _, number in find_articles(text)}


def reader(engine: str) -> Reader:
    """Page pixels -> text for the engine named."""
    if engine == "rapidocr":
        return lambda pixels, dpi: read_image(pixels, dpi).text
    if engine == "rapidocr-onnxruntime":
        from rapidocr_onnxruntime import RapidOCR  # the 1.4 package: PP-OCRv4 with its line classifier

        old = RapidOCR()

        def read(pixels: np.ndarray, dpi: float) -> str:
            result, _ = old(pixels)
            return "\n".join(str(r[1]) for r in result or [])

        return read
    raise SystemExit(f"unknown engine {engine!r}: rapidocr or rapidocr-onnxruntime")


@dataclass(frozen=True)
class PageRow:
    """One scanned page measured."""

    file: str
    page: int
    dpi: int
    chars: int
    cer: float
    seconds: float


def measure(
    data: pathlib.Path, read: Reader, only: list[str] | None = None
) -> tuple[list[PageRow], dict[str, tuple[int, int]]]:
    """One row per scanned page of the test set; per file, the articles on the original and those found."""
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    truth = {name: entry for name, entry in truth.items() if not only or name in only}
    rows: list[PageRow] = []
    found: dict[str, tuple[int, int]] = {}
    for name, entry in truth.items():
        texts: list[tuple[str, str]] = []  # (original, OCR) of each page
        with page_images(data / name) as (_, image):
            for number, want in enumerate(entry["pages"], start=1):
                if want is None:  # a text-layer page of the mixed PDF
                    continue
                pixels, dpi = image(number)
                started = time.perf_counter()
                got = read(pixels, dpi)
                seconds = time.perf_counter() - started
                texts.append((want, got))
                chars = len("".join(want.split()))
                row = PageRow(name, number, entry["dpi"], chars, round(cer(got, want), 4), round(seconds, 2))
                rows.append(row)
                print(f"{name} p.{number}: CER {row.cer:.4f}, {seconds:.1f} s", file=sys.stderr)
        # Articles are found on a file's whole text: a number is accepted by its place in the sequence, so a
        # page that opens in the middle of a law cannot be judged alone.
        wanted = articles("\n".join(w for w, _ in texts))
        found[name] = (len(wanted), len(wanted & articles("\n".join(g for _, g in texts))))
    return rows, found


def summary(rows: list[PageRow], found: dict[str, tuple[int, int]]) -> dict[str, object]:
    """CER per file (character-weighted), article recall, pages a minute."""
    out: dict[str, object] = {}
    for file in dict.fromkeys(r.file for r in rows):
        sel = [r for r in rows if r.file == file]
        out[f"CER {file}"] = round(sum(r.cer * r.chars for r in sel) / sum(r.chars for r in sel), 4)
    for file, (total, hit) in found.items():
        if total:
            out[f"articles {file}"] = f"{hit}/{total}"
    out["articles, all files"] = f"{sum(h for _, h in found.values())}/{sum(t for t, _ in found.values())}"
    seconds = [r.seconds for r in rows if r.dpi == 300]
    out["pages/min (300-dpi scans)"] = round(60 / statistics.mean(seconds), 2) if seconds else None
    out["s/page median (all)"] = statistics.median(r.seconds for r in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "tests" / "data" / "ocr")
    parser.add_argument("--engine", default="rapidocr", help="rapidocr (default) or rapidocr-onnxruntime")
    parser.add_argument("--json", action="store_true", help="print every page's row as JSON too")
    parser.add_argument("files", nargs="*", help="only these files of the test set (default: all)")
    args = parser.parse_args(argv)
    try:
        rows, found = measure(args.data, reader(args.engine), args.files)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    print("| file | page | dpi | chars | CER | s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.file} | {r.page} | {r.dpi} | {r.chars} | {r.cer} | {r.seconds} |")
    for key, value in summary(rows, found).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
