"""PDF page furniture: printed page numbers found and shown beside the PDF index, running heads removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.chunk import Chunk
from kb.cite import citation
from kb.ingest.pdfpages import label_runs, printed_page, strip_furniture

ROOT = Path(__file__).parent.parent


def _book(n: int, first_numbered: int, offset: int) -> list[str]:
    pages = []
    for number in range(1, n + 1):
        head = [f"Page|{number + offset}"] if number >= first_numbered else []
        pages.append("\n".join([*head, "Journal of Things", f"Body text of page {number}.", "More text here."]))
    return pages


def test_printed_numbers_and_running_heads_come_off_the_pages() -> None:
    pages, labels = strip_furniture(_book(20, 5, -4))
    assert labels[:4] == [None, None, None, None] and labels[4] == "1" and labels[19] == "16"
    assert all("Page|" not in p and "Journal of Things" not in p for p in pages)
    assert pages[7] == "Body text of page 8.\nMore text here."


def test_a_jump_in_the_printed_numbering_is_followed() -> None:
    raw = _book(12, 1, 10)
    raw[8] = raw[8].replace("Page|19", "Page|40")
    _, labels = strip_furniture(raw)
    assert labels[8] == "40"
    runs = label_runs(labels)
    assert printed_page(runs, 9) == "40" and printed_page(runs, 3) == "13"


def test_a_journal_running_head_on_a_single_page_is_removed() -> None:
    pages, _ = strip_furniture(["   \nEntrep. Sustain. 2023, 1(1)\n \nEditorial\nThe text."])
    assert "Entrep. Sustain." not in pages[0] and "The text." in pages[0]


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
    every = list(chunks)
    for name in ("pdf02_cbec_journal_foreword.pdf", "pdf03_cbec_journal_editorial.pdf"):
        every += read_passages(ROOT / "corpus", f"pdf/{name}")[1]
    bad = [c.chunk_id for c in every if "Page|" in c.text or "Entrep. Sustain. 2023" in c.text]
    assert not bad, bad
