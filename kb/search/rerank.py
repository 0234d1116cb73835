"""The reranker: a learned re-ordering of the fused candidates by what a question and a passage share.

The fusion (kb.search.fusion) only sees where each channel ranked a passage. The reranker also reads the
passage against the question: which of the question's words it holds, whether its title holds them, whether it
is the article that *defines* the term asked about ("本法所称X，是指…" for "什么是X"), whether it is a numbered
article, its length, its document's weight among the candidates, and how close the dense channel put it to the
question (the question tower's vector against the stored passage vector, a number the fusion's ranks lose). A
linear model over these features per question language (Chinese trained on STARD train and corpus definition
questions, English on SciFact train: scripts/train.py rerank-cv / rerank-fit) scores the first `pool` fused
passages (a Chinese question's 100: all the fusion keeps; an English question's 30) in the question's language and
re-orders them among the places they hold; passages in the other language and the rest keep their fused places.
A cross-language scorer ("en>zh", trained on our English translations of STARD train) re-orders an English
question's first 100 Chinese passages the same way, among their own places: it reads the question followed by
its dictionary translation (kb.text.bilingual.with_translation), so the word features can match a Chinese article,
and the similarity of the tower's question vector to the passage through the adapter. Held out, it lifted the
en100 questions' R@10 from 0.5545 to 0.6043 (docs/BENCHMARKS.md, session 18); an English passage keeps its place,
so the bundled English commentary ranks as before.

Why features and not a neural cross-encoder: on this product's CPU budget a 12-layer cross-encoder over the
candidates costs seconds per question. A late-interaction scorer that needs no passage pass (e5's word vectors
through a trained projection, MaxSim against the question's) fitted jointly with these features gained nothing in
R@10 on held-out folds (docs/BENCHMARKS.md, session 12). The features cost well under a millisecond per candidate
once jieba's lookups are remembered (kb.text.mapped), so the reranker stays on by default (`--rerank off`,
`search(..., rerank=False)`, KB_RERANK=0 turn it off).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kb import config
from kb.errors import ModelLoadError, ModelMismatchError
from kb.index.manifest import WeightsInfo
from kb.ingest.read import detect_lang
from kb.search.hits import Hit
from kb.text.lexical import tokenize

WEIGHTS = config.RERANK_WEIGHTS
CHANNELS = ("bm25", "dense", "dense_x", "xling")
# Joins a cross-language scorer's question language and passage language in its key ("en>zh").
ACROSS = ">"

# "本法所称X，是指…" / "本规定所称X是指…" / "the term X means": the passage defines X.
_DEFINES_ZH = re.compile(r"所称的?([^，。；：、“”（）\s]{2,16}?)[，,]?(?:是指|指的是|包括)")
_DEFINES_EN = re.compile(r"[\"“]([^\"”]{3,40})[\"”] (?:means|refers to|shall mean)", re.IGNORECASE)
# The question asks what something is.
_ASKS_DEFINITION = re.compile(
    r"什么是|何为|何谓|是什么|是指什么|的含义|的定义|\bwhat (?:is|are|does)\b|\bdefin|\bmeaning\b", re.IGNORECASE
)
_ARTICLE = re.compile(r"^\s*第[一二三四五六七八九十百千零〇\d]+条")
_KEPT = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z0-9]")


def _bigrams(text: str) -> set[str]:
    chars = "".join(_KEPT.findall(text.lower()))
    return {chars[i : i + 2] for i in range(len(chars) - 1)}


def defined_terms(text: str) -> list[str]:
    """Terms a passage defines ("本法所称X，是指…", '"X" means')."""
    return _DEFINES_ZH.findall(text) + [t.lower() for t in _DEFINES_EN.findall(text)]


FEATURES = (
    "fused",  # 1 / log2(1 + fused rank)
    *(f"ch_{c}" for c in CHANNELS),  # 1 / log2(1 + the channel's rank), 0 when the channel did not rank it
    "channels",  # how many channels ranked it
    "cover",  # share of the question's distinct words the passage holds
    "cover_long",  # the same for words of 2+ characters (Chinese) / 5+ letters (English): the topical ones
    "bigram",  # share of the question's character bigrams in the passage
    "title",  # share of the question's words in the document title
    "defines",  # the passage defines a term the question holds
    "asks_def",  # the question asks what something is and the passage defines something
    "article",  # a numbered article (第X条)
    "length",  # log of the passage length, centred on 150 characters
    "doc_share",  # share of the candidates from the same document
    "same_lang",  # passage in the question's language
    "sim",  # the dense channel's similarity of question and passage (the question tower's vector where it applies)
    "sim_gap",  # sim minus the best sim among the candidates
)


# Passages whose question-independent features a worker keeps. Without them a Chinese question's candidates
# (30 then) were tokenised by jieba again on every request: ~30 ms, a fifth of a loaded server's CPU. An entry with
# its text (the key) measured 6 kB on the bundled index (1,878 passages, which fit whole: 11 MB) and 4 kB on the whole
# LawRefBook index (153k passages, shorter), so the bound below caps a worker at about 40-60 MB.
PASSAGE_CACHE = 10_000
TITLE_CACHE = 4096


@dataclass(frozen=True)
class PassageFeatures:
    """What features() reads from a passage's text alone, computed once per passage (`passage_features`)."""

    tokens: frozenset[str]  # tokenize(text)
    chars: str  # the kept characters, lower case: _bigrams(text) is the set of its 2-character substrings
    terms: tuple[str, ...]  # defined_terms(text)
    numbered: bool  # opens with 第X条
    length: float  # log of the length, centred on 150 characters


@lru_cache(maxsize=PASSAGE_CACHE)
def passage_features(text: str) -> PassageFeatures:
    """A passage's question-independent features (cached by text, so a new index generation cannot go stale)."""
    return PassageFeatures(
        tokens=frozenset(sys.intern(t) for t in tokenize(text)),  # interned: passages share their words' strings
        chars="".join(_KEPT.findall(text.lower())),
        terms=tuple(defined_terms(text)),
        numbered=bool(_ARTICLE.match(text)),
        length=math.log(max(len(text), 1) / 150.0),
    )


@lru_cache(maxsize=TITLE_CACHE)
def title_tokens(title: str) -> frozenset[str]:
    return frozenset(tokenize(title))


# Question and passages -> the dense channel's similarity of each passage (kb.search.base.SearcherBase._similarity).
Similarity = Callable[[Sequence[Hit]], "np.ndarray | None"]


def features(query: str, hits: Sequence[Hit], sims: np.ndarray | None = None) -> np.ndarray:
    """(len(hits), len(FEATURES)) float32 feature rows of fused candidates, in their fused order.

    sims: each hit's dense similarity to the question; None (an index without vectors) leaves sim and sim_gap 0.
    """
    words = set(tokenize(query))
    long_words = {w for w in words if len(w) >= (2 if _KEPT.match(w) and ord(w[0]) > 0x3000 else 5)}
    q_bigrams = _bigrams(query)
    q_lower = query.lower()
    asks = bool(_ASKS_DEFINITION.search(query))
    q_zh = any(ord(ch) >= 0x3400 for ch in query)
    docs = Counter(h.chunk.doc_id for h in hits)
    out = np.zeros((len(hits), len(FEATURES)), dtype=np.float32)
    for i, hit in enumerate(hits):
        p = passage_features(hit.chunk.text)
        ranks = dict(hit.channels)
        row = [
            1.0 / math.log2(1 + hit.rank),
            *(1.0 / math.log2(1 + ranks[c]) if c in ranks else 0.0 for c in CHANNELS),
            float(len(ranks) - ("memory" in ranks)),  # the memory joins the tail only (config.TAIL_ONLY)
            len(words & p.tokens) / max(len(words), 1),
            len(long_words & p.tokens) / max(len(long_words), 1),
            # a question bigram is among the passage's bigrams exactly when it is a substring of its kept characters
            sum(b in p.chars for b in q_bigrams) / max(len(q_bigrams), 1),
            len(words & title_tokens(hit.chunk.title)) / max(len(words), 1),
            float(any(t in q_lower for t in p.terms)),
            float(asks and bool(p.terms)),
            float(bool(hit.chunk.article) or p.numbered),
            p.length,
            docs[hit.chunk.doc_id] / len(hits),
            float((hit.chunk.lang == "zh") == q_zh),
            0.0,
            0.0,
        ]
        out[i] = row
    if sims is not None and len(sims) == len(hits) and len(hits):
        out[:, -2] = sims
        out[:, -1] = sims - float(np.max(sims))
    return out


@dataclass(frozen=True)
class Reranker:
    """One language's linear scorer over standardised FEATURES (what scripts/train.py rerank-fit writes)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    pool: int

    def scores(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef

    @property
    def reads_similarity(self) -> bool:
        """The scorer weighs sim or sim_gap (the English one, fitted with them at 0, does not): only then is the
        passages' similarity worth reading (a vector read per passage, a query on Milvus)."""
        return bool(np.any(self.coef[[FEATURES.index("sim"), FEATURES.index("sim_gap")]]))

    def rerank(
        self, query: str, hits: Sequence[Hit], lang: str | None = None, similarity: Similarity | None = None
    ) -> list[Hit]:
        """The first `pool` hits re-ordered by the model, the rest after them in fused order; ranks renumbered.

        With `lang`, only the passages in that language are re-ordered, among the places they hold; a passage in
        another language keeps the place the fusion gave it. The features compare words, which says nothing
        across languages unless the question is translated: an English question shares no words with the
        Chinese article a cross-lingual channel found for it, and re-ordering across languages pushed that
        article out of the top 5. So a cross-language scorer (Rerankers) re-orders the other language's
        passages among their own places, from the question with its glossary translation.
        """
        placed = self.placements(query, hits[: self.pool], lang, similarity)
        return arrange(hits, self.pool, placed) if placed else list(hits)

    def placements(
        self, query: str, head: Sequence[Hit], lang: str | None = None, similarity: Similarity | None = None
    ) -> dict[int, tuple[Hit, float]] | None:
        """Place -> (passage, score as a 0-1 value) for the passages of `head` in `lang` (all with None), in the
        model's order over the places they hold; {} when fewer than two could move; None when the passages'
        similarity could not be read (they left the index meanwhile: a refresh), so the fused order stands."""
        places = [i for i, h in enumerate(head) if lang is None or h.chunk.lang == lang]
        if len(places) < 2:
            return {}
        movable = [head[i] for i in places]
        if not self.reads_similarity:
            similarity = None  # its features would change no score
        sims = similarity(movable) if similarity else None
        if similarity and sims is None:
            return None
        s = self.scores(features(query, movable, sims))
        order = sorted(range(len(movable)), key=lambda i: (-s[i], i))
        return {place: (movable[i], 1.0 / (1.0 + math.exp(-float(s[i])))) for place, i in zip(places, order)}

    def to_dict(self) -> dict[str, object]:
        return {
            "features": list(FEATURES),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "coef": [round(float(v), 6) for v in self.coef],
            "pool": self.pool,
        }


def arrange(hits: Sequence[Hit], pool: int, placed: Mapping[int, tuple[Hit, float]]) -> list[Hit]:
    """The hits with the first `pool` places filled as `placed` says (the rest keep theirs), ranks renumbered.

    The shown score is a scorer's (a probability-like 0-1 value) for the passages it placed; a passage that kept
    its place shows the score of the placed passage above it (below it when none is). Where two scorers placed
    passages (a question's language and a cross-language one), a score is capped by the one above it, so the
    shown scores still fall down the list.
    """
    head, tail = list(hits[:pool]), list(hits[pool:])
    score = placed[min(placed)][1]  # what a passage kept above every placed one shows
    for n, hit in enumerate(head):
        if n in placed:
            hit, own = placed[n]
            score = min(score, own)
        head[n] = dataclasses.replace(hit, score=score)
    return [dataclasses.replace(h, rank=r) for r, h in enumerate(head + tail, start=1)]


@dataclass(frozen=True)
class Rerankers:
    """The shipped reranker: a scorer per question language (Chinese from STARD train, English from SciFact train)
    over the passages in that language, and cross-language scorers keyed "question>passages" ("en>zh": an English
    question's Chinese candidates, from our English translations of STARD train) over the other language's
    passages, each among the places its passages hold. A question in a language without one keeps the fused order.
    """

    models: Mapping[str, Reranker]
    sha256: str = ""

    def scorers(self, query: str) -> list[tuple[Reranker, str]]:
        """(scorer, the language of the passages it re-orders) for this query's language."""
        lang = detect_lang(query)
        own = [(self.models[lang], lang)] if lang in self.models else []
        return own + [(m, key.split(ACROSS)[1]) for key, m in self.models.items() if key.startswith(lang + ACROSS)]

    def pool(self, query: str) -> int:
        """How many fused passages this query's scorers re-order (0: none applies), so a search fuses no more."""
        return max((m.pool for m, _ in self.scorers(query)), default=0)

    def applies(self, query: str) -> bool:
        """A scorer was trained for questions in this query's language."""
        return bool(self.scorers(query))

    def across(self, query: str) -> bool:
        """A cross-language scorer applies to this query: its features read the question's translation."""
        return any(lang != detect_lang(query) for _, lang in self.scorers(query))

    def rerank(
        self, query: str, hits: Sequence[Hit], similarity: Similarity | None = None, translated: str | None = None
    ) -> list[Hit]:
        """translated: the question with its translation's words (kb.text.bilingual.with_translation), which a
        cross-language scorer reads in place of the question."""
        scorers = self.scorers(query)
        if not scorers:
            return list(hits)
        lang = detect_lang(query)
        pool = max(m.pool for m, _ in scorers)
        placed: dict[int, tuple[Hit, float]] = {}
        for model, passages in scorers:
            text = query if passages == lang else translated or query
            got = model.placements(text, hits[: model.pool], passages, similarity)
            if got is None:
                return list(hits)
            placed.update(got)
        return arrange(hits, pool, placed) if placed else list(hits)


def save(models: Mapping[str, Reranker], path: Path, about: dict[str, object]) -> str:
    """Write the scorers as JSON (sorted keys, so the same models give the same file); returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"models": {lang: m.to_dict() for lang, m in models.items()}, "trained": about}
    path.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", "utf-8")
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Stale(Exception):
    """A scorer written for other features than this version computes."""


def _scorer(data: object) -> Reranker:
    if not isinstance(data, dict):
        raise TypeError("a scorer is not an object")
    names, mean, scale, coef = data["features"], data["mean"], data["scale"], data["coef"]
    if tuple(names) != FEATURES or not (len(mean) == len(scale) == len(coef) == len(FEATURES)):
        raise _Stale()
    return Reranker(
        np.array(mean, dtype=np.float32),
        np.array(scale, dtype=np.float32),
        np.array(coef, dtype=np.float32),
        int(data["pool"]),
    )


def load(path: Path = WEIGHTS) -> Rerankers:
    """Read a reranker file.

    Raises:
        ModelLoadError: missing, not JSON, or written for other features.
    """
    fix = "restore it with `git checkout -- kb/weights/reranker.json` or retrain with `python scripts/train.py rerank-fit`"
    if not path.is_file():
        raise ModelLoadError(f"reranker weights {path} are missing: {fix}")
    raw = path.read_bytes()
    try:
        models = {str(lang): _scorer(m) for lang, m in json.loads(raw)["models"].items()}
    except _Stale:
        raise ModelLoadError(f"{path}: written for other features than this version computes: {fix}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: not a reranker file ({exc}): {fix}") from exc
    return Rerankers(models, hashlib.sha256(raw).hexdigest())


def check_manifest(recorded: WeightsInfo | None, model: Rerankers, where: str) -> None:
    """Raises ModelMismatchError when the index was built with other reranker weights than the ones shipped (its
    figures were measured with those); an index from before the reranker was recorded passes."""
    if recorded and recorded.sha256 != model.sha256:
        raise ModelMismatchError(
            f"{where} was built for reranker {recorded.sha256[:12]}, but {WEIGHTS.name} is {model.sha256[:12]}: "
            "rebuild with `python -m kb build` (nothing is re-embedded), or search with --rerank off"
        )


_SHIPPED: list[Rerankers] = []
_LOCK = threading.Lock()


def shipped() -> Rerankers:
    """The reranker in the repository, read once."""
    with _LOCK:
        if not _SHIPPED:
            _SHIPPED.append(load())
        return _SHIPPED[0]
