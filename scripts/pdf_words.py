"""Run-together words in pdf01's passages: a fixed random sample of 300 words, judged by hand.

The sample is drawn (seed 17) from the words of the passages as the index stores them, after the run-on repair
(kb.ingest.pdf.repair_runs); each word is also shown as the run of letters it was before the repair, at the
same place of the unrepaired text. The judged file (tests/data/pdf01_words_judged.tsv) holds a verdict for each:
`ok`, or `joined` when two or more words are glued ("thiscategory"); `split-wrong` marks a word the repair cut
that should have stayed whole (counted apart).

    python scripts/pdf_words.py                  # rates from the judged file, checked against a fresh reading
    python scripts/pdf_words.py --write FILE     # a new, unjudged sample (verdicts to be filled in by hand)
"""

from __future__ import annotations

import argparse
import bisect
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from kb.chunk import Chunk, read_passages
from kb.errors import KbError
from kb.ingest.document import Document

ROOT = Path(__file__).resolve().parent.parent
DOC_ID = "pdf/pdf01_cbec_book_future_of_cross_border_ecommerce.pdf"
JUDGED = ROOT / "tests" / "data" / "pdf01_words_judged.tsv"
SIZE, SEED = 300, 17
_WORD = re.compile(r"[A-Za-z]+")
VERDICTS = ("ok", "joined", "split-wrong")


@dataclass(frozen=True)
class Word:
    offset: int  # in the document text (after repair)
    word: str
    raw: str  # the run of letters holding it in the unrepaired text
    context: str


@dataclass(frozen=True)
class Judged:
    offset: int
    word: str
    raw: str
    after: str  # verdict on the word as stored
    before: str  # verdict on the unrepaired run


def passage_words(doc: Document, chunks: list[Chunk]) -> list[tuple[int, str]]:
    """Every word (a run of ASCII letters) of the passages, once each by its offset in the document text."""
    seen: dict[int, str] = {}
    for chunk in chunks:
        for m in _WORD.finditer(chunk.text):
            seen.setdefault(chunk.char_start + m.start(), m[0])
    return sorted(seen.items())


def sample(doc: Document, chunks: list[Chunk], size: int = SIZE, seed: int = SEED) -> list[tuple[int, str]]:
    """The fixed sample: `size` words drawn with random.Random(seed), in reading order."""
    words = passage_words(doc, chunks)
    return sorted(random.Random(seed).sample(words, size))


def raw_offsets(repaired: str, raw: str) -> list[int]:
    """For each character of the repaired text, its offset in the unrepaired one (the repair only inserts spaces).

    Raises:
        KbError: the texts differ by more than inserted spaces.
    """
    out, j = [], 0
    for ch in repaired:
        if j < len(raw) and raw[j] == ch:
            out.append(j)
            j += 1
        elif ch == " ":
            out.append(j)  # a space the repair put between two words
        else:
            raise KbError(f"the unrepaired text differs at {j}: {raw[j : j + 20]!r} vs {ch!r}")
    if j != len(raw):
        raise KbError("the unrepaired text is longer than the repaired one with its spaces taken out")
    return out


def with_raw(doc: Document, raw_text: str, picked: list[tuple[int, str]]) -> list[Word]:
    """The sampled words with the unrepaired run at the same place and a little context."""
    where = raw_offsets(doc.text, raw_text)
    runs = [(m.start(), m.end()) for m in _WORD.finditer(raw_text)]
    starts = [s for s, _ in runs]
    out = []
    for offset, word in picked:
        pos = where[offset]
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        s, e = runs[i]
        context = " ".join(doc.text[max(0, offset - 30) : offset + len(word) + 30].split())
        out.append(Word(offset, word, raw_text[s:e] if s <= pos < e else word, context))
    return out


def read_judged(path: Path = JUDGED) -> list[Judged]:
    """The judged sample: offset, word, unrepaired run, verdict after, verdict before (tab-separated)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("offset\t"):
            continue
        offset, word, raw, after, before = line.split("\t")[:5]
        out.append(Judged(int(offset), word, raw, after, before))
    return out


def rates(judged: list[Judged]) -> dict[str, float]:
    """Shares of the sample: glued words after and before the repair, words cut wrongly by it."""
    n = len(judged)
    return {
        "joined_after": sum(j.after == "joined" for j in judged) / n,
        "joined_before": sum(j.before == "joined" for j in judged) / n,
        "split_wrong": sum(j.after == "split-wrong" for j in judged) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--write", type=Path, help="write a new unjudged sample here")
    args = parser.parse_args(argv)
    try:
        doc, chunks = read_passages(args.corpus, DOC_ID)
        picked = sample(doc, chunks)
        if args.write:
            from kb.ingest.pdf import read_pdf

            raw = read_pdf(args.corpus / DOC_ID, repair=False).text
            lines = ["offset\tword\traw\tafter\tbefore\tcontext"]
            lines += [f"{w.offset}\t{w.word}\t{w.raw}\t\t\t{w.context}" for w in with_raw(doc, raw, picked)]
            args.write.write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"{len(picked)} words written to {args.write}; fill in the verdicts ({', '.join(VERDICTS)})")
            return 0
        judged = read_judged()
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if [(j.offset, j.word) for j in judged] != picked:
        print("error: the judged words are not the sample of the passages read now: re-judge", file=sys.stderr)
        return 1
    for name, value in rates(judged).items():
        print(f"{name}: {100 * value:.1f}% of {len(judged)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
