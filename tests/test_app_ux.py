"""The app as a first user meets it: a visible "loading models…" state while the warm-up runs, and every page
in one language."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kb.present.i18n import STRINGS
from kb.search.base import SearcherBase

APP = str(Path(__file__).parent.parent / "app.py")


def test_page_says_models_are_loading_until_the_warm_up_is_done(
    monkeypatch: pytest.MonkeyPatch, index: Path, tmp_path: Path
) -> None:
    release, entered = threading.Event(), threading.Event()

    def slow_warm(self: SearcherBase) -> None:
        entered.set()
        release.wait(30)

    monkeypatch.setattr(SearcherBase, "warm", slow_warm)
    own = tmp_path / "index"  # its own cached searcher and warm-up
    shutil.copytree(index, own)
    monkeypatch.setenv("KB_INDEX", str(own))
    at = AppTest.from_file(APP, default_timeout=60)
    try:
        at.run()
        assert entered.wait(10)
        assert any("Loading models" in i.value for i in at.info), [i.value for i in at.info]
    finally:
        release.set()
    for _ in range(50):
        at.run()
        if not any("Loading models" in i.value for i in at.info):
            break
    assert not any("Loading models" in i.value for i in at.info)
    assert not at.exception


def _run(monkeypatch: pytest.MonkeyPatch, index: Path, params: dict[str, str]) -> AppTest:
    monkeypatch.setenv("KB_INDEX", str(index))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    return at


def interface_text(at: AppTest) -> list[str]:
    """What the interface itself says (labels, headings, messages, buttons), not the documents' text."""
    out = [
        w.label
        for kind in (
            "text_input",
            "text_area",
            "radio",
            "multiselect",
            "selectbox",
            "checkbox",
            "date_input",
            "slider",
            "button",
        )
        for w in getattr(at, kind)
    ]
    out += [e.value for kind in ("header", "info", "success", "warning", "error") for e in getattr(at, kind)]
    return [x for x in out if x]


def foreign(texts: list[str], lang: str) -> list[str]:
    """Interface strings of the other language found in texts (strings the same in both languages excepted)."""
    other = 0 if lang == "zh" else 1
    words = {pair[other] for pair in STRINGS.values() if pair[0] != pair[1] and "{" not in pair[other]}
    shortest = 4 if lang == "en" else 8  # shorter strings could be part of a document's own title
    clean = [x.replace("*", "").replace("\\", "") for x in texts]
    return [x for x in clean if x in words or any(w in x for w in words if len(w) >= shortest)]


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize(
    ("page", "extra"),
    [
        ("search", {"q": "七日内无理由退货"}),
        ("search", {"q": "seven days return"}),
        ("docs", {}),
        ("quote", {"quote": "消费者有权自收到商品之日起十日内退货"}),
        ("quote", {"quote": "consumers may return goods"}),
        ("source", {"doc": "zh/ecommerce_law.md", "chunk": "1"}),
        ("source", {"doc": "en/rural_commerce.md", "chunk": "0"}),
    ],
)
def test_every_page_speaks_one_language(
    monkeypatch: pytest.MonkeyPatch, index: Path, page: str, extra: dict[str, str], lang: str
) -> None:
    at = _run(monkeypatch, index, {"page": page, "ui": lang, **extra})
    assert not at.exception
    texts = interface_text(at)
    assert texts
    assert not foreign(texts, lang), foreign(texts, lang)


def test_quote_verdict_follows_the_interface(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = _run(monkeypatch, index, {"page": "quote", "ui": "zh", "quote": "消费者有权自收到商品之日起十日内退货"})
    assert "相近但有改动" in at.warning[0].value and "altered" not in at.warning[0].value


def test_filters_only_on_the_search_page(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = _run(monkeypatch, index, {"page": "search", "q": "七日内无理由退货"})
    assert "lang" in [r.key for r in at.radio] and "levels" in [m.key for m in at.multiselect]
    at.multiselect(key="levels").set_value(["法律"]).run()
    for page in ("docs", "quote"):
        at.radio(key="page_choice").set_value(page).run()
        assert not at.exception
        assert "lang" not in [r.key for r in at.radio] and not at.multiselect and not at.slider
    at.radio(key="page_choice").set_value("search").run()
    assert at.multiselect(key="levels").value == ["法律"]  # kept while hidden


def test_documents_page_shows_no_none(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = _run(monkeypatch, index, {"page": "docs", "ui": "en"})
    frame = at.dataframe[0].value
    assert not (frame.astype(str) == "None").any().any()
