"""Metadata of the bundled corpus is complete: every zh document has level, issuer, a date and a validity, and
the listings show them (no always-empty column)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.cli import main

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.model


def test_docs_listing_has_a_header_and_no_always_empty_column(capsys: pytest.CaptureFixture[str]) -> None:
    from kb.cli import main

    assert main(["docs", "--index", str(ROOT / "index")]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["doc_id", "lang", "passages", "level", "issuer", "validity", "date", "title"]
    for col, name in enumerate(lines[0]):
        assert any(row[col] for row in lines[1:]), f"column {name} is empty in every row"
    zh = [row for row in lines[1:] if row[0].startswith("zh/")]
    assert len(zh) == 19 and all(row[3] and row[4] and row[5] and row[6] for row in zh), zh
    # The bundled 2019 反不正当竞争法 and 2016 网络安全法 were revised in 2025 (metadata.csv gives the dates).
    assert {row[0] for row in zh if row[5] == "已修改"} == {
        "zh/zh04_anti_unfair_competition_law.txt",
        "zh/zh08_cybersecurity_law.txt",
    }


def test_facets_count_validity_and_the_filter_finds_documents_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "--index", str(ROOT / "index"), "--facets"]) == 0
    facets = json.loads(capsys.readouterr().out)
    assert facets["validity"] == {"现行有效": 17, "已修改": 2}


def test_validity_filter_finds_laws_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    index = ["--index", str(ROOT / "index")]
    assert main(["search", "网购商品无理由退货期限", *index, "--validity", "现行有效", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    hits = hits.get("hits", hits) if isinstance(hits, dict) else hits
    assert hits and all(h["meta"]["validity"] == "现行有效" for h in hits), hits


def test_revised_laws_are_hidden_by_default_and_badged_when_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    index = ["--index", str(ROOT / "index"), "-k", "5", "--json"]
    assert main(["search", "商业秘密的定义", *index]) == 0
    hidden = json.loads(capsys.readouterr().out)
    assert hidden and all(h["doc_id"] != "zh/zh04_anti_unfair_competition_law.txt" for h in hidden), hidden
    assert main(["search", "商业秘密的定义", *index, "--include-repealed"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["doc_id"] == "zh/zh04_anti_unfair_competition_law.txt" and shown[0]["meta"]["validity"] == "已修改"
    monkeypatch.setenv("KB_INDEX", str(ROOT / "index"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["q"] = "商业秘密的定义"
    at.query_params["repealed"] = "1"
    at.run()
    assert not at.exception
    heads = [m.value for m in at.markdown if "反不正当竞争法" in m.value]
    assert heads and all(":orange-badge[已修改]" in h for h in heads), heads
