"""Quote check: is this text in the documents verbatim, after normalisation, with omissions, altered, or not at all?

Exact and normalised checks are phrase queries on the trigram quote index (kb/quoteindex.py); near matches are
aligned by rapidfuzz only inside the candidate documents that index names; only a quote found nowhere goes to the
hybrid search, whose passages are offered as a possible paraphrase or translation, never as the source.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from pathlib import Path

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from kb import config
from kb.errors import QueryError
from kb.index.generations import published
from kb.index.loader import QuoteParts, load_quote_parts
from kb.ingest.document import DocMeta
from kb.ingest.read import detect_lang
from kb.quote.diff import DiffOp, sentences, word_diff
from kb.quote.match import chains, find_all, near
from kb.quote.result import QuoteMatch, QuoteReport, collapse, document, locate, word_bounds
from kb.search.contract import Backend
from kb.search.searcher import Searcher
from kb.text.fold import fold, split_ellipsis, trim

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffd]")

__all__ = ["QuoteChecker", "QuoteMatch", "QuoteReport", "check_quote"]

_CLOSERS = "。！？；，、：.!?;,: \n"
# Locations examined per quote before the list is cut to k (identical passages in several versions collapse).
_EXAMINE = 50


class QuoteChecker:
    """Opens an index's chunk store and quote index once and checks quotes against them."""

    def __init__(self, index_dir: Path = config.DEFAULT_INDEX, searcher: Backend | None = None) -> None:
        """Raises: IndexMissingError, IndexCorruptError (with the command that fixes it)."""
        self.index_dir = Path(index_dir)
        self._searcher = searcher
        self._lock = threading.Lock()
        self.parts: QuoteParts = load_quote_parts(self.index_dir)
        self._docs = {d.doc_id: d for d in self.parts.store.doc_table()}

    def refresh(self) -> bool:
        """Reopen if a build has published a newer generation; True when it did."""
        if not published(self.index_dir, self.parts.gen.name):
            return False
        with self._lock:
            self.parts = load_quote_parts(self.index_dir)
            self._docs = {d.doc_id: d for d in self.parts.store.doc_table()}
            if self._searcher is not None:
                self._searcher.refresh()
        return True

    def check(self, quote: str, k: int = 5) -> QuoteReport:
        """Verdict and locations for a quote (Chinese or English, with or without ellipses).

        Raises:
            QueryError: empty or overlong quote.
        """
        # A NUL cuts SQLite's FTS query short, and a lone surrogate (undecodable argv bytes) cannot be encoded:
        # they and U+FFFD (what undecodable bytes became) are not part of any quote.
        raw = trim(_CONTROL.sub(" ", quote))
        if len(raw) > config.QUOTE_MAX_CHARS:
            raise QueryError(f"the quote has {len(raw)} characters; check at most {config.QUOTE_MAX_CHARS} at a time")
        parts = self.parts  # one generation for the whole check, even if refresh() swaps it meanwhile
        variants = list(dict.fromkeys((fold(raw).text, fold(raw, join_hyphens=True).text)))
        if not variants[0]:
            raise QueryError("empty quote: paste the sentence to check")
        for fq in variants:
            matches, total = self._exact(parts, raw, fq, k)
            if matches:
                return QuoteReport(raw, matches[0].kind, matches, total)
        pieces = split_ellipsis(raw) or [(0, len(raw))]
        if len(pieces) > 1 or pieces[0] != (0, len(raw)):
            matches, total = self._omissions(parts, raw, pieces, k)
            if matches:
                return QuoteReport(raw, "omissions", matches, total)
        body = " ".join(raw[a:b] for a, b in pieces)
        fq = fold(body).text
        altered = self._near(parts, body, fq, k)
        best = (altered[0].similarity or 0.0) if altered else 0.0
        if best < 0.95:
            joined = self._joined(parts, raw, pieces)
            if joined:
                return QuoteReport(
                    raw,
                    "altered",
                    joined,
                    0,
                    f"each part occurs, but not together: the quote joins text from {len(joined)} places",
                )
        if best >= config.QUOTE_ALTERED_MIN:
            return QuoteReport(
                raw, "altered", tuple(m for m in altered if (m.similarity or 0.0) >= config.QUOTE_ALTERED_MIN)
            )
        return QuoteReport(
            raw,
            "not_found",
            self._nearest(body, fq, k),
            0,
            "nothing close in the documents; the passages listed are what the search finds nearest: "
            "a possible paraphrase, or a possible source the quote translates",
        )

    def _exact(self, parts: QuoteParts, raw: str, fq: str, k: int) -> tuple[tuple[QuoteMatch, ...], int]:
        rows = parts.quote.containing(fq, config.QUOTE_MAX_DOCS)
        if not rows:
            return (), 0
        ids = parts.quote.ids
        verbatim = parts.store.containing([ids[r] for r in rows], raw)
        out: list[QuoteMatch] = []
        for row in sorted(rows, key=lambda r: (ids[r] not in verbatim, self._rank(ids[r]))):
            doc = document(parts.store, ids[row])
            if doc.doc_id in verbatim:
                spans = [(p, p + len(raw)) for p in find_all(doc.text, raw, 3)]
            else:
                folded = parts.quote.folded(row)
                spans = [folded.span(p, p + len(fq)) for p in find_all(folded.text, fq, 3)]
            out.extend(
                locate(parts.store, doc, "verbatim" if doc.text[s:e] == raw else "normalized", s, e, 1.0)
                for s, e in spans
            )
            if len(out) >= _EXAMINE:
                break
        out.sort(key=lambda m: m.kind != "verbatim")
        return collapse(out, k), len(rows)

    def _omissions(
        self, parts: QuoteParts, raw: str, pieces: list[tuple[int, int]], k: int
    ) -> tuple[tuple[QuoteMatch, ...], int]:
        quoted = [raw[a:b] for a, b in pieces]
        folded_parts = [fold(p).text for p in quoted]
        if not all(folded_parts):
            return (), 0
        long = [p for p in folded_parts if len(p) >= 3]
        q, ids = parts.quote, parts.quote.ids
        rows = (
            q.containing_all(long, config.QUOTE_MAX_DOCS)
            if long
            else q.containing(max(folded_parts, key=len), config.QUOTE_MAX_DOCS)
        )
        out: list[QuoteMatch] = []
        located = 0
        for row in sorted(rows, key=lambda r: self._rank(ids[r]))[:_EXAMINE]:
            folded, doc = q.folded(row), document(parts.store, ids[row])
            found = chains(folded.text, folded_parts, config.QUOTE_MAX_GAP)
            located += bool(found)
            for chain in found:
                spans = [folded.span(a, b) for a, b in chain]
                diff: list[DiffOp] = []
                for n, ((s, e), text) in enumerate(zip(spans, quoted)):
                    if n:  # what the ellipsis stands for
                        diff.append(DiffOp("dropped", "…", doc.text[spans[n - 1][1] : s]))
                    diff.append(DiffOp("equal", text, doc.text[s:e]))
                out.append(
                    locate(
                        parts.store,
                        doc,
                        "omissions",
                        spans[0][0],
                        spans[-1][1],
                        1.0,
                        diff=tuple(diff),
                        pieces=tuple(spans),
                    )
                )
        return collapse(out, k), located

    def _near(self, parts: QuoteParts, body: str, fq: str, k: int) -> list[QuoteMatch]:
        out = []
        for loc in near(parts.quote, fq):
            folded, doc = parts.quote.folded(loc.row), document(parts.store, parts.quote.ids[loc.row])
            s, e = word_bounds(doc.text, *folded.span(loc.start, loc.end))
            sim = Indel.normalized_similarity(fq, fold(doc.text[s:e]).text)
            out.append(locate(parts.store, doc, "altered", s, e, sim, diff=word_diff(body, doc.text[s:e])))
        out.sort(key=lambda m: -(m.similarity or 0.0))
        return list(collapse(out, k))

    def _joined(self, parts: QuoteParts, raw: str, pieces: list[tuple[int, int]]) -> tuple[QuoteMatch, ...]:
        """Each sentence (or ellipsis part) located on its own, when every one of them occurs somewhere."""
        segments = []
        for a, b in pieces:
            for s, e in sentences(raw[a:b]):
                # A sentence cut short in the quote ends with 。 where the source goes on after a comma.
                e = s + len(raw[a + s : a + e].rstrip(_CLOSERS))
                if len(fold(raw[a + s : a + e]).text) >= 4:
                    segments.append((a + s, a + e))
        if len(segments) < 2:
            return ()
        found = []
        for a, b in segments:
            matches, _ = self._exact(parts, raw[a:b], fold(raw[a:b]).text, 1)
            if not matches:
                return ()
            found.append(dataclasses.replace(matches[0], quote_span=(a, b)))
        return tuple(found)

    def _nearest(self, body: str, fq: str, k: int) -> tuple[QuoteMatch, ...]:
        searcher = self._search()
        lang = detect_lang(body)
        query = body[:2000]
        hits = searcher.search(query, k)
        seen = {h.chunk.chunk_id for h in hits}
        # The other language always gets a look: an English quote may translate a Chinese article.
        hits += [
            h for h in searcher.search(query, 2, lang="en" if lang == "zh" else "zh") if h.chunk.chunk_id not in seen
        ]
        out = []
        for h in hits:
            c = h.chunk
            same = c.lang == lang
            sim = fuzz.partial_ratio(fq, fold(c.text).text) / 100 if same else None
            out.append(
                QuoteMatch(
                    "paraphrase" if same else "translation",
                    c.doc_id,
                    c.title,
                    h.citation,
                    c.article,
                    c.section,
                    c.page,
                    c.page_end,
                    c.char_start,
                    c.char_end,
                    c.text,
                    sim,
                    c.text,
                    c.char_start,
                    c.lang,
                )
            )
        return tuple(out)

    def _search(self) -> Backend:
        with self._lock:
            if self._searcher is None:
                # A quote is a passage's wording, not a question: the question tower and the reranker were trained
                # on questions (an English translation of 个人信息保护法 第九条 went from a possible source to
                # missing through them), so the nearest passages come from the packaged models.
                self._searcher = Searcher(self.index_dir, tuned=False, rerank=False)
            return self._searcher

    def _rank(self, doc_id: str) -> tuple[bool, float, str]:
        """Texts in force before repealed ones, higher-level texts first."""
        row = self._docs.get(doc_id)
        meta = row.meta if row else DocMeta()
        return (meta.validity in config.HIDDEN_VALIDITY, -config.LEVEL_PRIOR.get(meta.level or "", 1.0), doc_id)


def check_quote(quote: str, index_dir: Path = config.DEFAULT_INDEX, k: int = 5) -> QuoteReport:
    """Check one quote against an index folder (opens it each time: use QuoteChecker for many quotes)."""
    return QuoteChecker(index_dir).check(quote, k)
