"""A corpus with broken files: each is skipped (or read) with a one-line reason, the rest still lands."""

from __future__ import annotations

from pathlib import Path

from kb.embed.models import HashingEmbedder
from kb.index.build import build
from kb.search.searcher import Searcher
from tests.conftest import make_corpus


def test_bad_files_are_reported_and_good_ones_land(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    (corpus / "corrupt.pdf").write_bytes((corpus / "report.pdf").read_bytes()[:300])
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (corpus / "scan.tiff").write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing else
    (corpus / "slides.pptx").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    gbk = "地方规定\n\n第一条 为了促进跨境电子商务发展，制定本规定。\n第二条 本规定适用于本市。\n第三条 本规定自发布之日起施行。\n"
    (corpus / "gbk_rules.txt").write_bytes(gbk.encode("gbk"))
    report = build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    assert set(report.skipped) == {"corrupt.pdf", "empty.txt", "binary.txt", "scan.tiff", "slides.pptx"}
    assert report.skipped["empty.txt"] == "empty file"
    assert report.skipped["binary.txt"].startswith("binary data")
    assert report.skipped["slides.pptx"].startswith("unsupported file type '.pptx'")
    assert report.skipped["scan.tiff"] == "cannot read image: cannot identify image file 'scan.tiff'"
    assert report.skipped["corrupt.pdf"].startswith("corrupt PDF")
    assert all("\n" not in reason for reason in report.skipped.values())
    landed = set(report.indexed)
    assert {"gbk_rules.txt", "report.pdf", "guide.docx", "zh/ecommerce_law.md", "en/notes.txt"} <= landed
    hit = Searcher(tmp_path / "index").search("本规定适用于本市", 1, docs=["gbk_rules.txt"], mode="keyword")[0]
    assert hit.chunk.doc_id == "gbk_rules.txt" and hit.citation == "《地方规定》第二条"
