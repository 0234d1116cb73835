"""PDF page furniture: printed page numbers found and shown beside the PDF index; running heads and page numbers
kept in the document text but never inside a passage, offsets exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.chunk import Chunk, chunk_document
from kb.cite import citation
from kb.ingest.document import Document
from kb.ingest.pdf import PdfText, pages_to_text
from kb.ingest.pdfpages import find_furniture, label_runs, printed_page
from kb.ingest.scans import ScanResult

ROOT = Path(__file__).parent.parent


def _book(n: int, first_numbered: int, offset: int) -> list[str]:
    pages = []
    for number in range(1, n + 1):
        head = [f"Page|{number + offset}"] if number >= first_numbered else []
        pages.append("\n".join([*head, "Journal of Things", f"Body text of page {number}.", "More text here."]))
    return pages


def test_printed_numbers_and_running_heads_are_found_on_the_pages() -> None:
    found, labels = find_furniture(_book(20, 5, -4))
    assert labels[:4] == [None, None, None, None] and labels[4] == "1" and labels[19] == "16"
    assert found[7] == {0, 1} and found[2] == {0}  # "Page|4" and "Journal of Things"; the heading alone


def _as_document(pdf: PdfText) -> Document:
    return Document("b.pdf", "b.pdf", "Book", "en", pdf.text, page_spans=pdf.pages, furniture=pdf.furniture)


def test_furniture_stays_in_the_text_and_out_of_every_passage() -> None:
    raws = _book(20, 5, -4)
    found, labels = find_furniture(raws)
    pdf = pages_to_text(Path("b.pdf"), raws, ScanResult(), printed=tuple(labels), furniture=found)
    assert [pdf.text[s:e] for s, e in pdf.furniture][:5] == ["Journal of Things"] * 4 + ["Page|1\nJournal of Things"]
    number, start, end = pdf.pages[7]
    assert pdf.text[start:end] == "Page|4\nJournal of Things\nBody text of page 8.\nMore text here."
    doc = _as_document(pdf)
    chunks = chunk_document(doc)
    assert chunks and all(doc.text[c.char_start : c.char_end] == c.text for c in chunks)
    assert not [c.text for c in chunks if "Page|" in c.text or "Journal of Things" in c.text]
    # Every body line is in a passage, on its own page.
    for number, start, end in pdf.pages:
        body = f"Body text of page {number}.\nMore text here."
        assert any(c.text == body and c.page == number == c.page_end for c in chunks), number


def test_a_passage_running_over_a_page_break_is_cut_at_the_furniture() -> None:
    text = "Long sentence one. " * 30 + "\nPage|7\n" + "Long sentence two. " * 30
    head = text.index("Page|7")
    doc = Document("b.pdf", "b.pdf", "Book", "en", text, furniture=((head, head + len("Page|7")),))
    chunks = chunk_document(doc)
    assert chunks[0].text.endswith("one.") and chunks[-1].text.startswith("Long sentence two.")
    assert all("Page|" not in c.text and text[c.char_start : c.char_end] == c.text for c in chunks)
    assert doc.clear_of_furniture(0, len(text)) == [(0, head), (head + 6, len(text))]
    assert doc.clear_of_furniture(head + 1, head + 3) == [] and doc.clear_of_furniture(0, 5) == [(0, 5)]


def test_a_jump_in_the_printed_numbering_is_followed() -> None:
    raw = _book(12, 1, 10)
    raw[8] = raw[8].replace("Page|19", "Page|40")
    _, labels = find_furniture(raw)
    assert labels[8] == "40"
    runs = label_runs(labels)
    assert printed_page(runs, 9) == "40" and printed_page(runs, 3) == "13"


def test_a_journal_running_head_on_a_single_page_is_found() -> None:
    found, _ = find_furniture(["   \nEntrep. Sustain. 2023, 1(1)\n \nEditorial\nThe text."])
    assert found == [frozenset({1})]


def test_citation_shows_the_printed_page_beside_the_pdf_index() -> None:
    chunk = Chunk("pdf/b.pdf#3", "pdf/b.pdf", "Book", 3, "text", 0, 4, "en", page=140)
    assert citation(chunk, page_labels="15:1") == "Book, p. 140 (printed p. 126)"
    assert citation(chunk) == "Book, p. 140"


@pytest.mark.model
def test_pdf01_labels_on_twenty_pages_and_no_furniture_in_any_pdf_passage() -> None:
    """Twenty pages of pdf01 checked by hand against the printed 'Page|N' line (2026-12-02)."""
    from kb.chunk import read_passages

    doc, chunks = read_passages(ROOT / "corpus", "pdf/pdf01_cbec_book_future_of_cross_border_ecommerce.pdf")
    runs = dict(doc.meta.extra)["page_labels"]
    hand = {
        29: "15",
        45: "31",
        64: "50",
        65: "51",
        72: "58",
        75: "61",
        78: "64",
        82: "68",
        94: "80",
        99: "85",
        107: "93",
        108: "94",
        129: "115",
        134: "120",
        139: "125",
        140: "126",
        164: "159",
        170: "156",
        176: "162",
        181: "167",
    }
    assert {page: printed_page(runs, page) for page in hand} == hand
    assert printed_page(runs, 7) is None  # front matter is not numbered
    read = [(doc, chunks)] + [
        read_passages(ROOT / "corpus", f"pdf/{name}")
        for name in ("pdf02_cbec_journal_foreword.pdf", "pdf03_cbec_journal_editorial.pdf")
    ]
    for pdf_doc, pdf_chunks in read:
        assert all(pdf_doc.text[c.char_start : c.char_end] == c.text for c in pdf_chunks), pdf_doc.doc_id
        bad = [c.chunk_id for c in pdf_chunks if "Page|" in c.text or "Entrep. Sustain. 2023" in c.text]
        assert not bad, bad
        marked = [pdf_doc.text[s:e] for s, e in pdf_doc.furniture]
        assert marked and not [c.chunk_id for c in pdf_chunks if any(m in c.text for m in marked if len(m) > 8)]
    # The document text keeps them where the pages print them.
    _, start, end = doc.page_spans[139]
    assert doc.text[start:end].startswith("Page|126\n"), doc.text[start : start + 80]
    assert all("Entrep. Sustain. 2023" in pdf_doc.text for pdf_doc, _ in read[1:])
