"""The research views of the app, driven headless: version comparison, "what changed since" on an old-version
hit, "cited by N" on the article view, and reference export buttons."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP, passages, shown
from tests.test_research import ECOMMERCE, SPC, build_research

OLD = "法律/公司法(2018-10-26).md"
NEW = "法律/公司法(2023-12-29).md"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_research(tmp_path_factory.mktemp("app-research"))


def run(monkeypatch: pytest.MonkeyPatch, index: Path, params: dict[str, str]) -> AppTest:
    monkeypatch.setenv("KB_INDEX", str(index))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def test_version_comparison_in_two_columns(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"page": "diff", "law": "公司法", "vfrom": OLD, "vto": NEW, "ui": "en"})
    assert not at.exception
    assert any("2 changed, 2 added, 1 deleted, 1 moved, 3 unchanged (3 renumbered)" in i.value for i in at.info)
    body = passages(at)
    assert "<ins style='background:#dfd;color:#060;text-decoration:underline'>、职工</ins>" in body
    assert "<b style='color:#c62828'>deleted</b> &nbsp; 第五条 → —" in body
    assert "unchanged" not in body  # unchanged articles are hidden until asked for
    labels = [b.label for b in at.button]
    assert "Open 第一条 (2018)" in labels and "Open 第八条 (2023)" in labels
    at.multiselect(key="diff_statuses").set_value(["unchanged"]).run()
    assert passages(at).count("<b style='color:#666'>unchanged</b>") == 3
    next(b for b in at.button if b.label == "Open 第五条 (2023)").click().run()  # 2018's 第四条, renumbered
    assert at.query_params["page"] in (["source"], "source")
    assert "《中华人民共和国公司法》第五条" in shown(at)


def test_an_old_version_hit_offers_what_changed_since(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"q": "公司从事经营活动 遵守社会公德 商业道德", "repealed": "1", "ui": "en"})
    assert not at.exception
    since = [b for b in at.button if b.label == "What changed since this version"]
    assert since, "the 2018 article 5 (deleted in 2023) is a hit from an old version"
    since[0].click().run()
    assert not at.exception
    assert at.query_params["page"] in (["diff"], "diff")
    first = at.html[0].proto.body
    assert "第五条 → —" in first  # the article asked about comes first
    assert at.selectbox(key="diff_from").value == OLD and at.selectbox(key="diff_to").value == NEW


def test_the_article_view_says_what_cites_it(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"page": "source", "doc": ECOMMERCE, "chunk": "3", "ui": "en"})
    assert not at.exception
    assert "《中华人民共和国电子商务法》第三十八条" in shown(at)
    assert [e.label for e in at.expander if e.label.startswith("Cited by")] == ["Cited by 4 · 第三十八条"]
    citing = [b for b in at.button if b.key and b.key.startswith("citedby-")]
    assert len(citing) == 4
    assert "司法解释" in shown(at) and "地方性法规" in shown(at)
    citing[0].click().run()
    assert at.query_params["doc"] in ([SPC], SPC)


def test_an_article_nobody_cites_says_so(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"page": "source", "doc": ECOMMERCE, "chunk": "1", "ui": "en"})
    assert not at.exception
    assert [e.label for e in at.expander if e.label.startswith("Cited by")] == ["Cited by 0 · 第一条"]
    assert "No other indexed text cites this article." in shown(at)


def test_results_export_as_references(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"q": "平台 资质 审核 义务", "ui": "en"})
    assert not at.exception
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels[-4:] == ["GB/T 7714", "BibTeX", "CSL-JSON", "RIS"]
    assert "References" in shown(at)


def test_the_article_view_counts_what_cites_its_earlier_version(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run(monkeypatch, index, {"page": "source", "doc": NEW, "chunk": "6", "ui": "en"})
    assert not at.exception
    assert [e.label for e in at.expander if e.label.startswith("Cited by")] == ["Cited by 1 · 第六条"]
    assert "(cites the earlier version: 2018 第七条)" in shown(at)
