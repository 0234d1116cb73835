"""The Streamlit app, driven headless: what a reader sees for questions, filters, views, sources and bad states."""

from __future__ import annotations

import datetime
import html
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kb.embed.models import HashingEmbedder
from kb.index.build import build
from tests.conftest import one_file_index

APP = str(Path(__file__).parent.parent / "app.py")


def shown(at: AppTest) -> str:
    """Markdown and captions as the reader sees them (Markdown escapes removed)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return " ".join(parts).replace("\\", "")


def passages(at: AppTest) -> str:
    """The HTML the passages are drawn with."""
    return " ".join(h.proto.body for h in at.html)


def passage_text(at: AppTest) -> str:
    """The passages as read: highlight tags removed, entities decoded."""
    return html.unescape(re.sub(r"</?mark>", "", passages(at)))


def run_app(
    monkeypatch: pytest.MonkeyPatch, index: Path, query: str | None = None, params: dict[str, str] | None = None
) -> AppTest:
    monkeypatch.setenv("KB_INDEX", str(index))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    if query is not None:
        at.text_input(key="q").input(query).run()
    return at


def test_chinese_question_shows_citations_in_a_chinese_interface(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "七日内无理由退货")
    assert not at.exception
    assert "《示范电子商务法》第四条" in shown(at)
    assert "<mark>" in passages(at)
    assert at.radio(key="view").label == "视图"  # the interface follows the question's language
    assert at.query_params["q"] == ["七日内无理由退货"] or at.query_params["q"] == "七日内无理由退货"


def test_english_question_and_language_filter(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "live-stream talent")
    assert not at.exception
    assert "Rural E-commerce in Zhijiang, section 'Economic Base'" in shown(at)
    assert at.radio(key="view").label == "View"
    at.radio(key="lang").set_value("zh").run()
    assert not at.exception
    assert "Rural E-commerce" not in shown(at)
    assert "《" in shown(at)


def test_no_results_suggests_removing_filters(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index)
    at.multiselect(key="in_docs").set_value(["en/notes.txt"]).run()
    at.radio(key="lang").set_value("zh").run()
    at.text_input(key="q").input("live-stream talent").run()
    assert not at.exception
    assert "No passages matched. Try removing filters: Language, Documents." in at.warning[0].value


def test_answer_view_groups_passages_by_document(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "live-stream talent", params={"view": "answer"})
    assert not at.exception
    assert at.radio(key="view").value == "answer"
    assert "grouped by document" in shown(at)
    assert "**Rural E-commerce in Zhijiang**" in " ".join(m.value for m in at.markdown)
    assert "Live-stream e-commerce bases train local talent" in passage_text(at)


def test_open_source_shows_the_passage_with_its_neighbours(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "七日内无理由退货")
    at.button(
        key=next(b.key for b in at.button if b.key and b.key.startswith("open-zh/ecommerce_law.md"))
    ).click().run()
    assert not at.exception
    assert at.header[0].value == "示范电子商务法"
    text = shown(at)
    assert "《示范电子商务法》第四条" in text and "《示范电子商务法》第三条" in text  # the article and the one before
    assert at.query_params["page"] in ("source", ["source"])
    at.button[1].click().run()  # previous article
    assert not at.exception
    assert "**《示范电子商务法》第三条**" in " ".join(m.value for m in at.markdown).replace("\\", "")
    at.button[0].click().run()  # back to the results, question kept
    assert not at.exception
    assert at.text_input(key="q").value == "七日内无理由退货"
    assert "《示范电子商务法》第四条" in shown(at)


def test_link_reproduces_a_search(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, params={"q": "live-stream talent", "lang": "en", "mode": "keyword", "k": "3"})
    assert not at.exception
    assert at.text_input(key="q").value == "live-stream talent"
    assert at.radio(key="mode").value == "keyword"
    assert at.slider(key="k").value == 3
    assert "Rural E-commerce in Zhijiang" in shown(at)
    assert len([b for b in at.button if b.key and b.key.startswith("open-")]) <= 3


def test_bad_link_values_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, params={"mode": "magic", "k": "-5", "in": "no/such.md", "page": "source"})
    assert not at.exception
    assert at.radio(key="mode").value == "hybrid"
    assert at.slider(key="k").value == 1
    assert "no/such.md" in at.sidebar.warning[0].value


def test_export_lists_citations(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "七日内无理由退货")
    code = at.code[0].value
    assert code.startswith("1. 《示范电子商务法》第四条 (zh/ecommerce_law.md)")
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels[:2] == ["下载 Markdown", "下载 CSV"]  # then the references (tests/test_app_research.py)


def test_document_browser_lists_and_opens_documents(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index)
    at.radio(key="page_choice").set_value("docs").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 6 and "示范电子商务法" in set(table["Title"])
    at.selectbox(key="docs_choice").set_value("zh/ecommerce_law.md").run()
    at.button(key="docs_open_btn").click().run()
    assert not at.exception
    assert at.header[0].value == "示范电子商务法"


def test_no_index_says_which_command_builds_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(monkeypatch, tmp_path / "missing")
    assert not at.exception
    assert "python -m kb build" in at.warning[0].value


def test_damaged_index_shows_the_reason_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, index: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "index"
    shutil.copytree(index, broken)
    gen = (broken / "CURRENT").read_text().strip()
    segment = next((broken / gen).glob("chunks-*.sqlite"))
    segment.write_bytes(b"not a database")
    at = run_app(monkeypatch, broken)
    assert not at.exception
    assert "could not be loaded" in at.error[0].value and segment.name in at.error[0].value


def test_markup_inside_documents_is_shown_as_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = one_file_index(
        tmp_path,
        "tricky.txt",
        "# Not a heading\n\nThe notice says <script>alert(1)</script> and <b>bold</b> about customs "
        "rules.\n## Also not a heading\n\n* not a list [link](javascript:alert(2))\n",
    )
    at = run_app(monkeypatch, index, "customs rules notice")
    assert not at.exception
    body = passages(at)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script" not in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in body
    # Markdown is rendered at ingest (kb.ingest.markdown): the link's text stays, its javascript: target is gone.
    assert "* not a list link" in html.unescape(body) and "javascript:" not in body
    assert "Not a heading, section 'Also not a heading'" in shown(at)  # the heading is text in the citation
    assert not at.main.header  # no Markdown heading was made from the document
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("open-"))).click().run()
    assert not at.exception
    assert at.header[0].value == "Not a heading"
    # The only script on the source page is the app's own scroll-to-top; the document's stays text.
    assert "<script>alert" not in passages(at) and "&lt;script&gt;alert(1)" in passages(at)


def test_document_view_escapes_everything_but_its_own_scroll_script() -> None:
    from kb.chunk import Chunk
    from kb.present.render import document_html

    text = "# Title\n<script>alert(1)</script> first part. Second part <img src=x onerror=alert(2)>."
    chunks = [
        Chunk("d#0", "d", "T", 0, text[8:45], 8, 45, "en"),
        Chunk("d#1", "d", "T", 1, text[30:], 30, len(text), "en"),
    ]
    out = document_html(text, chunks, 1)
    assert out.count("<script>") == 1 and "getElementById('c1')" in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "<img" not in out
    assert html.unescape(re.sub(r"<[^>]+>", "", out.split("<script>")[0])) == text  # each character once


def test_quote_check_shows_verdict_location_and_diff(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, params={"page": "quote", "ui": "en"})
    at.text_area(key="quote").input("消费者有权自收到商品之日起七日内退货").run()
    assert not at.exception
    assert "Verbatim" in at.success[0].value
    assert "《示范电子商务法》第四条" in shown(at)
    assert at.query_params["quote"] in (
        "消费者有权自收到商品之日起七日内退货",
        ["消费者有权自收到商品之日起七日内退货"],
    )
    at.text_area(key="quote").input("消费者有权自收到商品之日起十日内退货").run()
    assert not at.exception
    assert "Close but altered" in at.warning[0].value
    assert "similarity 0.94" in shown(at)
    assert "<del" in passages(at) and "<ins" in passages(at)
    at.button(key="quote-open-1").click().run()
    assert not at.exception
    assert at.header[0].value == "示范电子商务法"
    assert "**《示范电子商务法》第四条**" in " ".join(m.value for m in at.markdown).replace("\\", "")


def test_level_filter_and_as_of_date(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "七日内无理由退货")
    at.multiselect(key="levels").set_value(["规范性文件"]).run()
    assert not at.exception
    assert "示范电子商务法" not in shown(at) and at.query_params["level"] in ("规范性文件", ["规范性文件"])
    at.multiselect(key="levels").set_value(["法律"]).run()
    assert "《示范电子商务法》第四条" in shown(at)
    at.date_input(key="as_of").set_value(datetime.date(2018, 6, 1)).run()  # before the law took effect
    assert not at.exception
    assert "没有匹配的段落" in at.warning[0].value and "时点" in at.warning[0].value
    at.date_input(key="as_of").set_value(datetime.date(2020, 6, 1)).run()
    assert "《示范电子商务法》第四条" in shown(at)


def test_cited_articles_open_from_the_passage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, corpus: Path) -> None:
    shutil.copytree(corpus, tmp_path / "corpus")
    (tmp_path / "corpus" / "zh" / "rules.txt").write_text(
        "网络交易实施细则\n\n第一条 经营者退货义务依照《示范电子商务法》第四条执行，另有约定的从其约定。\n"
        "第二条 平台应当公示退货规则。\n第三条 本细则自发布之日起施行。\n",
        encoding="utf-8",
    )
    build(tmp_path / "corpus", tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    at = run_app(monkeypatch, tmp_path / "index", "经营者退货义务 实施细则")
    assert not at.exception
    assert "本段引用：" in shown(at)
    button = next(b for b in at.button if b.key and b.key.startswith("xref-zh/rules.txt#"))
    assert button.label == "→ 《示范电子商务法》第四条"
    button.click().run()
    assert not at.exception
    assert at.header[0].value == "示范电子商务法"
    assert "**《示范电子商务法》第四条**" in " ".join(m.value for m in at.markdown).replace("\\", "")


def test_readme_app_command_serves_the_app(tmp_path: Path) -> None:
    """`bash scripts/app.sh` (the README's first command) brings up a healthy app on the shipped index."""
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(APP).parent
    proc = subprocess.Popen(
        ["bash", "scripts/app.sh", "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KB_INDEX": str(root / "index")},
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-2000:]
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"<title>Streamlit</title>" in r.read() or r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


EVIL = "http://127.0.0.1:8765/a"
HOSTILE_PARAMS = [
    {"q": f"![x]({EVIL})"},
    {"q": f"[Session expired - sign in again]({EVIL})"},
    {"q": f"see {EVIL} or www.example.com or admin@example.com"},
    {"in": f"![x]({EVIL})", "q": "退货"},
    {"page": "source", "doc": f"![x]({EVIL})"},
    {"page": "source", "doc": "x'"},
    {"page": "source", "doc": "x\\"},
]


def markdown_sources(at: AppTest) -> list[str]:
    """Every Markdown string the app hands Streamlit (text, captions, alerts, headers, button labels)."""
    groups = (at.markdown, at.caption, at.error, at.warning, at.info, at.success, at.header, at.title, at.button)
    return [str(getattr(e, "value", None) or getattr(e, "label", "")) for g in groups for e in g]


@pytest.mark.parametrize("params", HOSTILE_PARAMS, ids=lambda p: "&".join(p))
def test_url_parameters_never_render_as_links_or_images(
    monkeypatch: pytest.MonkeyPatch, index: Path, params: dict[str, str]
) -> None:
    at = run_app(monkeypatch, index, params={"ui": "en", **params})
    assert not at.exception
    sources = markdown_sources(at)
    assert any("127.0.0.1" in s or "x'" in s or "x\\" in s for s in sources)  # the value is shown, as text
    for s in sources:
        assert not re.search(r"(?<!\\)\]\(", s), s  # no [text](url) or ![alt](url) left for Markdown to read
        assert not re.search(r"https?://|www\.|[^\u2060]@example", s), s  # no autolinks either (kb.export.md_text)


@pytest.mark.parametrize(
    "params",
    [
        {"as_of": "1066-10-14"},
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
        {"as_of": "2020-02-30"},
        {"k": "1e9"},
        {"chunk": "-5", "page": "source"},
    ],
)
def test_odd_url_values_give_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, index: Path, params: dict[str, str]
) -> None:
    at = run_app(monkeypatch, index, params={"ui": "en", "q": "退货", **params})
    assert not at.exception
    if any(k in params for k in ("as_of", "from", "to")):
        assert any("ignored" in w.value for w in at.sidebar.warning), [w.value for w in at.sidebar.warning]


def test_quote_with_a_nul_byte_from_the_url_is_answered(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, params={"ui": "en", "page": "quote", "quote": "消费者\x00有权"})
    assert not at.exception


def test_pdf_source_shows_the_page_with_the_passage_marked(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    """Issue 20: a PDF passage's source view draws its page with the passage's lines marked, beside the text."""
    at = run_app(monkeypatch, index, params={"page": "source", "doc": "report.pdf", "chunk": "0"})
    assert not at.exception
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert captions == ["Page 1, the passage marked", "Page 2, the passage marked"]  # the passage spans both
    assert "could not be placed" not in shown(at)
