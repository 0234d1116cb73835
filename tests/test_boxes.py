"""Passage boxes on PDF pages: they cover the passage's characters and nothing more than the lines it spans."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kb.chunk import Chunk, chunk_document
from kb.ingest.boxes import Box, align, line_rects, passage_boxes, source_file, text_layer_glyphs
from kb.ingest.document import Document
from kb.ingest.read import read_document

ROOT = Path(__file__).parent.parent
PDFS = (
    "pdf/pdf01_cbec_book_future_of_cross_border_ecommerce.pdf",
    "pdf/pdf02_cbec_journal_foreword.pdf",
    "pdf/pdf03_cbec_journal_editorial.pdf",
)


@pytest.fixture(scope="module")
def sampled() -> list[tuple[Document, Chunk]]:
    """30 passages drawn at random (seeded) from the three bundled PDFs."""
    pairs = []
    for doc_id in PDFS:
        doc = read_document(ROOT / "corpus", doc_id)
        pairs += [(doc, chunk) for chunk in chunk_document(doc)]
    return random.Random(20).sample(pairs, 30)


def inside(point: tuple[float, float], box: Box | tuple[float, float, float, float], pad: float = 0.5) -> bool:
    x, y = point
    x0, y0, x1, y1 = (box.x0, box.y0, box.x1, box.y1) if isinstance(box, Box) else box
    return x0 - pad <= x <= x1 + pad and y0 - pad <= y <= y1 + pad


def centre(rect: tuple[float, float, float, float]) -> tuple[float, float]:
    return (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2


def test_boxes_cover_the_passage_and_nothing_more(sampled: list[tuple[Document, Chunk]]) -> None:
    for doc, chunk in sampled:
        boxes = passage_boxes(doc, chunk.char_start, chunk.char_end)
        assert boxes, chunk.chunk_id
        path = source_file(doc)
        assert path is not None
        for number, p_start, p_end in doc.page_spans:
            lo, hi = max(chunk.char_start, p_start), min(chunk.char_end, p_end)
            if lo >= hi:
                continue
            glyphs = text_layer_glyphs(path, number)
            ours = set(align(doc.text[p_start:p_end], glyphs, lo - p_start, hi - p_start))
            chars = sum(1 for c in doc.text[lo:hi] if not c.isspace())
            assert len(ours) >= 0.97 * chars, f"{chunk.chunk_id} p.{number}: {len(ours)} of {chars} placed"
            on_page = [b for b in boxes if b.page == number]
            # Every character of the passage is inside a box ...
            assert all(any(inside(centre(glyphs[i].rect), b) for b in on_page) for i in ours), chunk.chunk_id
            # ... and a box holds no other character of the page, beyond stray marks (superscripts, bullets).
            others = [
                g for i, g in enumerate(glyphs) if i not in ours and any(inside(centre(g.rect), b) for b in on_page)
            ]
            assert len(others) <= max(2, 0.01 * len(ours)), (chunk.chunk_id, "".join(g.char for g in others)[:80])
            # One box a line: no taller than two lines of the glyphs it holds (a title's line is taller than the
            # body's: pdf02's first passage holds both).
            for b in on_page:
                held = [glyphs[i].rect[3] - glyphs[i].rect[1] for i in ours if inside(centre(glyphs[i].rect), b)]
                assert held and b.y1 - b.y0 <= 2.0 * max(held), (chunk.chunk_id, b)


def test_line_rects_merge_a_line_and_break_at_the_next() -> None:
    rects = [(10, 100, 20, 110), (20, 100, 30, 110), (30, 101, 40, 109), (10, 112, 20, 122), (20, 112, 30, 122)]
    assert line_rects(rects) == [(10, 100, 40, 110), (10, 112, 30, 122)]


def test_a_moved_or_changed_file_gives_no_boxes(tmp_path: Path) -> None:
    doc = read_document(ROOT / "corpus", PDFS[1])
    moved = Document(doc.doc_id, str(tmp_path / "gone.pdf"), doc.title, doc.lang, doc.text, doc.meta, doc.page_spans)
    assert source_file(moved, corpus=tmp_path) is None
    (tmp_path / "pdf").mkdir()
    (tmp_path / PDFS[1]).write_bytes((ROOT / "corpus" / PDFS[1]).read_bytes() + b"\n%changed")
    assert source_file(moved, corpus=tmp_path) is None
    assert passage_boxes(Document("x.txt", "x.txt", "x", "en", "text"), 0, 4) == []
