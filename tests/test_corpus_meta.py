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
    assert len(zh) == 19 and all(row[3] and row[4] and row[6] for row in zh), zh
    # Validity for all but zh04 and zh08, left open in metadata.csv until checked (see its note).
    assert sum(bool(row[5]) for row in zh) >= 17, zh


def test_facets_count_validity_and_the_filter_finds_documents_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "--index", str(ROOT / "index"), "--facets"]) == 0
    facets = json.loads(capsys.readouterr().out)
    assert sum(facets["validity"].values()) >= 17 and facets["validity"].get("现行有效", 0) >= 17


def test_validity_filter_finds_laws_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    index = ["--index", str(ROOT / "index")]
    assert main(["search", "网购商品无理由退货期限", *index, "--validity", "现行有效", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    hits = hits.get("hits", hits) if isinstance(hits, dict) else hits
    assert hits and all(h["meta"]["validity"] == "现行有效" for h in hits), hits
