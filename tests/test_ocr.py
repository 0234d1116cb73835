"""OCR at ingest: scanned pages and images read with boxes and confidences, turned pages, mixed PDFs, the cache,
the page and time limits. The engine runs on three small pages here; scripts/ocr_bench.py measures the full set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rapidfuzz.distance import Levenshtein

from kb import config
from kb.chunk import chunk_document
from kb.embed.models import HashingEmbedder
from kb.errors import IngestError
from kb.index.build import build
from kb.ingest import ocr, scans
from kb.ingest.ocr import OcrLine, OcrPage, read_image
from kb.ingest.read import read_document
from kb.ingest.scans import ocr_image_file, ocr_pdf_pages, passage_source
from kb.quote.check import QuoteChecker
from kb.search.searcher import Searcher

OCR = Path(__file__).parent / "data" / "ocr"
TRUTH = json.loads((OCR / "truth.json").read_text(encoding="utf-8"))


def cer(got: str, want: str) -> float:
    """Character error rate, spaces and line breaks ignored (OCR lines need not break where the page did)."""
    a, b = "".join(got.split()), "".join(want.split())
    return Levenshtein.distance(a, b) / len(b)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OCR cache for the tests that run the real engine: a page is read once in this module."""
    return tmp_path_factory.mktemp("ocr-cache")


@pytest.fixture(autouse=True)
def cache_dir(
    tmp_path: Path, shared_cache: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The real engine's tests share a cache; the tests with a fake engine get their own (fakes never leak)."""
    path = shared_cache if "fake" not in request.node.name else tmp_path / "cache"
    monkeypatch.setattr(config, "CACHE_DIR", path)
    return path


def test_image_file_read_with_boxes_and_confidence(tmp_path: Path) -> None:
    shutil.copy(OCR / "en_page.png", tmp_path / "en_page.png")
    doc = read_document(tmp_path, "en_page.png")
    assert cer(doc.text, TRUTH["en_page.png"]["pages"][0]) <= 0.02
    assert doc.meta.source_format == "image" and dict(doc.meta.extra)["ocr_pages"] == "1"
    assert doc.page_spans == ((1, 0, len(doc.text)),)
    page = ocr_image_file(tmp_path / "en_page.png").pages[1]  # from the cache now
    assert page.lines[0].text.startswith("In the realm of ecommerce")
    tops = [line.box[1] for line in page.lines]
    assert tops == sorted(tops)  # reading order: top to bottom
    for line in page.lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
        assert 0.5 <= line.confidence <= 1
    assert {passage_source(dict(doc.meta.extra), c.page, c.page_end) for c in chunk_document(doc)} == {"ocr"}


def test_mixed_pdf_reads_page_by_page() -> None:
    """Page 1 has a text layer (read as text), page 2 is a scan (read by OCR); both land, each on its page."""
    doc = read_document(OCR, "mixed.pdf")
    extra = dict(doc.meta.extra)
    assert extra["ocr_pages"] == "2"
    (_, s1, e1), (_, s2, e2) = doc.page_spans
    assert "Foreword" in doc.text[s1:e1]
    assert cer(doc.text[s2:e2], TRUTH["mixed.pdf"]["pages"][1]) <= 0.02
    sources = {(c.page, c.page_end): passage_source(extra, c.page, c.page_end) for c in chunk_document(doc)}
    assert sources[1, 1] == "text" and sources[2, 2] == "ocr"
    articles = {c.article for c in chunk_document(doc) if c.page == 2}
    assert {"第一条", "第二条", "第三条"} <= articles


def test_scanned_statute_answers_with_article_page_and_quote(tmp_path: Path) -> None:
    """A question answered from a scanned statute cites the right article and page; a sentence quoted from it
    is found verbatim (after normalisation, as OCR may differ in punctuation width)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(OCR / "mixed.pdf", corpus / "scanned_law.pdf")
    build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    top = Searcher(tmp_path / "index").search("中华人民共和国境内的电子商务活动适用哪部法律？", 3)[0]
    assert (top.chunk.article, top.chunk.page) == ("第二条", 2)
    assert top.to_dict()["source"] == "ocr"
    sentence = "本法所称电子商务，是指通过互联网等信息网络销售商品或者提供服务的经营活动。"
    report = QuoteChecker(tmp_path / "index").check(sentence)
    assert report.verdict in ("verbatim", "normalized"), report.to_dict()
    assert report.matches[0].page == 2


def test_sideways_page_is_turned_and_boxes_map_back() -> None:
    """A strip of text fed in sideways (90 degrees) reads as well as upright; its boxes stand on the sideways page."""
    strip = Image.open(OCR / "en_page.png").convert("RGB").crop((0, 0, 1653, 360))
    upright = read_image(np.asarray(strip), 200)
    sideways = read_image(np.asarray(strip.rotate(90, expand=True)), 200)
    assert upright.rotation == 0 and sideways.rotation == 90
    assert cer(sideways.text, upright.text) <= 0.01
    assert (sideways.width, sideways.height) == (upright.height, upright.width)
    for a, b in zip(upright.lines, sideways.lines, strict=True):
        # PIL's rotate(90) turns counter-clockwise: (x, y) on the strip lands on (y, W - x) on the page.
        ax0, ay0, ax1, ay1 = a.box
        assert b.box == pytest.approx((ay0, upright.width - ax1, ay1, upright.width - ax0), abs=6)


def test_unturn_maps_each_quarter_turn_back() -> None:
    w, h = 100, 60
    quad = np.array([[10, 20], [30, 20], [30, 25], [10, 25]], dtype=float)
    img = np.zeros((h, w))
    img[20:25, 10:30] = 1
    for turn in range(4):
        turned = np.rot90(img, turn)
        ys, xs = np.nonzero(turned)
        found = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], dtype=float)
        assert ocr._unturn(found, turn, w, h) == (10, 20, 30, 25)
    assert ocr._unturn(quad, 0, w, h) == (10, 20, 30, 25)


def fake_read(calls: list[int]) -> object:
    def read(pixels: np.ndarray, dpi: float) -> OcrPage:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("onnxruntime: bad input")
        return OcrPage((OcrLine(f"第{len(calls)}条 文字", (10, 10, 100, 20), 0.9),), 0, 595, 842)

    return read


def test_limits_and_unreadable_pages_skip_with_a_reason_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(scans, "read_image", fake_read(calls))
    monkeypatch.setattr(config, "OCR_MAX_PAGES", 3)
    result = ocr_pdf_pages(OCR / "zh_scan_150.pdf", [1, 2])
    assert sorted(result.pages) == [1]
    assert result.skipped == {2: "OCR failed: RuntimeError: onnxruntime: bad input"}
    monkeypatch.setattr(config, "OCR_MAX_PAGES", 1)
    result = ocr_pdf_pages(OCR / "rotated.pdf", [1, 2, 3])
    assert sorted(result.pages) == [1]
    assert result.skipped == {n: "over the 1-page OCR limit (KB_OCR_MAX_PAGES)" for n in (2, 3)}
    monkeypatch.setattr(config, "OCR_MAX_PAGES", 300)
    monkeypatch.setattr(config, "OCR_TIMEOUT_S", -1.0)
    result = ocr_pdf_pages(OCR / "en_scan_150.pdf", [1, 2])
    assert result.pages == {} and result.skipped[1] == "OCR of this file passed -1 s (KB_OCR_TIMEOUT)"


def test_skipped_pages_are_listed_and_the_rest_lands_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(scans, "read_image", fake_read(calls))
    shutil.copy(OCR / "zh_scan_150.pdf", tmp_path / "notice.pdf")
    doc = read_document(tmp_path, "notice.pdf")
    extra = dict(doc.meta.extra)
    assert doc.text.strip() == "第1条 文字" and extra["ocr_pages"] == "1"
    assert extra["ocr_skipped"] == "p.2: OCR failed: RuntimeError: onnxruntime: bad input"


def test_rebuild_reads_pages_from_the_cache_fake(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(scans, "read_image", fake_read(calls))
    first = ocr_pdf_pages(OCR / "zh_scan_150.pdf", [1])
    assert len(calls) == 1 and len(list(cache_dir.glob("ocr/*/*.json"))) == 1

    def never(pixels: np.ndarray, dpi: float) -> OcrPage:
        raise AssertionError("the page was read again")

    monkeypatch.setattr(scans, "read_image", never)
    assert ocr_pdf_pages(OCR / "zh_scan_150.pdf", [1]).pages == first.pages
    other = ocr_pdf_pages(OCR / "zh_scan_150.pdf", [2])  # another page is not in the cache: read
    assert other.skipped == {2: "OCR failed: AssertionError: the page was read again"}


def test_not_an_image_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"not a png at all")
    with pytest.raises(IngestError, match=r"^scan.png: cannot read image: cannot identify image file 'scan.png'$"):
        read_document(tmp_path, "scan.png")


def test_chinese_lines_that_run_on_are_joined_headings_and_english_keep_their_break() -> None:
    def line(text: str, x1: float, y: float) -> OcrLine:
        return OcrLine(text, (60, y, x1, y + 12), 0.99)

    page = OcrPage(
        (
            line("第一章 总则", 140, 0),  # a heading: short, keeps its break
            line("第一条 为了保障电子商务各方主体的合法权益，规范电子", 530, 20),  # full: runs on
            line("商务行为，制定本法。", 200, 40),
            line("第二条 本法所称电子商务，是指通过互联网等信息网络销售商品。", 531, 60),  # full but ends a sentence
            line("第三条 国家鼓励发展电子商务新业态，创新商业模式，促进电子商务技术研", 530, 70),
            line("发和推广应用，接受政府和社会的监督", 531, 75),  # full; its full stop was lost
            line("第四条 国家平等对待线上线下商务活动。", 300, 78),  # opens an article: never joined
            line("Cross-border e-commerce pilot zones support small", 529, 80),  # English keeps its break
            line("exporters.", 120, 100),
        ),
        0,
        595,
        842,
    )
    assert page.text == (
        "第一章 总则\n第一条 为了保障电子商务各方主体的合法权益，规范电子商务行为，制定本法。\n"
        "第二条 本法所称电子商务，是指通过互联网等信息网络销售商品。\n"
        "第三条 国家鼓励发展电子商务新业态，创新商业模式，促进电子商务技术研发和推广应用，接受政府和社会的监督\n"
        "第四条 国家平等对待线上线下商务活动。\n"
        "Cross-border e-commerce pilot zones support small\nexporters."
    )
