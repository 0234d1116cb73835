"""PDF -> text with exact page spans, cleaned of line-break hyphens and run-together words, its page furniture marked.

pypdf runs in a child Python, killed after a deadline; its warnings come back as log records.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import pathlib
import re
import subprocess
import sys
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import groupby

import wordsegment

from kb import config
from kb.errors import IngestError
from kb.ingest.scans import ScanResult, ocr_missing_pages

logger = logging.getLogger(__name__)

PAGE_SEP = "\n\n"
TIMEOUT_S = config.PDF_TIMEOUT_S
MAX_PAGES = config.MAX_PAGES

# wordsegment's 333k-word list comes from web n-gram counts, so it knows brands and names
# ("Alibaba", "Foxconn", "Dongguan") and rarer real words ("traceability") that wordninja
# splits; its tail is web junk ("ofthe"), so a split part must also be common enough.
# Minimum count of a part by length: short parts can form by chance, long ones hardly.
_PART_MIN_COUNT = {3: 5e7, 4: 1e7, 5: 3e6, 6: 1.5e5, 7: 1.5e5}
_LONG_PART_MIN_COUNT = 2e4
# Junk joins top out near 1e6 ("ofthe"); a run counted this often is a word: skip the (slow) DP.
_KNOWN_COUNT = 1e6
# Two- and one-letter entries are mostly abbreviations ("th", "ve"); only these may be parts.
_SHORT_WORDS = frozenset(
    [
        "a",
        "i",
        "an",
        "am",
        "as",
        "at",
        "be",
        "by",
        "do",
        "go",
        "he",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "of",
        "on",
        "or",
        "so",
        "to",
        "up",
        "us",
        "we",
    ]
)
_MIN_RUN = 6  # shorter run-ons ("ofa", "isa") are too ambiguous to split blind
SUSPICIOUS_LEN = 15

# A run of ASCII letters not touching any other letter (so "café", CJK text and mixed-script
# words are left alone); digits may touch it ("Thereareonlyaround400").
_RUN_RE = re.compile(r"(?<![^\W\d_])[A-Za-z]+(?![^\W\d_])")
_HYPHEN_RE = re.compile(r"(?<![^\W\d_])([A-Za-z]+)([-\u00ad])\n[ \t]*([A-Za-z]+)")
_URLISH_RE = re.compile(r"://|www\.|@|\.(?:com|org|net|edu|gov|int|io|cn|uk|in|pk)\b", re.I)
_BLANKS_RE = re.compile(r"\n{4,}")  # 4 newlines = 3 blank lines


@dataclass(frozen=True)
class PdfText:
    """A PDF's text and where each page lies in it."""

    text: str
    pages: tuple[tuple[int, int, int], ...]  # (page number from 1, char_start, char_end)
    repaired_words: int
    scan: ScanResult = field(default_factory=ScanResult)  # the pages read by OCR, and those skipped (kb.ingest.scans)
    printed: tuple[str | None, ...] = ()  # each page's printed number (kb.ingest.pdfpages), None when unknown
    # (char_start, char_end) of each printed page number and running header/footer: in the text, never in a passage
    furniture: tuple[tuple[int, int], ...] = ()


def read_pdf(path: pathlib.Path, repair: bool = True) -> PdfText:
    """Extract, clean and join the text of every page of a PDF.

    Args:
        path: the PDF file.
        repair: split run-together words ("CollegeofEconomics" -> "College of Economics").

    Raises:
        IngestError: encrypted, corrupt, unreadable in time, or without a text layer.
    """
    from kb.ingest.pdfpages import find_furniture

    raws, scan = ocr_missing_pages(path, _extract_bounded(path))
    # Running headers, footers and printed page numbers on each page (kb.ingest.pdfpages): kept, but marked.
    furniture, printed = find_furniture(raws)
    return pages_to_text(path, raws, scan, repair, tuple(printed), furniture)


def pages_to_text(
    path: pathlib.Path,
    raws: list[str],
    scan: ScanResult,
    repair: bool = True,
    printed: tuple[str | None, ...] = (),
    furniture: list[frozenset[int]] | None = None,
) -> PdfText:
    """Clean and join page texts (text layer or OCR) into one PdfText with page spans.

    Args:
        furniture: for each page, the indices of its lines (split at "\n") that are page furniture; they are kept
            as printed, cleaned apart from the text around them, and their spans recorded.
    """
    cleaned = [
        clean_page_parts(raw, furniture[n] if furniture else frozenset(), repair=repair) for n, raw in enumerate(raws)
    ]
    spans: list[tuple[int, int, int]] = []
    marked: list[tuple[int, int]] = []
    pos = 0
    for number, (page, _, page_marks) in enumerate(cleaned, start=1):
        spans.append((number, pos, pos + len(page)))
        marked += [(pos + s, pos + e) for s, e in page_marks]
        pos += len(page) + len(PAGE_SEP)
    text = PAGE_SEP.join(page for page, _, _ in cleaned)
    repaired = sum(n for _, n, _ in cleaned)
    if not text.strip():
        why = "; ".join(f"p.{n}: {r}" for n, r in sorted(scan.skipped.items())[:3])
        raise IngestError(str(path), f"no text layer, and OCR read no page ({why or 'the pages are blank'})")
    logger.debug("%s: %d pages, %d chars, %d words repaired", path, len(spans), len(text), repaired)
    return PdfText(
        text=text, pages=tuple(spans), repaired_words=repaired, scan=scan, printed=printed, furniture=tuple(marked)
    )


def clean_page_parts(
    raw: str, furniture: Collection[int], repair: bool = True
) -> tuple[str, int, list[tuple[int, int]]]:
    """One page cleaned around its furniture lines: its text, the words split, and the furniture's spans in it.

    The runs of lines between furniture lines are cleaned apart (a hyphen never joins across a header); a furniture
    line is kept as printed, only trimmed, on a line of its own.
    """
    if not furniture:
        text, count = clean_page(raw, repair=repair)
        return text, count, []
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    count, pos = 0, 0
    for is_furniture, group in groupby(enumerate(raw.split("\n")), key=lambda item: item[0] in furniture):
        lines = [line for _, line in group]
        if is_furniture:
            piece = "\n".join(" ".join(line.split()) for line in lines)
        else:
            piece, n = clean_page("\n".join(lines), repair=repair)
            count += n
        if not piece:
            continue
        pos += 1 if pieces else 0  # the "\n" joining it to the piece before
        if is_furniture:
            spans.append((pos, pos + len(piece)))
        pieces.append(piece)
        pos += len(piece)
    return "\n".join(pieces), count, spans


def clean_page(raw: str, repair: bool = True) -> tuple[str, int]:
    """Normalise one page's text; return it and how many run-together words were split."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _HYPHEN_RE.sub(lambda m: dehyphenate(m[1], m[3], soft=m[2] != "-"), text)
    text = _BLANKS_RE.sub("\n\n", text).strip("\n")
    return repair_runs(text) if repair else (text, 0)


def dehyphenate(left: str, right: str, soft: bool = False) -> str:
    """Join a word broken at a line end ("eco-nomic" -> "economic": the joined form is the
    likelier), or keep a real compound ("cross-border": the parts are words, the whole is not)."""
    joined = left + right
    if soft:
        return joined
    if right[0].isupper() or len(left) == 1:  # "E-Commerce", "e-mail", "T-shirt"
        return f"{left}-{right}"
    seg = _segmenter()
    lo, ro = left.lower(), right.lower()
    known_l, known_r = lo in seg.unigrams, ro in seg.unigrams
    p_joined = seg.unigrams.get(lo + ro, 0.0) / seg.total
    if p_joined and p_joined >= seg.score(lo) * seg.score(ro, lo):
        return joined
    if known_l and known_r:
        return f"{left}-{right}"
    # Neither side is a word: a broken word. One side is a word and the other a run-on
    # ("onlineride" + "sharing"): keep the hyphen and let the run-on repair split it.
    return f"{left}-{right}" if known_l or known_r else joined


def repair_runs(text: str) -> tuple[str, int]:
    """Split run-together words where every part is a common word; return text and count."""
    count = 0

    def fix_token(m: re.Match[str]) -> str:
        token = m[0]
        if _URLISH_RE.search(token):
            return token

        def fix_run(r: re.Match[str]) -> str:
            nonlocal count
            before, after = token[r.start() - 1 : r.start()], token[r.end() : r.end() + 1]
            words = _split_in_context(r[0], before, after)
            if words is None:
                return r[0]
            count += 1
            return " ".join(words)

        return _RUN_RE.sub(fix_run, token)

    return re.sub(r"\S+", fix_token, text), count


def _split_in_context(run: str, before: str, after: str) -> list[str] | None:
    """Words of a run given the characters around it in its token, or None to leave it."""
    head: list[str] = []
    tail: list[str] = []
    core = run
    if run[0] == "s" and len(run) > 1 and before in ("'", "\u2019"):
        head, core = ["s"], run[1:]  # "Pakistan’sposition": the possessive s opens the run
    elif len(run) > 1 and run[-1].isupper() and run[-2].islower() and after == "-":
        core, tail = run[:-1], [run[-1]]  # "ofChineseE-Commerce": the capital opens a compound
    words = split_run(core) or ([core] if (head or tail) and _is_word(core) else None)
    return None if words is None else [*head, *words, *tail]


def split_run(run: str) -> list[str] | None:
    """Return the words of a run-together alphabetic token, or None when not confident."""
    if len(run) < _MIN_RUN or run.isupper():
        return None
    words = _segment(run.lower())  # a run is ASCII letters, so lengths match the original
    if len(words) < 2 or sum(map(len, words)) != len(run):
        return None
    parts, pos = [], 0
    for word in words:
        part = run[pos : pos + len(word)]
        pos += len(word)
        # Capitals may only open a part: "CollegeofEconomics" yes, "iPhoneX" no.
        if part[1:] != word[1:] or not _is_word(word):
            return None
        parts.append(part)
    return parts


def count_suspicious(text: str, min_len: int = SUSPICIOUS_LEN) -> int:
    """Count long alphabetic runs that are not words: the symptom of lost spaces."""
    vocab = _segmenter().unigrams
    runs = (m[0] for m in _RUN_RE.finditer(text) if len(m[0]) >= min_len)
    return sum(1 for run in runs if not run.isupper() and run.lower() not in vocab)


def _is_word(word: str) -> bool:
    """True for a common enough word: a whitelisted short word or a frequent longer one."""
    low = word.lower()
    if len(low) <= 2:
        return low in _SHORT_WORDS
    floor = _PART_MIN_COUNT.get(len(low), _LONG_PART_MIN_COUNT)
    return bool(_segmenter().unigrams.get(low, 0.0) >= floor)


@lru_cache(maxsize=65536)
def _segment(low: str) -> tuple[str, ...]:
    """The likeliest words of a lowercase run: Viterbi over wordsegment's unigram counts.

    `Segmenter.segment` (recursive, with bigrams) costs ~10 ms a run: 16 s on a book.
    """
    seg = _segmenter()
    counts, log_total = seg.unigrams, math.log10(seg.total)
    if counts.get(low, 0.0) >= _KNOWN_COUNT:
        return (low,)
    best = [0.0] + [-math.inf] * len(low)
    back = [0] * (len(low) + 1)
    for end in range(1, len(low) + 1):
        for start in range(max(0, end - seg.limit), end):
            count = counts.get(low[start:end])
            # wordsegment's unknown-word score: 10 / (total * 10**len)
            score = math.log10(count) - log_total if count else 1 - log_total - (end - start)
            if best[start] + score > best[end]:
                best[end], back[end] = best[start] + score, start
    words, end = [], len(low)
    while end:
        words.append(low[back[end] : end])
        end = back[end]
    return tuple(reversed(words))


@cache
def _segmenter() -> wordsegment.Segmenter:
    """The word-frequency model, loaded once on first use (~0.4 s, ~100 MB)."""
    seg = wordsegment.Segmenter()
    seg.load()
    return seg


def _extract_bounded(path: pathlib.Path) -> list[str]:
    """Run `_extract_pages` in a child Python, killed after TIMEOUT_S seconds.

    Not multiprocessing: spawn re-imports the caller's __main__ (breaking unguarded scripts)
    and fork is unsafe in threaded hosts (Streamlit)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    if b"%PDF-" not in head:
        raise IngestError(str(path), "corrupt PDF: not a PDF file (no %PDF header)")
    root = str(pathlib.Path(__file__).resolve().parents[2])
    code = "import sys; sys.path.insert(0, sys.argv[1]); import kb.ingest.pdf; kb.ingest.pdf._worker(sys.argv[2])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, root, str(path)],
            capture_output=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        reason = f"corrupt PDF: text extraction exceeded {TIMEOUT_S:g} s"
        raise IngestError(str(path), reason) from exc
    try:
        status, payload, notes = json.loads(done.stdout)
    except ValueError as exc:  # the child died (e.g. out of memory) without answering
        logger.debug("%s: worker stderr: %s", path, done.stderr[-2000:].decode(errors="replace"))
        reason = f"corrupt PDF: the PDF reader crashed (exit {done.returncode})"
        raise IngestError(str(path), reason) from exc
    for note in notes:
        logger.debug("%s: pypdf: %s", path, note)
    if status != "ok":
        raise IngestError(str(path), str(payload))
    return [str(page) for page in payload]


def _worker(path: str) -> None:
    """Child process: print JSON [status, page texts or reason, pypdf notes] to stdout."""
    collect = logging.handlers.BufferingHandler(capacity=1 << 30)  # keeps every record
    pypdf_log = logging.getLogger("pypdf")
    pypdf_log.addHandler(collect)
    pypdf_log.propagate = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, payload = _extract_pages(path)
    notes = [r.getMessage() for r in collect.buffer] + [str(w.message) for w in caught]
    sys.stdout.write(json.dumps([status, payload, notes]))


def _extract_pages(path: str) -> tuple[str, list[str] | str]:
    """Open the PDF and extract every page; a page that fails is logged and left empty."""
    import pypdf  # only the child imports it: the parent never parses PDF bytes
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    return "error", "encrypted PDF (password required)"
            except DependencyError:
                return "error", "encrypted PDF (AES: install the 'cryptography' package)"
        n_pages = len(reader.pages)
        if n_pages > MAX_PAGES:
            return "error", f"PDF has {n_pages} pages, over the {MAX_PAGES}-page limit (KB_MAX_PAGES)"
        pages = list(reader.pages)
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...)
        return "error", f"corrupt PDF: {_one_line(exc)}"
    texts, failed = [], 0
    for number, page in enumerate(pages, start=1):
        try:
            texts.append(page.extract_text() or "")
        except Exception as exc:
            failed += 1
            logging.getLogger("pypdf").warning("page %d unreadable: %s", number, _one_line(exc))
            texts.append("")
    if failed and not any(t.strip() for t in texts):
        return "error", f"corrupt PDF: none of {len(pages)} pages could be read"
    return "ok", texts


def _one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and first line of message."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:200]}" if msg else type(exc).__name__
