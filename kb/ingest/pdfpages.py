"""Page furniture of a PDF: the printed page numbers and the running headers and footers.

A book's PDF page 140 is printed "Page|126"; journals repeat "Entrep. Sustain. 2023, 1(1)" at the top of every
page. Inside a passage they interrupt the text and contradict the citation. `find_furniture` names those lines
among each page's first and last lines and returns the printed numbers, which citations show beside the PDF page
index ("p. 140 (printed p. 126)"). The lines stay in the document text (the page reads as printed, and offsets
index it); kb.ingest.pdf records where they lie and the chunker keeps every passage clear of them.
Kept apart from kb.ingest.pdf (extraction and word repair) on purpose.
"""

from __future__ import annotations

import re
from collections import Counter

# Lines a page may open or close with: "Page|126", "126", "- 126 -", "Page 12 of 40".
_NUMBER_LINE = re.compile(r"^\s*(?:page\s*[|:.]?\s*)?[-–—(]?\s*(\d{1,4})\s*[-–—)]?\s*(?:of\s+\d{1,4}\s*)?$", re.I)
# A journal's running head: abbreviated title, year, volume(issue) ("Entrep. Sustain. 2023, 1(1):1-2").
_JOURNAL_HEAD = re.compile(r"^\s*[A-Z][\w.&' -]{2,60}\.?\s+(?:19|20)\d\d,\s*\d+\s*\(\d+\)(?::\s*\d+(?:[-–]\d+)?)?\s*$")
EDGE = 3  # lines at the top and at the bottom of a page that may be furniture
# A printed numbering is believed when this share of the pages agrees on one offset from the PDF index.
MIN_SHARE = 0.3
# A line is a running header or footer when it opens or closes at least this many pages (digits ignored).
MIN_REPEATS = 3


def _edges(lines: list[str]) -> list[int]:
    """Indices of the first and last EDGE non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:EDGE] + filled[-EDGE:]))


def _shape(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def printed_offset(pages: list[str]) -> int | None:
    """printed number - PDF page number, when enough pages print their number on an edge line."""
    votes: Counter[int] = Counter()
    for number, page in enumerate(pages, start=1):
        lines = page.split("\n")
        offsets = {int(m.group(1)) - number for i in _edges(lines) if (m := _NUMBER_LINE.match(lines[i]))}
        votes.update(offsets)
    if not votes:
        return None
    offset, count = votes.most_common(1)[0]
    with_text = sum(1 for p in pages if p.strip())
    return offset if count >= max(1, MIN_SHARE * with_text) else None


def find_furniture(pages: list[str]) -> tuple[list[frozenset[int]], list[str | None]]:
    """Each page's furniture (indices of its printed-number and running header/footer lines) and printed number."""
    offset = printed_offset(pages)
    shapes: Counter[str] = Counter()
    for page in pages:
        lines = page.split("\n")
        shapes.update({_shape(lines[i]) for i in _edges(lines)})
    # Short, no sentence end: a heading line repeated, not a sentence that happens to recur at a page edge.
    running = {
        s for s, n in shapes.items() if n >= MIN_REPEATS and 3 <= len(s.strip("# ")) <= 80 and s[-1:] not in ".。!?！？"
    }
    found, labels = [], []
    for number, page in enumerate(pages, start=1):
        lines = page.split("\n")
        lines_found, printed = set(), None
        for i in _edges(lines):
            m = _NUMBER_LINE.match(lines[i])
            # A number that says it is one ("Page|159") counts even where the numbering jumps; a bare number
            # only when it agrees with the offset most pages show.
            said = bool(m) and "page" in lines[i].lower()
            if m and (said or (offset is not None and int(m.group(1)) - number == offset)):
                lines_found.add(i)
                printed = m.group(1)
            elif _shape(lines[i]) in running or _JOURNAL_HEAD.match(lines[i]):
                lines_found.add(i)
        found.append(frozenset(lines_found))
        if printed is None and offset is not None and number + offset >= 1 and page.strip():
            printed = str(number + offset)  # an unnumbered page inside the numbered run
        labels.append(printed)
    return found, labels


def label_runs(labels: list[str | None]) -> str:
    """Printed numbers as compact runs for the document's metadata: "15:1" = PDF page 15 is printed 1, and the
    pages after it count on until the next run; pages before the first run have none. Empty: no labels."""
    runs, prev = [], None
    for number, label in enumerate(labels, start=1):
        if label is None or not label.isdigit():
            prev = None
            continue
        offset = int(label) - number
        if offset != prev:
            runs.append(f"{number}:{label}")
        prev = offset
    return ",".join(runs)


def printed_page(runs: str, page: int) -> str | None:
    """The printed number of PDF page `page` under `label_runs` runs, or None."""
    best = None
    for run in runs.split(",") if runs else ():
        first, _, label = run.partition(":")
        if first.isdigit() and label.isdigit() and int(first) <= page:
            best = str(int(label) + page - int(first))
    return best
