"""Quote check: is this text in the documents verbatim, after normalisation, with omissions, altered, or not at all?

Exact and normalised checks are phrase queries on the trigram quote index (kb/quoteindex.py); near matches are
aligned by rapidfuzz only inside the candidate documents that index names; only a quote found nowhere goes to the
hybrid search, whose passages are offered as a possible paraphrase or translation, never as the source.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from kb import config
from kb.chunk import Chunk
from kb.cite import citation
from kb.errors import IndexCorruptError, QueryError
from kb.fold import fold, split_ellipsis, trim
from kb.index import CURRENT
from kb.ingest import Document, detect_lang
from kb.loader import QuoteParts, load_quote_parts
from kb.quotediff import DiffOp, sentence_span, sentences, word_diff
from kb.quotematch import chains, find_all, near
from kb.search import Searcher
from kb.store import Store

log = logging.getLogger(__name__)

VERDICTS = ("verbatim", "normalized", "omissions", "altered", "not_found")
LABELS = {"verbatim": "verbatim", "normalized": "verbatim after normalisation", "omissions": "with omissions",
          "altered": "close but altered", "not_found": "not found", "paraphrase": "possible paraphrase",
          "translation": "possible source (translation)"}
_CLOSERS = "。！？；，、：.!?;,: \n"
# Locations examined per quote before the list is cut to k (identical passages in several versions collapse).
_EXAMINE = 50


@dataclass(frozen=True)
class QuoteMatch:
    """A place the quote (or one part of it) was found, in original document offsets.

    kind is a verdict for this place (verbatim, normalized, omissions, altered) or, for a quote found nowhere,
    'paraphrase' / 'translation' (a nearby passage in the quote's own / the other language).
    """

    kind: str
    doc_id: str
    title: str
    citation: str
    article: str | None
    section: str | None
    page: int | None
    page_end: int | None
    char_start: int
    char_end: int
    text: str
    similarity: float | None  # 0..1 on folded text; None for a translation, where characters cannot compare
    context: str  # the sentence(s) around the match
    context_start: int
    lang: str
    diff: tuple[DiffOp, ...] = ()
    parts: tuple[tuple[int, int], ...] = ()  # omissions: where each part of the quote is
    quote_span: tuple[int, int] | None = None  # which part of the quote this place accounts for
    also_in: tuple[str, ...] = ()  # other documents with the same passage (versions, copies)

    @property
    def label(self) -> str:
        """Human wording of kind: 'verbatim after normalisation', 'possible source (translation)', ..."""
        return LABELS[self.kind]

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of one match in `python -m kb quote --json`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["label"] = self.label
        out["similarity"] = None if self.similarity is None else round(self.similarity, 4)
        out["diff"] = [d.to_dict() for d in self.diff]
        out["parts"] = [list(p) for p in self.parts]
        out["quote_span"] = list(self.quote_span) if self.quote_span else None
        out["also_in"] = list(self.also_in)
        return out


@dataclass(frozen=True)
class QuoteReport:
    """The verdict on one quote and its locations, best first."""

    quote: str
    verdict: str
    matches: tuple[QuoteMatch, ...]
    total: int = 0  # documents the quote was located in (exact, normalised, omissions), capped
    note: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.verdict]

    def to_dict(self) -> dict[str, object]:
        """The JSON object of `python -m kb quote --json`."""
        return {"quote": self.quote, "verdict": self.verdict, "label": self.label, "note": self.note,
                "total": self.total, "matches": [m.to_dict() for m in self.matches]}


class QuoteChecker:
    """Opens an index's chunk store and quote index once and checks quotes against them."""

    def __init__(self, index_dir: Path = config.DEFAULT_INDEX, searcher: Searcher | None = None) -> None:
        """Raises: IndexMissingError, IndexCorruptError (with the command that fixes it)."""
        self.index_dir = Path(index_dir)
        self._searcher = searcher
        self._lock = threading.Lock()
        self.parts: QuoteParts = load_quote_parts(self.index_dir)
        self._docs = {d["doc_id"]: d for d in self.parts.store.doc_table()}

    def refresh(self) -> bool:
        """Reopen if a build has published a newer generation; True when it did."""
        try:
            name = (self.index_dir / CURRENT).read_text(encoding="utf-8").strip()
        except OSError:
            return False
        if name == self.parts.gen.name:
            return False
        with self._lock:
            self.parts = load_quote_parts(self.index_dir)
            self._docs = {d["doc_id"]: d for d in self.parts.store.doc_table()}
            if self._searcher is not None:
                self._searcher.refresh()
        return True

    def check(self, quote: str, k: int = 5) -> QuoteReport:
        """Verdict and locations for a quote (Chinese or English, with or without ellipses).

        Raises:
            QueryError: empty or overlong quote.
        """
        raw = trim(quote)
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
        best = altered[0].similarity if altered else 0.0
        if best < 0.95:
            joined = self._joined(parts, raw, pieces)
            if joined:
                return QuoteReport(raw, "altered", joined, 0, f"each part occurs, but not together: the quote "
                                   f"joins text from {len(joined)} places")
        if best >= config.QUOTE_ALTERED_MIN:
            return QuoteReport(raw, "altered", tuple(m for m in altered if m.similarity >= config.QUOTE_ALTERED_MIN))
        return QuoteReport(raw, "not_found", self._nearest(body, fq, k), 0,
                           "nothing close in the documents; the passages listed are what the search finds nearest: "
                           "a possible paraphrase, or a possible source the quote translates")

    def _exact(self, parts: QuoteParts, raw: str, fq: str, k: int) -> tuple[tuple[QuoteMatch, ...], int]:
        rows = parts.quote.containing(fq, config.QUOTE_MAX_DOCS)
        if not rows:
            return (), 0
        ids = parts.quote.ids
        verbatim = parts.store.containing([ids[r] for r in rows], raw)
        out: list[QuoteMatch] = []
        for row in sorted(rows, key=lambda r: (ids[r] not in verbatim, self._rank(ids[r]))):
            doc = _document(parts.store, ids[row])
            if doc.doc_id in verbatim:
                spans = [(p, p + len(raw)) for p in find_all(doc.text, raw, 3)]
            else:
                folded = parts.quote.folded(row)
                spans = [folded.span(p, p + len(fq)) for p in find_all(folded.text, fq, 3)]
            out.extend(self._match(parts, doc, "verbatim" if doc.text[s:e] == raw else "normalized", s, e, 1.0)
                       for s, e in spans)
            if len(out) >= _EXAMINE:
                break
        out.sort(key=lambda m: m.kind != "verbatim")
        return _collapse(out, k), len(rows)

    def _omissions(self, parts: QuoteParts, raw: str, pieces: list[tuple[int, int]],
                   k: int) -> tuple[tuple[QuoteMatch, ...], int]:
        quoted = [raw[a:b] for a, b in pieces]
        folded_parts = [fold(p).text for p in quoted]
        if not all(folded_parts):
            return (), 0
        long = [p for p in folded_parts if len(p) >= 3]
        q, ids = parts.quote, parts.quote.ids
        rows = (q.containing_all(long, config.QUOTE_MAX_DOCS) if long
                else q.containing(max(folded_parts, key=len), config.QUOTE_MAX_DOCS))
        out: list[QuoteMatch] = []
        located = 0
        for row in sorted(rows, key=lambda r: self._rank(ids[r]))[:_EXAMINE]:
            folded, doc = q.folded(row), _document(parts.store, ids[row])
            found = chains(folded.text, folded_parts, config.QUOTE_MAX_GAP)
            located += bool(found)
            for chain in found:
                spans = [folded.span(a, b) for a, b in chain]
                diff: list[DiffOp] = []
                for n, ((s, e), text) in enumerate(zip(spans, quoted)):
                    if n:  # what the ellipsis stands for
                        diff.append(DiffOp("dropped", "…", doc.text[spans[n - 1][1]:s]))
                    diff.append(DiffOp("equal", text, doc.text[s:e]))
                out.append(self._match(parts, doc, "omissions", spans[0][0], spans[-1][1], 1.0,
                                       diff=tuple(diff), pieces=tuple(spans)))
        return _collapse(out, k), located

    def _near(self, parts: QuoteParts, body: str, fq: str, k: int) -> list[QuoteMatch]:
        out = []
        for loc in near(parts.quote, fq):
            folded, doc = parts.quote.folded(loc.row), _document(parts.store, parts.quote.ids[loc.row])
            s, e = _word_bounds(doc.text, *folded.span(loc.start, loc.end))
            sim = Indel.normalized_similarity(fq, fold(doc.text[s:e]).text)
            out.append(self._match(parts, doc, "altered", s, e, sim, diff=word_diff(body, doc.text[s:e])))
        out.sort(key=lambda m: -(m.similarity or 0.0))
        return list(_collapse(out, k))

    def _joined(self, parts: QuoteParts, raw: str, pieces: list[tuple[int, int]]) -> tuple[QuoteMatch, ...]:
        """Each sentence (or ellipsis part) located on its own, when every one of them occurs somewhere."""
        segments = []
        for a, b in pieces:
            for s, e in sentences(raw[a:b]):
                # A sentence cut short in the quote ends with 。 where the source goes on after a comma.
                e = s + len(raw[a + s:a + e].rstrip(_CLOSERS))
                if len(fold(raw[a + s:a + e]).text) >= 4:
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
        hits += [h for h in searcher.search(query, 2, lang="en" if lang == "zh" else "zh")
                 if h.chunk.chunk_id not in seen]
        out = []
        for h in hits:
            c = h.chunk
            same = c.lang == lang
            sim = fuzz.partial_ratio(fq, fold(c.text).text) / 100 if same else None
            out.append(QuoteMatch("paraphrase" if same else "translation", c.doc_id, c.title, h.citation, c.article,
                                  c.section, c.page, c.page_end, c.char_start, c.char_end, c.text, sim, c.text,
                                  c.char_start, c.lang))
        return tuple(out)

    def _search(self) -> Searcher:
        with self._lock:
            if self._searcher is None:
                self._searcher = Searcher(self.index_dir)
            return self._searcher

    def _rank(self, doc_id: str) -> tuple[bool, float, str]:
        """Texts in force before repealed ones, higher-level texts first."""
        meta = self._docs.get(doc_id, {}).get("meta", {})
        return (meta.get("validity") in config.HIDDEN_VALIDITY, -config.LEVEL_PRIOR.get(meta.get("level") or "", 1.0),
                doc_id)

    def _match(self, parts: QuoteParts, doc: Document, kind: str, s: int, e: int, similarity: float,
               diff: tuple[DiffOp, ...] = (), pieces: tuple[tuple[int, int], ...] = ()) -> QuoteMatch:
        chunks = _doc_chunks(parts.store, doc.doc_id)
        first, last = _chunk_at(chunks, s, e), _chunk_at(chunks, e - 1, e)
        page, page_end = (doc.page_at(s), doc.page_at(e - 1)) if doc.page_spans else (None, None)
        cite = doc.title
        if first is not None:
            cite = citation(dataclasses.replace(first, page=page, page_end=page_end))
            if last is not None and _place(last) and _place(last) != _place(first):
                cite += f" – {_place(last)}"
        cs, ce = sentence_span(doc.text, s, e)
        return QuoteMatch(kind, doc.doc_id, doc.title, cite, first.article if first else None,
                          first.section if first else None, page, page_end, s, e, doc.text[s:e], similarity,
                          doc.text[cs:ce], cs, doc.lang, diff, pieces)


def check_quote(quote: str, index_dir: Path = config.DEFAULT_INDEX, k: int = 5) -> QuoteReport:
    """Check one quote against an index folder (opens it each time: use QuoteChecker for many quotes)."""
    return QuoteChecker(index_dir).check(quote, k)


def _collapse(matches: list[QuoteMatch], k: int) -> tuple[QuoteMatch, ...]:
    """The first k distinct matches; the same passage in other documents (versions, copies) goes to also_in."""
    first: dict[tuple[str, str], QuoteMatch] = {}
    also: dict[tuple[str, str], list[str]] = {}
    for m in matches:
        key = (m.kind, "".join(m.context.split()))
        if key not in first:
            first[key], also[key] = m, []
        elif m.doc_id != first[key].doc_id and m.doc_id not in also[key]:
            also[key].append(m.doc_id)
    return tuple(dataclasses.replace(m, also_in=tuple(also[key])) for key, m in list(first.items())[:k])


def _place(chunk: Chunk) -> str:
    return chunk.article or (chunk.section or "").split(" / ")[-1]


def _chunk_at(chunks: list[Chunk], s: int, e: int) -> Chunk | None:
    """The chunk holding [s, e) whole if one does (English chunks overlap), else the one holding s."""
    holding = [c for c in chunks if c.char_start <= s < c.char_end]
    whole = [c for c in holding if e <= c.char_end]
    return (whole or holding or [None])[0]


def _word_bounds(text: str, s: int, e: int) -> tuple[int, int]:
    """Widen [s, e) so it neither starts nor ends inside an English word."""
    def word(ch: str) -> bool:
        return ch.isalnum() and ch < "\u2e80"

    while 0 < s < len(text) and word(text[s - 1]) and word(text[s]):
        s -= 1
    while 0 < e < len(text) and word(text[e - 1]) and word(text[e]):
        e += 1
    return s, e


@lru_cache(maxsize=32)
def _document(store: Store, doc_id: str) -> Document:
    doc = store.document(doc_id)
    if doc is None:
        raise IndexCorruptError(f"{doc_id} is in the quote index but not in the chunk store: "
                                "rebuild with `python -m kb build`")
    return doc


@lru_cache(maxsize=32)
def _doc_chunks(store: Store, doc_id: str) -> list[Chunk]:
    return store.doc_chunks(doc_id)
