"""kb.ingest.pdf: page spans, known phrases on known pages, hyphen joining, run-on repair, errors."""

from __future__ import annotations

import logging
import pathlib

import pypdf
import pytest

from kb import config
from kb.errors import IngestError
from kb.ingest.pdf import PdfText, clean_page, count_suspicious, dehyphenate, read_pdf, repair_runs

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_CORPUS = _ROOT / "corpus" / "pdf"
PDF_DIR = _CORPUS if _CORPUS.is_dir() else pathlib.Path("/work/shared/testdata/policy/pdf")
PDF01 = PDF_DIR / "pdf01_cbec_book_future_of_cross_border_ecommerce.pdf"
PDF02 = PDF_DIR / "pdf02_cbec_journal_foreword.pdf"
PDF03 = PDF_DIR / "pdf03_cbec_journal_editorial.pdf"


@pytest.fixture(scope="module")
def book() -> PdfText:
    return read_pdf(PDF01)


@pytest.fixture(scope="module")
def book_raw() -> PdfText:
    return read_pdf(PDF01, repair=False)


def page_of(doc: PdfText, phrase: str) -> list[int]:
    return [n for n, s, e in doc.pages if phrase in doc.text[s:e]]


def check_spans(doc: PdfText, n_pages: int) -> None:
    assert [n for n, _, _ in doc.pages] == list(range(1, n_pages + 1))
    # Pages in order, separated by exactly "\n\n", covering the whole text.
    assert doc.pages[0][1] == 0 and doc.pages[-1][2] == len(doc.text)
    for (_, _, end), (_, start, _) in zip(doc.pages, doc.pages[1:], strict=False):
        assert doc.text[end:start] == "\n\n"
    assert "\n\n".join(doc.text[s:e] for _, s, e in doc.pages) == doc.text


@pytest.mark.parametrize("path, n_pages", [(PDF02, 2), (PDF03, 1)])
def test_small_pdfs_spans(path: pathlib.Path, n_pages: int) -> None:
    check_spans(read_pdf(path), n_pages)


def test_book_spans_and_empty_pages(book: PdfText) -> None:
    check_spans(book, 188)
    empty = [n for n, s, e in book.pages if s == e]
    assert 4 in empty and 6 in empty  # blank versos still get a (zero-length) span


def test_page_text_is_the_cleaned_page() -> None:
    doc = read_pdf(PDF02)
    for _, s, e in doc.pages:
        page = doc.text[s:e]
        assert page == page.strip("\n") and "\r" not in page
        assert all(line == line.rstrip() for line in page.split("\n"))
        assert "\n\n\n\n" not in page


def test_known_phrases_on_known_pages(book: PdfText) -> None:
    d2 = read_pdf(PDF02)
    assert page_of(d2, "non-degradable goods") == [1]
    assert page_of(d2, "certificates of excellence") == [2]
    # Broken across a line in the PDF ("https://cre-" / "ativecommons.org"): rejoined.
    assert page_of(d2, "https://creativecommons.org/licenses/by/4.0/") == [1]
    d3 = read_pdf(PDF03)  # broken startxref pointer, still read
    assert page_of(d3, "Business School, Huanggang Normal University") == [1]
    assert page_of(book, "quality agro-data sources and adornments") == [18]
    # The printed "Page|3" heading PDF page 17 is furniture (kb.ingest.pdfpages): kept in the text as printed,
    # marked as furniture, and the page's label.
    assert page_of(book, "Page|3\n") == [17] and book.printed[16] == "3"
    _, start, end = book.pages[16]
    assert "Page|3" in [book.text[s:e] for s, e in book.furniture if start <= s < end]


def test_pypdf_warnings_stay_off_stderr(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kb.ingest.pdf"):
        read_pdf(PDF03)  # pypdf warns "incorrect startxref pointer" on this one
    # The warning comes back as a debug record of ours, and never reaches the terminal. (Only pypdf's own lines are
    # looked for: another library's thread, such as gRPC's, may write to the same stderr meanwhile.)
    assert any("pypdf" in r.getMessage() and "startxref" in r.getMessage() for r in caplog.records)
    assert "startxref" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "left, right, want",
    [
        ("eco", "nomic", "economic"),
        ("multi", "lingual", "multilingual"),
        ("busi", "nesspeople", "businesspeople"),
        ("cross", "border", "cross-border"),
        ("non", "degradable", "non-degradable"),
        ("self", "employed", "self-employed"),
        ("E", "Commerce", "E-Commerce"),
        ("e", "commerce", "e-commerce"),
        ("onlineride", "sharing", "onlineride-sharing"),
    ],
)
def test_dehyphenate(left: str, right: str, want: str) -> None:
    assert dehyphenate(left, right) == want


def test_hyphen_joining_in_page_text() -> None:
    text, _ = clean_page("the eco-\nnomic and cross-\n  border trade  \r\nends", repair=False)
    assert text == "the economic and cross-border trade\nends"
    assert clean_page("a\n\n\n\n\n\nb", repair=False)[0] == "a\n\nb"
    assert clean_page("a\n\n\nb", repair=False)[0] == "a\n\n\nb"


@pytest.mark.parametrize(
    "raw, want",
    [
        ("CollegeofEconomicsandManagement,", "College of Economics and Management,"),
        ("andpublicpolicyoptions.", "and public policy options."),
        ("HistoryofChineseE-Commerce", "History of Chinese E-Commerce"),
        ("Pakistan’sposition", "Pakistan’s position"),
    ],
)
def test_repair_splits_run_ons(raw: str, want: str) -> None:
    assert repair_runs(raw) == (want, 1)


@pytest.mark.parametrize(
    "raw",
    [
        "https://www.alibabagroup.com/en/about",
        "zdy@mail.hzau.edu.cn",
        "UNCTADCPEC",  # all capitals: acronyms
        "PayPal Alibaba Foxconn traceability",  # known words, CamelCase brands
        "17yjc630159 2018",
        "中华人民共和国电子商务法",
        "economic development",  # ordinary words
        "GathunguGeofrey",  # names: the parts are not confidently words
    ],
)
def test_repair_leaves_alone(raw: str) -> None:
    assert repair_runs(raw) == (raw, 0)


def test_book_repair_reduces_suspicious_tokens(book: PdfText, book_raw: PdfText) -> None:
    before, after = count_suspicious(book_raw.text), count_suspicious(book.text)
    assert before > 1500 and after < 300, (before, after)  # measured: 1754 -> 204
    assert book.repaired_words > 2000 and book_raw.repaired_words == 0
    assert 1 in page_of(book_raw, "CollegeofEconomicsandManagement")
    fixed = "College of Economics and Management,Huazhong Agricultural University"
    assert 1 in page_of(book, fixed)
    assert "CollegeofEconomicsandManagement" not in book.text


def test_truncated_pdf(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "truncated.pdf"
    data = PDF02.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="corrupt PDF: ") as err:
        read_pdf(path)
    assert err.value.path == str(path)


def refusal(path: pathlib.Path) -> str:
    """The reason read_pdf gives for refusing a file (fails the test if it reads it)."""
    with pytest.raises(IngestError) as err:
        read_pdf(path)
    return err.value.reason


def test_encrypted_pdf(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "locked.pdf"
    writer = pypdf.PdfWriter(clone_from=PDF02)
    writer.encrypt("secret")
    writer.write(path)
    assert refusal(path) == "encrypted PDF (password required)"


def test_encrypted_with_empty_password_opens(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "owner_only.pdf"
    writer = pypdf.PdfWriter(clone_from=PDF02)
    writer.encrypt("", owner_password="owner")
    writer.write(path)
    assert "certificates of excellence" in read_pdf(path).text


def test_blank_pdf_without_text(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No text layer and nothing for OCR to read either: refused, saying what OCR found."""
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    path = tmp_path / "blank.pdf"
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.write(path)
    assert refusal(path) == "no text layer, and OCR read no page (the pages are blank)"


def test_not_a_pdf(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.pdf"
    path.write_text("just some notes, not a PDF\n")
    assert refusal(path) == "corrupt PDF: not a PDF file (no %PDF header)"


def test_hung_reader_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    import kb.ingest.pdf

    monkeypatch.setattr(kb.ingest.pdf, "TIMEOUT_S", 0.01)  # too short even to start Python
    with pytest.raises(IngestError, match="corrupt PDF: text extraction exceeded"):
        read_pdf(PDF02)
