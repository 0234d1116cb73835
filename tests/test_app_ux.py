"""The app as a first user meets it: a visible "loading models…" state while the warm-up runs, and every page
in one language."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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
