"""The CLI's one-line snippet shows the matching words even when they lie deep in a long passage."""

from __future__ import annotations

from kb.cite import snippet


def test_snippet_starts_before_a_late_match() -> None:
    text = "前言。" * 150 + "消费者有权自收到商品之日起七日内退货，且无需说明理由。" + "后文。" * 200
    at = text.index("七日内")
    out = snippet(text, [(at, at + 3)])
    assert "**七日内**" in out and out.startswith("…") and out.endswith("…")
    assert len(out) <= 310


def test_snippet_of_an_early_match_starts_at_the_beginning() -> None:
    out = snippet("short MATCH text", [(6, 11)])
    assert out == "short **MATCH** text"
