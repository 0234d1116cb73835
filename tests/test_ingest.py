"""File -> Document: encodings, HTML cleaning, front matter, LawRefBook headers, sidecars, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kb.errors import CorpusError, IngestError
from kb.ingest.read import detect_lang, read_document, walk_corpus

LAW = "# 示范条例\n\n2020年1月2日 国务院令第700号公布\n2020年3月1日 施行\n\n<!-- INFO END -->\n\n第一条 为了规范网络交易，制定本条例。\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16", "utf-16-le"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "law.txt").write_bytes(LAW.encode(encoding))
    doc = read_document(tmp_path, "law.txt")
    assert doc.text == LAW
    assert doc.title == "示范条例"
    assert doc.lang == "zh"


def test_crlf_is_normalised(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"Title line here\r\n\r\nBody text.\r\n")
    assert read_document(tmp_path, "a.txt").text == "Title line here\n\nBody text.\n"


def test_lawrefbook_header_gives_title_dates_issuer_number_level(tmp_path: Path) -> None:
    (tmp_path / "law.md").write_text(LAW, encoding="utf-8")
    meta = read_document(tmp_path, "law.md").meta
    assert (meta.published, meta.effective) == ("2020-01-02", "2020-03-01")
    assert meta.issuer == "国务院"
    assert meta.doc_number == "中华人民共和国国务院令第700号" or meta.doc_number == "国务院令第700号"
    assert meta.level == "行政法规"


def test_judicial_interpretation_number_from_body(tmp_path: Path) -> None:
    text = "# 最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）\n\n<!-- INFO END -->\n\n法释〔2022〕8号\n\n第一条 甲。\n\n第二条 乙。\n\n第三条 本规定自2022年3月15日起施行。\n"
    (tmp_path / "spc.md").write_text(text, encoding="utf-8")
    meta = read_document(tmp_path, "spc.md").meta
    assert meta.doc_number == "法释〔2022〕8号"
    assert meta.level == "司法解释"
    assert meta.issuer == "最高人民法院"
    assert meta.effective == "2022-03-15"


def test_wordpress_html_in_markdown_is_cleaned(corpus: Path) -> None:
    doc = read_document(corpus, "en/rural_commerce.md")
    assert doc.title == "Rural E-commerce in Zhijiang"
    assert doc.meta.source_format == "html"
    assert doc.meta.published == "2023-07-19"
    assert "alert" not in doc.text and "color: red" not in doc.text and "wp:" not in doc.text
    assert "About us" not in doc.text  # navigation dropped
    assert "## Economic Base" in doc.text
    assert "Zhijiang's economy rests on food manufacturing and textiles." in doc.text
    assert "- County warehouses" in doc.text


def test_docx_and_pdf(corpus: Path) -> None:
    docx_doc = read_document(corpus, "guide.docx")
    assert "Streamers must disclose paid promotions" in docx_doc.text
    assert docx_doc.title == "Live Commerce Guidelines"
    pdf = read_document(corpus, "report.pdf")
    assert [p for p, _, _ in pdf.page_spans] == [1, 2]
    start = pdf.text.index("Rural logistics")
    assert pdf.page_at(start) == 2
    assert pdf.page_at(pdf.text.index("Cross-border")) == 1


def test_sidecar_overrides_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some heading words\n\nBody text here.", encoding="utf-8")
    (tmp_path / "a.txt.meta.json").write_text(
        '{"title": "Edited title", "level": "规范性文件", "issuer": "商务部"}', encoding="utf-8"
    )
    doc = read_document(tmp_path, "a.txt")
    assert (doc.title, doc.meta.level, doc.meta.issuer) == ("Edited title", "规范性文件", "商务部")


def test_bad_sidecar_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some heading words\n\nBody.", encoding="utf-8")
    (tmp_path / "a.txt.meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IngestError, match=r"a\.txt\.meta\.json: sidecar is not valid JSON"):
        read_document(tmp_path, "a.txt")


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n ", "empty file"),
        ("binary.txt", bytes(range(256)) * 40, "binary data"),
        ("photo.jpg", b"\xff\xd8\xff\xe0 JFIF", "cannot read image"),  # a JPEG header and nothing more
        ("slides.pptx", b"PK\x03\x04", "unsupported file type '.pptx'"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "PDF"),
        ("broken.docx", b"PK\x03\x04 not really a zip", ".docx"),
    ],
)
def test_unreadable_files_raise_with_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(IngestError) as err:
        read_document(tmp_path, name)
    assert reason in err.value.reason
    assert str(err.value).startswith(name)


def test_link_outside_corpus_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret words here", encoding="utf-8")
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(IngestError, match="outside the corpus"):
        read_document(root, "link.txt")


def test_walk_skips_sidecars_and_notes(corpus: Path) -> None:
    ids = [doc_id for doc_id, _ in walk_corpus(corpus)]
    assert "en/notes.txt" in ids and "report.pdf" in ids
    assert not any(i.endswith((".meta.json", "README.md")) for i in ids)
    assert ids == sorted(ids)


def test_missing_corpus_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        list(walk_corpus(tmp_path / "nope"))


def test_detect_lang() -> None:
    assert detect_lang("电子商务经营者应当依法纳税") == "zh"
    assert detect_lang("E-commerce operators shall pay taxes") == "en"
    assert detect_lang("《电子商务法》 applies to e-commerce operators in China") == "en"


# --- Issue 14: hostile files, each one read or refused on its own ---


def test_html_keeps_text_after_an_unclosed_embed_and_inside_a_form() -> None:
    from kb.ingest.formats import html_to_text

    text, _ = html_to_text('<p>Before.</p><embed src="movie.swf"><p>After the plugin.</p><p>Last one.</p>')
    assert "After the plugin." in text and "Last one." in text
    text, _ = html_to_text(
        '<body><form id="form1"><div><p>ASP.NET body text.</p><input value="x"/>'
        "<select><option>menu</option></select></div></form></body>"
    )
    assert "ASP.NET body text." in text and "menu" not in text


def test_bom_then_lone_surrogate_is_refused_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_bytes(b"\xff\xfe\x00\xd8")
    with pytest.raises(IngestError, match="undecodable bytes"):
        read_document(tmp_path, "s.txt")


@pytest.mark.parametrize("value", ["2023-02-30", "0000-01-01", "1.5e999", "!!python/object:os.system ls"])
def test_impossible_front_matter_dates_leave_the_front_matter_as_text(tmp_path: Path, value: str) -> None:
    (tmp_path / "d.md").write_text(f"---\ndate: {value}\n---\nBonded zones publish tariffs.\n", encoding="utf-8")
    doc = read_document(tmp_path, "d.md")
    assert "Bonded zones publish tariffs." in doc.text and doc.meta.published is None


def test_yaml_aliases_cannot_blow_up_the_title(tmp_path: Path) -> None:
    aliases = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 6)
    )
    (tmp_path / "l.md").write_text(f"---\n{aliases}title: *a5\n---\nSmall parcels clear customs.\n", encoding="utf-8")
    doc = read_document(tmp_path, "l.md")
    assert len(doc.title) <= 500 and len(doc.text) < 2000


@pytest.mark.parametrize(
    "side, reason",
    [
        ({"published": "9999-99-99"}, "published '9999-99-99' is not a date"),
        ({"effective": "2023-02-30"}, "effective '2023-02-30' is not a date"),
        ({"validity": "已废止<b>"}, "validity '已废止<b>' is not one of"),
        ({"lang": "xx"}, "lang 'xx' is not one of zh, en"),
        ({"level": "nan"}, "level 'nan' is not a level name"),
    ],
)
def test_sidecar_values_are_checked(tmp_path: Path, side: dict[str, str], reason: str) -> None:
    import json

    (tmp_path / "a.txt").write_text("Some heading words\n\nBody text here.", encoding="utf-8")
    (tmp_path / "a.txt.meta.json").write_text(json.dumps(side, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(IngestError, match=re.escape(reason)):
        read_document(tmp_path, "a.txt")


def test_sidecar_linking_out_of_the_corpus_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (tmp_path / "secret.json").write_text('{"title": "LEAKED"}', encoding="utf-8")
    (root / "a.txt").write_text("Some heading words\n\nBody text here.", encoding="utf-8")
    (root / "a.txt.meta.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(IngestError, match="outside the corpus"):
        read_document(root, "a.txt")


def test_metadata_csv_in_gbk_with_a_huge_cell_is_read(tmp_path: Path) -> None:
    from kb.ingest.sidecars import load_sidecars

    rows = "doc_id,issuer,title\r\na.txt,北京市商务局,规定\r\nb.txt," + "局" * 200_000 + ",\r\nc.txt,,,\r\n"
    (tmp_path / "metadata.csv").write_bytes(rows.encode("gbk"))
    table = load_sidecars(tmp_path)
    assert table["a.txt"] == {"issuer": "北京市商务局", "title": "规定"}
    assert len(table["b.txt"]["issuer"]) == 500


def test_fifo_and_device_links_are_refused_before_they_are_opened(tmp_path: Path) -> None:
    import os
    import time

    from kb.ingest.guard import source_key

    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    t0 = time.time()
    with pytest.raises(IngestError, match="not a regular file"):
        source_key(tmp_path, "pipe.txt", tmp_path / "pipe.txt", {})
    with pytest.raises(IngestError, match="outside the corpus"):
        source_key(tmp_path, "zero.txt", tmp_path / "zero.txt", {})
    assert time.time() - t0 < 5


def test_docx_of_tiny_paragraphs_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kb import config
    from tests.badcorpus import _docx_bomb

    _docx_bomb(tmp_path / "p.docx", 3)
    monkeypatch.setattr(config, "MAX_UNZIPPED_BYTES", 2 * 2**20)
    with pytest.raises(IngestError, match="unpacks to 3 MB, over the 2 MB limit"):
        read_document(tmp_path, "p.docx")
    import docx

    many = docx.Document()
    for _ in range(1001):
        many.add_paragraph("x")
    many.save(str(tmp_path / "many.docx"))
    monkeypatch.setattr(config, "MAX_DOCX_BLOCKS", 1000)
    with pytest.raises(IngestError, match="paragraphs and tables, over the 1000 limit"):
        read_document(tmp_path, "many.docx")


def test_dotdot_names_are_walked_so_they_are_reported(tmp_path: Path) -> None:
    (tmp_path / "..odd.txt").write_text("text", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("text", encoding="utf-8")
    assert [d for d, _ in walk_corpus(tmp_path)] == ["..odd.txt"]
    with pytest.raises(IngestError, match="starts with '..'"):
        read_document(tmp_path, "..odd.txt")


def test_a_bad_metadata_csv_value_skips_only_its_document(tmp_path: Path) -> None:
    from kb.ingest.sidecars import load_sidecars

    (tmp_path / "a.txt").write_text("Some heading words\n\nBody text here.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Other heading words\n\nMore body text.", encoding="utf-8")
    (tmp_path / "metadata.csv").write_text("doc_id,published\na.txt,2023-13-01\nb.txt,2023-01-02\n", encoding="utf-8")
    table = load_sidecars(tmp_path)
    with pytest.raises(IngestError, match=r"metadata.csv line 2: published '2023-13-01' is not a date"):
        read_document(tmp_path, "a.txt", table.get("a.txt"))
    assert read_document(tmp_path, "b.txt", table.get("b.txt")).meta.published == "2023-01-02"
