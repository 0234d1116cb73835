"""Markdown is rendered at ingest: no escape or emphasis mark reaches a passage, offsets stay exact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kb.chunk import read_passages
from kb.ingest.markdown import looks_like_markdown, render_line, render_markdown
from kb.search.searcher import Searcher

ROOT = Path(__file__).parent.parent
# A CommonMark escape (backslash + ASCII punctuation) or a strong-emphasis mark as a reader would see it.
LEAK = re.compile(r"\\[!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~]|\*\*\S|\S\*\*")


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            r"**2\.2 Protection of the lawful rights and interests of minors**",
            "2.2 Protection of the lawful rights and interests of minors",
        ),
        (r"1. 9\. Suicide and self-harm", "1. 9. Suicide and self-harm"),
        (r"Jitterbit's music version \- Soda Music", "Jitterbit's music version - Soda Music"),
        (r"5 \* 3 is *fifteen* and __bold__ and ***both***", "5 * 3 is fifteen and bold and both"),
        ("see [the rules](https://example.com/a_(b)) and ![logo](x.png)", "see the rules and logo"),
        ("code `a*b*` and `\\.` stay literal", "code a*b* and \\. stay literal"),
        ("snake_case_name and 2*3*4 are not emphasis", "snake_case_name and 2*3*4 are not emphasis"),
        ("第二十五条 消费者有权自收到商品之日起七日内退货", "第二十五条 消费者有权自收到商品之日起七日内退货"),
    ],
)
def test_inline_markdown_is_rendered(source: str, shown: str) -> None:
    assert render_line(source) == shown


def test_blocks_keep_headings_and_drop_fences_rules_and_quote_marks() -> None:
    text = "# Title\n\n> quoted **text**\n\n***\n```\nraw *code*\n```\nend"
    assert render_markdown(text) == "# Title\n\nquoted text\n\n\nraw *code*\nend"


def test_plain_statutes_are_unchanged() -> None:
    for path in sorted((ROOT / "corpus" / "zh").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        assert render_markdown(text) == text, path.name
    assert not looks_like_markdown("A plain sentence with one * star.")


def test_rendered_markdown_file_has_exact_offsets(tmp_path: Path) -> None:
    (tmp_path / "rules.md").write_text(
        "# Rules\n\n**2\\.2 Minors**\n\nUsers under 18 \\- *minors* \\- may not stream. See [site](http://x.org).\n",
        encoding="utf-8",
    )
    doc, chunks = read_passages(tmp_path, "rules.md")
    assert "2.2 Minors" in doc.text and "\\" not in doc.text and "*" not in doc.text
    for c in chunks:
        assert doc.text[c.char_start : c.char_end] == c.text


@pytest.mark.model
def test_no_bundled_passage_holds_a_markdown_escape() -> None:
    """Every passage of the shipped index (built from corpus/), scanned."""
    searcher = Searcher(ROOT / "index")
    leaks = []
    for row in searcher.documents():
        _, chunks = searcher.source(row["doc_id"])
        leaks += [f"{c.chunk_id}: {m.group(0)!r}" for c in chunks for m in LEAK.finditer(c.text)]
    assert not leaks, leaks[:10]
