"""Run-together words in pdf01's passages: the hand-judged 300-word sample still matches the passages the code
makes, and fewer than 2% of its words are glued (issue 17)."""

from __future__ import annotations

from pathlib import Path

from kb.chunk import read_passages
from tests.conftest import load_script

ROOT = Path(__file__).parent.parent


def test_pdf01_judged_sample_is_the_passages_sample_and_under_two_percent_glued() -> None:
    script = load_script("pdf_words")
    doc, chunks = read_passages(ROOT / "corpus", script.DOC_ID)
    judged = script.read_judged()
    # A change to the PDF cleaning or chunking that moves or changes these words needs a new hand check.
    assert [(j.offset, j.word) for j in judged] == script.sample(doc, chunks)
    assert len(judged) == 300 and all(doc.text[j.offset : j.offset + len(j.word)] == j.word for j in judged)
    assert {j.after for j in judged} <= set(script.VERDICTS) and {j.before for j in judged} <= set(script.VERDICTS)
    rates = script.rates(judged)
    assert rates["joined_after"] < 0.02, rates
    assert rates["joined_before"] > rates["joined_after"], rates  # the repair is what brought it down


def test_raw_offsets_skip_only_the_spaces_the_repair_inserted() -> None:
    script = load_script("pdf_words")
    assert script.raw_offsets("in this category now", "in thiscategory now") == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
    ]
