"""The Streamlit app, driven headless: a question shows cited passages; no index says how to build one."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).parent.parent / "app.py")


def shown(at: AppTest) -> str:
    """The citations as the reader sees them (Markdown escapes removed)."""
    return " ".join(m.value for m in at.markdown).replace("\\", "")


def run_app(monkeypatch: pytest.MonkeyPatch, index: Path, query: str | None = None) -> AppTest:
    monkeypatch.setenv("KB_INDEX", str(index))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if query is not None:
        at.text_input[0].input(query).run()
    return at


def test_question_shows_citations(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "七日内无理由退货")
    assert not at.exception
    assert "《示范电子商务法》第四条" in shown(at)


def test_english_question_and_filter(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index, "live-stream talent")
    assert not at.exception
    assert "Rural E-commerce in Zhijiang, section 'Economic Base'" in shown(at)
    at.sidebar.radio[0].set_value("zh").run()
    assert not at.exception
    assert "Rural E-commerce" not in shown(at)


def test_no_index_says_which_command_builds_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(monkeypatch, tmp_path / "missing")
    assert not at.exception
    assert "python -m kb build" in at.warning[0].value


def test_quote_check_shows_verdict_location_and_diff(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    at = run_app(monkeypatch, index)
    at.text_area[0].input("消费者有权自收到商品之日起七日内退货").run()
    assert not at.exception
    assert "Verbatim" in at.success[0].value
    assert "《示范电子商务法》第四条" in shown(at)
    at.text_area[0].input("消费者有权自收到商品之日起十日内退货").run()
    assert not at.exception
    assert "Close but altered" in at.warning[0].value
    assert "similarity 0.94" in shown(at)
