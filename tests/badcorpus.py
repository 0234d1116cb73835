"""A corpus of everything a government file share holds, generated (no binaries committed): what each should give.

`make_bad_corpus(root)` writes the files and returns {doc_id: expectation}, where an expectation is
("landed", text that must be searchable) or ("skipped", start of the one-line reason).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from tests.conftest import make_pdf

GOOD_ZH = "跨境电商规定\n\n第一条 为了促进跨境电子商务健康发展，制定本规定。\n第二条 本规定适用于本市行政区域。\n第三条 本规定自发布之日起施行。\n"
BIG_MB = 100


def _encrypted_pdf(path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(path.with_suffix(".plain"), [["Secret customs tariff schedule for pilot zones."]])
    writer = PdfWriter()
    for page in PdfReader(str(plain)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="open-sesame", owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    path.write_bytes(buf.getvalue())
    plain.unlink()


def _scanned_pdf(path: Path) -> None:
    """A page with an image and no text layer, like a scan."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buf = io.BytesIO()
    writer.write(buf)
    path.write_bytes(buf.getvalue())


def _docx_bomb(path: Path, megabytes: int) -> None:
    """A small .docx whose document.xml unpacks to `megabytes` MB of empty paragraphs."""
    import zipfile

    head = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        with zf.open("word/document.xml", "w") as fh:
            fh.write(head.encode())
            block = b"<w:p/>" * (2**20 // 6)
            for _ in range(megabytes):
                fh.write(block)
            fh.write(b"</w:body></w:document>")


def _hostile(root: Path, put: object, expect: dict[str, tuple[str, str]], big: bool) -> None:
    """The files of the hostile probe (issue 14): each lands or is skipped with a reason, none ends the build."""
    h = "hostile/"
    put(h + "bom_surrogate.txt", b"\xff\xfe\x00\xd8", "skipped", "undecodable bytes")
    put(
        h + "feb30.md",
        "---\ntitle: Leap notice\ndate: 2023-02-30\n---\nBonded zones publish leap-day tariffs.\n",
        "landed",
        "Bonded zones publish leap-day tariffs",
    )
    put(
        h + "year0.md",
        "---\ndate: 0000-01-01\n---\nAncient customs ledgers are archived.\n",
        "landed",
        "Ancient customs ledgers are archived",
    )
    aliases = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
        for i in range(1, 6)
    )
    put(
        h + "laughs.md",
        f"---\n{aliases}title: *a5\n---\nSmall parcels clear customs within one hour.\n",
        "landed",
        "Small parcels clear customs within one hour",
    )
    raw = os.fsencode(root / "hostile") + b"/bad\xff\xfename.txt"
    with open(raw, "wb") as fh:
        fh.write(b"A file whose name is not UTF-8.\n")
    expect[h + "bad\\xff\\xfename.txt"] = ("skipped", "file name is not valid UTF-8")
    put(
        h + "new\nline.txt",
        "Warehouse receipts may be pledged as collateral.\n",
        "landed",
        "Warehouse receipts may be pledged as collateral",
    )
    put(
        h + "esc\x1b[31mred\x07.txt",
        "Customs brokers renew licences every three years.\n",
        "landed",
        "Customs brokers renew licences every three years",
    )
    put(
        h + "quote'and\\slash.txt",
        "Free trade zones waive stamp duty on leases.\n",
        "landed",
        "Free trade zones waive stamp duty on leases",
    )
    put(h + "..dotdot.txt", "A name that reads like a parent folder.\n", "skipped", "file name starts with '..'")
    os.mkfifo(root / "hostile/pipe.txt")
    expect[h + "pipe.txt"] = ("skipped", "not a regular file (a FIFO")
    os.symlink("/dev/zero", root / "hostile/zero_link.txt")
    expect[h + "zero_link.txt"] = ("skipped", "link points outside the corpus folder")
    put(
        h + "big_issuer.txt",
        "Export credit insurance covers small sellers.\n",
        "landed",
        "Export credit insurance covers small sellers",
    )
    (root / "hostile/big_issuer.txt.meta.json").write_text(json.dumps({"issuer": "署" * 5_000_000}), encoding="utf-8")
    front = "".join(f"k{i}: {'v' * 400}\n" for i in range(300))
    put(
        h + "wide_meta.md",
        f"---\n{front}---\nPort fees are published each quarter.\n",
        "landed",
        "Port fees are published each quarter",
    )
    make_pdf(root / "hostile/many_pages.pdf", [[f"Page {n} of the tariff book."] for n in range(2001)])
    expect[h + "many_pages.pdf"] = ("skipped", "PDF has 2001 pages, over the 2000-page limit")
    put(
        h + "embed.html",
        '<html><body><p>Before the plugin.</p><embed src="movie.swf">'
        "<p>Cold chain logistics get a subsidy.</p></body></html>",
        "landed",
        "Cold chain logistics get a subsidy",
    )
    put(
        h + "aspnet.html",
        '<html><body><form id="form1" method="post"><div><h1>Notice</h1><p>Village stations '
        'sell agricultural products online.</p></div><input type="hidden" name="__VIEWSTATE" value="x"/></form>'
        "</body></html>",
        "landed",
        "Village stations sell agricultural products online",
    )
    for name, side, reason in (
        ("published", {"published": "9999-99-99"}, "published '9999-99-99' is not a date"),
        ("validity", {"validity": "已废止<b>"}, "validity '已废止<b>' is not one of"),
        ("lang", {"lang": "xx"}, "lang 'xx' is not one of"),
        ("level", {"level": "nan"}, "level 'nan' is not a level name"),
    ):
        put(f"{h}side_{name}.txt", "A document with a bad sidecar value.\n", "skipped", reason)
        (root / f"hostile/side_{name}.txt.meta.json").write_text(json.dumps(side, ensure_ascii=False), encoding="utf-8")
    secret = root.parent / "secret.meta.json"
    secret.write_text(json.dumps({"title": "LEAKED TITLE"}), encoding="utf-8")
    put(
        h + "side_link.txt",
        "A document whose sidecar links out of the corpus.\n",
        "skipped",
        "link points outside the corpus folder",
    )
    os.symlink(secret, root / "hostile/side_link.txt.meta.json")
    # metadata.csv as Excel saves it on Chinese Windows (GBK), one cell longer than csv's default field limit.
    rows = "doc_id,issuer,title\r\ngood/utf8.txt,北京市商务局,跨境电商规定\r\n" + f"good/gbk.txt,{'局' * 200_000},\r\n"
    (root / "metadata.csv").write_bytes(rows.encode("gbk"))
    if big:
        _docx_bomb(root / "hostile/paragraphs.docx", 100)
        expect[h + "paragraphs.docx"] = ("skipped", ".docx unpacks to 100 MB, over the 64 MB limit")


def make_bad_corpus(root: Path, big: bool = True, hostile: bool = True) -> dict[str, tuple[str, str]]:
    """Write the bad-input corpus under root; return what the build must do with each file."""
    root.mkdir(parents=True)
    expect: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes | str, outcome: str, detail: str) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        expect[name] = (outcome, detail)
        return path

    # Good documents in every encoding an office produces.
    put("good/utf8.txt", GOOD_ZH, "landed", "本规定适用于本市行政区域")
    put(
        "good/utf8_bom.txt",
        b"\xef\xbb\xbf"
        + "BOM 规定\n\n第一条 跨境电商企业应当依法申报。\n第二条 海关应当提供便利。\n第三条 本规定自公布之日起施行。\n".encode(),
        "landed",
        "海关应当提供便利",
    )
    put(
        "good/gbk.txt",
        "地方办法\n\n第一条 农村电商服务站应当公示收费标准。\n第二条 县级商务部门负责监督。\n第三条 本办法自发布之日起施行。\n".encode(
            "gbk"
        ),
        "landed",
        "农村电商服务站应当公示收费标准",
    )
    put(
        "good/gb18030.txt",
        "扩展字符规定\n\n第一条 𠀀字号商户应当亮照经营。\n第二条 市场监管部门负责检查。\n第三条 本规定自发布之日起施行。\n".encode(
            "gb18030"
        ),
        "landed",
        "市场监管部门负责检查",
    )
    put(
        "good/utf16.txt",
        "UTF-16 notice\n\nCross-border parcels under the threshold clear customs in one day.\n".encode("utf-16"),
        "landed",
        "clear customs in one day",
    )
    put(
        "good/utf16le_nobom.txt",
        "Rural couriers deliver to every village twice a week.\n".encode("utf-16-le"),
        "landed",
        "deliver to every village twice a week",
    )
    put(
        "good/invalid_utf8.txt",
        b"Platform operators must keep transaction records for three years.\n" + b"\xff\xfe\xfa broken tail\n",
        "landed",
        "keep transaction records for three years",
    )
    put(
        "good/long_lines.txt",
        ("Export subsidies for small sellers. " * 30_000) + "\nThe final sentence names warehouse bonds.\n",
        "landed",
        "warehouse bonds",
    )
    put(
        "good/nested.html",
        "<html><body>"
        + "<div>" * 3000
        + "<p>Deeply nested notice on livestream sales taxes.</p>"
        + "</div>" * 3000
        + "</body></html>",
        "landed",
        "livestream sales taxes",
    )
    put(
        "good/名称 含 空格.md",
        "# 名称含空格的通知\n\n各地应当加强直播电商人才培训，提升从业人员素质。\n",
        "landed",
        "加强直播电商人才培训",
    )
    put(
        "good/dup_a.txt",
        "Duplicate circular\n\nPick-up points in villages must post opening hours.\n",
        "landed",
        "post opening hours",
    )
    put(
        "good/dup b copy.txt",
        "Duplicate circular\n\nPick-up points in villages must post opening hours.\n",
        "landed",
        "post opening hours",
    )
    make_pdf(root / "good/report.pdf", [["Bonded warehouses speed up cross-border returns."]])
    expect["good/report.pdf"] = ("landed", "Bonded warehouses speed up cross-border returns")

    # Bad ones: each skipped with a reason.
    (root / "bad").mkdir()
    full = make_pdf(root / "bad/full.pdf", [["A page that will be cut short."]] * 3)
    (root / "bad/truncated.pdf").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    full.unlink()
    expect["bad/truncated.pdf"] = ("skipped", "corrupt PDF")
    _encrypted_pdf(root / "bad/encrypted.pdf")
    expect["bad/encrypted.pdf"] = ("skipped", "encrypted PDF")
    _scanned_pdf(root / "bad/scanned.pdf")
    expect["bad/scanned.pdf"] = ("skipped", "no text layer")
    put("bad/zero.txt", b"", "skipped", "empty file")
    put("bad/blank.md", "   \n\n\t\n", "skipped", "empty file")
    put("bad/binary.txt", os.urandom(20_000), "skipped", "binary data")
    put("bad/elf.html", b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 40, "skipped", "binary data")
    put(
        "bad/pdf_named.docx",
        make_pdf(root / "tmp.pdf", [["not a docx"]]).read_bytes(),
        "skipped",
        "not a .docx: the content is a PDF; rename the file to .pdf",
    )
    (root / "tmp.pdf").unlink()
    put("bad/tiff.tiff", b"II*\x00" + b"\x00" * 64, "skipped", "cannot read image")
    put("bad/slides.pptx", b"PK\x03\x04" + b"\x00" * 64, "skipped", "unsupported file type")
    if big:
        path = root / "bad/huge.txt"
        with path.open("wb") as fh:
            line = ("Customs clearance data line for the size test. " * 20 + "\n").encode()
            for _ in range(BIG_MB * 2**20 // len(line) + 1):
                fh.write(line)
        expect["bad/huge.txt"] = ("skipped", "file is 100 MB, over the")
    outside = root.parent / "outside.txt"
    outside.write_text("A file outside the corpus that must never be read.\n", encoding="utf-8")
    os.symlink(outside, root / "bad/outside_link.txt")
    expect["bad/outside_link.txt"] = ("skipped", "link points outside the corpus folder")
    os.symlink(root / "bad/loop_b.txt", root / "bad/loop_a.txt")
    os.symlink(root / "bad/loop_a.txt", root / "bad/loop_b.txt")
    expect["bad/loop_a.txt"] = ("skipped", "unreadable (Too many levels of symbolic links)")
    expect["bad/loop_b.txt"] = ("skipped", "unreadable (Too many levels of symbolic links)")
    os.symlink(root / "good/utf8.txt", root / "good/inside_link.txt")
    expect["good/inside_link.txt"] = ("landed", "本规定适用于本市行政区域")
    os.symlink(root / "bad", root / "bad/dir_loop")  # a folder link back to itself
    if hostile:
        _hostile(root, put, expect, big)
    return expect
