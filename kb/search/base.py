"""What both backends share, written once above the contract (kb.search.contract): query and filter checks,
the model check, embedders loaded on first use, the document table's views, and hits.

A backend subclasses SearcherBase, sets `docs`, `spans`, `resolver` and `channels` when it opens, and
implements the engine-specific part: `_rankings`, `_fuse`, `refresh`, `source`, `passages` and `generation`.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Unpack

import numpy as np

from kb import config
from kb.catalog.facets import Facets, facets
from kb.catalog.filters import Filters
from kb.catalog.resolve import Resolved, Resolver
from kb.catalog.timeline import Span, documents_in_force
from kb.chunk import Chunk
from kb.embed import tower
from kb.embed.models import Embedder, load_embedder
from kb.embed.tower import TowerInfo
from kb.errors import ModelMismatchError, QueryError
from kb.index.citedby import Citing
from kb.index.manifest import Channel, WeightsInfo
from kb.ingest.document import DocRow
from kb.ingest.read import detect_lang
from kb.search import rerank as reranker
from kb.search.contract import MODES, Rankings, SearchOptions
from kb.search.hits import Hit, Reorder
from kb.search.memory import Answers
from kb.search.rerank import Similarity
from kb.text import bilingual
from kb.text.lexical import word_frequency

MAX_QUERY_CHARS = 2000
QUESTION_VECTORS = 64  # questions whose dense vector a searcher keeps (SearcherBase.question_vector)
# Control characters (C0, DEL, C1) and zero-width or direction marks pasted along with text from Word or PDFs.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Something a channel can match: a letter or digit in any script (CJK ideographs count as letters).
_WORDISH = re.compile(r"[^\W_]")
# Short model names accepted by --model for what the index records.
_SHORT = {"multilingual-e5-small": "e5", "use-multilingual-v3": "use"}


class SearcherBase:
    """The shared half of a backend. `where` names the index in messages; `rebuild` is the command that
    rebuilds it (each message that asks for a rebuild gives it)."""

    docs: dict[str, DocRow]
    spans: dict[str, Span]
    resolver: Resolver
    channels: dict[str, Channel]
    question_tower: TowerInfo | None  # what the index recorded (kb.embed.tower)
    reranker: WeightsInfo | None  # the reranker weights the index recorded (kb.search.rerank)

    def __init__(
        self,
        where: str,
        rebuild: str,
        embedders: dict[str, Embedder] | None,
        weights: dict[str, float] | None,
        tuned: bool | None = None,
        rerank: bool | None = None,
    ) -> None:
        self.where, self.rebuild = where, rebuild
        self.tuned = config.TUNED if tuned is None else tuned  # the question tower (the languages it was trained on)
        self.rerank = config.RERANK if rerank is None else rerank  # the trained reranker (kb.search.rerank)
        self.weights = dict(weights or config.WEIGHTS)
        self.tower_weights = dict(config.TOWER_WEIGHTS)  # over `weights` for Chinese questions through the tower
        self._given = dict(embedders or {})
        self._embedders: dict[str, Embedder] = {}
        self._served: dict[str, Embedder] = {}
        # What searches call instead of each loaded embedder (kb.serve batches concurrent questions this way).
        self.query_wrapper: Callable[[Embedder], Embedder] | None = None
        self._lock = threading.Lock()
        self._question_vectors: OrderedDict[tuple[str, bool], np.ndarray] = OrderedDict()
        self._answers: Answers | None = None

    def check_models(self, model: str | None) -> None:
        """Raises ModelMismatchError when --model or a given embedder is not what the index was built with."""
        dense = self.channels.get("dense")
        if model and dense and model not in (dense.model, _SHORT.get(dense.model, dense.model)):
            raise ModelMismatchError(
                f"{self.where} was built with model '{dense.model}', not '{model}': search without "
                f"--model, or rebuild with `{self.rebuild} --model {model}`"
            )
        for channel, embedder in self._given.items():
            info = self.channels.get(channel)
            if info and (info.model != embedder.name or info.dim != embedder.dim):
                raise ModelMismatchError(
                    f"{self.where} channel '{channel}' was built with '{info.model}' ({info.dim} dims), "
                    f"not '{embedder.name}' ({embedder.dim}): rebuild with `{self.rebuild}`"
                )
        self.check_tower(self.question_tower, self.channels)

    def check_tower(self, recorded: TowerInfo | None, channels: dict[str, Channel]) -> None:
        """Raises ModelMismatchError when questions would go through the shipped tower but the index (or a newly
        published generation of it) recorded another one."""
        dense = channels.get("dense")
        if self.tuned and dense and "dense" not in self._given and tower.applies(dense.model):
            tower.check_manifest(recorded, tower.shipped(), self.where)

    def through_tower(self, tuned: bool) -> bool:
        """Whether questions' dense vectors come from the question tower: it is on and serves the index's dense
        model. The reranker's sim feature then reads the passage adapter's vectors, for a question in any
        language (the adapter changes only the Chinese passages' rows)."""
        dense = self.channels.get("dense")
        return bool(tuned and dense is not None and "dense" not in self._given and tower.applies(dense.model))

    def chinese_through_tower(self, query: str, tuned: bool) -> bool:
        """Whether the question is Chinese and its dense vector comes from the question tower (every tower file is
        trained on Chinese): such a question is fused with `tower_weights` and searched over the passage
        adapter's vectors."""
        return self.through_tower(tuned) and detect_lang(query) == "zh"

    def fusion_weights(self, query: str, tuned: bool) -> dict[str, float]:
        """The channel weights a question is fused with: `weights`, with `tower_weights` over them for a Chinese
        question through the question tower (config.TOWER_WEIGHTS)."""
        return {**self.weights, **self.tower_weights} if self.chinese_through_tower(query, tuned) else self.weights

    def embedder(self, channel: str, tuned: bool = False) -> Embedder:
        """The embedder the index recorded for a channel, loaded on first use; tuned: the dense channel's
        questions go through the question tower (kb.embed.tower)."""
        if channel in self._given:
            return self._given[channel]
        key = "dense+tower" if tuned and channel == "dense" else channel
        served = self._served.get(key)
        if served is not None:
            return served
        with self._lock:
            if channel not in self._embedders:
                self._embedders[channel] = load_embedder(self.channels[channel].model)
            if key not in self._embedders:
                self._embedders[key] = tower.wrap(self._embedders[channel], self.question_tower, self.where)
            if key not in self._served:
                loaded = self._embedders[key]
                self._served[key] = self.query_wrapper(loaded) if self.query_wrapper else loaded
            return self._served[key]

    def warm(self) -> None:
        """Load now what the first question would wait for: each channel's model (with the question tower when
        it is on), the tokenizer vocabularies, and the pages of their prepared files. The app calls this in a
        background thread at start-up and says "loading models…" until it returns."""
        from kb.text import bilingual
        from kb.text.lexical import tokenize

        questions = ["网购商品无理由退货期限", "returns of goods bought online"]
        tokenize(" ".join(questions))
        if self.weights.get("bm25_x"):
            bilingual.glossary()
        for channel in self.channels:
            self.embedder(channel, tuned=self.tuned).query(questions)

    def documents(self) -> list[dict[str, Any]]:
        """The indexed documents with metadata, chunk counts, and when each is in force (kb.catalog.timeline)."""
        return documents_in_force(self.docs, self.spans)

    def facets(self) -> Facets:
        """Levels, issuers, validity, regions and languages in the index with document counts, and date ranges."""
        return facets(self.docs, self.spans)

    def references(self, chunk: Chunk) -> list[Resolved]:
        """The cross-references made in a passage, resolved to chunks of this index where it holds them."""
        return self.resolver.references(chunk)

    def citing(
        self, doc_id: str, article_no: int, sub: int | None = None, paragraph: int | None = None
    ) -> list[Citing]:
        """Passages citing an article; a backend holding a cited-by table overrides this.

        Raises:
            QueryError: always here: this backend keeps no cited-by table.
        """
        raise QueryError(f"{self.where} keeps no cited-by table: use a FAISS index folder (python -m kb build)")

    def search(self, query: str, k: int = 10, **options: Unpack[SearchOptions]) -> list[Hit]:
        """Rank passages for a question in Chinese or English.

        Options (kb.search.contract.SearchOptions; each may be left out):
            lang: keep only passages in this language ('zh' or 'en').
            docs: keep only these doc_ids.
            mode: 'hybrid' (the default), 'keyword' (BM25 only) or 'semantic' (vectors only).
            include_repealed: also rank texts marked 已废止 (repealed) or 已修改 (superseded by a newer version).
            levels: keep these levels (法律, 行政法规, ... as `facets()` lists them).
            issuers: keep texts whose issuing body contains one of these names.
            validity: keep texts with these statuses (现行有效, 已修改, 已废止, 尚未生效); replaces the default hiding.
            date_from, date_to: keep texts whose `date_field` ('published', the default, or 'effective') lies in
                this range; 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD'; texts without that date are left out.
            as_of: keep the texts in force on this date, whichever version that was (kb.catalog.timeline).
            xrefs: resolve each hit's cross-references (default on; a few milliseconds for ten hits).
            tuned: questions through the question tower (kb.embed.tower); None: as the searcher was opened.
            rerank: re-order the first fused passages with the trained reranker (kb.search.rerank); None: as the
                searcher was opened.
        Raises:
            QueryError: empty query, unknown mode, or a filter value the index cannot answer; the message
                lists the known values.
        """
        query = clean_query(query)
        filters, mode = filters_of(options), options.get("mode") or "hybrid"
        check_query(query, mode)
        xrefs = options.get("xrefs", True)
        tuned = options.get("tuned")
        tuned = self.tuned if tuned is None else tuned
        rerank = options.get("rerank")
        model = reranker.shipped() if (self.rerank if rerank is None else rerank) and k > 0 else None
        if model is None or not model.applies(query):
            return self._search(query, k, filters, mode, xrefs, tuned)
        reranker.check_manifest(self.reranker, model, self.where)
        similarity = self._similarity(query, tuned)
        translated = self.translated(query) if model.across(query) else None
        return self._search(
            query,
            max(k, model.pool(query)),
            filters,
            mode,
            xrefs,
            tuned,
            lambda hits: model.rerank(query, hits, similarity, translated)[:k],
        )

    def question_vector(self, query: str, tuned: bool) -> np.ndarray:
        """The dense channel's vector of a question, kept for the last few questions: the channel and the reranker
        (its sim feature) both read it, and a question must not be embedded twice."""
        key = (query, tuned)
        with self._lock:
            vec = self._question_vectors.get(key)
            if vec is not None:
                self._question_vectors.move_to_end(key)
                return vec
        vec = self.embedder("dense", tuned).query([query])[0]
        with self._lock:
            self._question_vectors[key] = vec
            while len(self._question_vectors) > QUESTION_VECTORS:
                self._question_vectors.popitem(last=False)
        return vec

    def answers(self, resolver: Resolver) -> Answers | None:
        """The question memory's articles among the documents `resolver` reads (one generation's), found as
        questions ask for them; None when the shipped tower file holds no memory."""
        memory = tower.shipped().memory
        if memory is None:
            return None
        with self._lock:
            if self._answers is None or self._answers.resolver is not resolver:
                self._answers = Answers(memory, resolver)
            return self._answers

    def remembered(self, query: str, mode: str, tuned: bool, resolver: Resolver) -> list[str]:
        """The memory channel's chunk ids, best first and before filters: for a Chinese question through the tower
        in hybrid mode (kb.search.memory), else none."""
        if mode != "hybrid" or "dense" not in self.channels or not self.chinese_through_tower(query, tuned):
            return []
        answers = self.answers(resolver)
        return answers.ranked(self.question_vector(query, tuned)) if answers is not None else []

    def _similarity(self, query: str, tuned: bool) -> Similarity | None:
        """The dense similarity of the question to given hits' passages, for the reranker; None: not available."""
        return None

    def translated(self, query: str) -> str:
        """The question with the Chinese words it translates to (kb.text.bilingual.with_translation), for a
        cross-language reranker; picked by how many of the index's passages hold each word, where it knows."""
        return bilingual.with_translation(query, word_frequency)

    def rankings(
        self,
        query: str,
        want: int,
        *,
        lang: str | None = None,
        docs: Sequence[str] | None = None,
        mode: str = "hybrid",
        include_repealed: bool = False,
        tuned: bool | None = None,
    ) -> Rankings:
        """Each channel's chunk ids, best first, before fusion (benchmarks tune the fusion on these)."""
        query = clean_query(query)
        check_query(query, mode)
        filters = Filters(lang=lang, docs=tuple(docs or ()), include_repealed=include_repealed)
        return self._rankings(query, want, filters, mode, self.tuned if tuned is None else tuned)

    def fuse(
        self, ranked: Rankings, query: str, k: int, *, include_repealed: bool = False, tuned: bool | None = None
    ) -> list[Hit]:
        """Hits from channel rankings made by `rankings` (`kb.search.fusion.depth(k)` deep for `search`'s list).

        tuned: whether the dense channels were ranked with the question tower's vector, which sets their weights
        (fusion_weights); None: as the searcher was opened, like `rankings`.
        """
        query = clean_query(query)
        tuned = self.tuned if tuned is None else tuned
        filters = Filters(include_repealed=include_repealed)
        return self._fuse(ranked, query, k, filters, self.fusion_weights(query, tuned))

    def _search(
        self, query: str, k: int, filters: Filters, mode: str, xrefs: bool, tuned: bool, reorder: Reorder | None = None
    ) -> list[Hit]:
        """The channels `depth(k)` deep, fused into the k best (kb.search.fusion.depth), through `reorder` before
        the hits are completed (kb.search.hits.hits_of)."""
        raise NotImplementedError

    def _rankings(self, query: str, want: int, filters: Filters, mode: str, tuned: bool) -> Rankings:
        raise NotImplementedError

    def _fuse(self, ranked: Rankings, query: str, k: int, filters: Filters, weights: dict[str, float]) -> list[Hit]:
        raise NotImplementedError


def filters_of(options: SearchOptions) -> Filters:
    """The options of a search that narrow what it may return (lists as tuples; left out: no restriction)."""
    return Filters(
        lang=options.get("lang"),
        docs=tuple(options.get("docs") or ()),
        levels=tuple(options.get("levels") or ()),
        issuers=tuple(options.get("issuers") or ()),
        validity=tuple(options.get("validity") or ()),
        date_from=options.get("date_from"),
        date_to=options.get("date_to"),
        date_field=options.get("date_field") or "published",
        as_of=options.get("as_of"),
        include_repealed=bool(options.get("include_repealed")),
    )


def check_query(query: str, mode: str) -> None:
    """Raises QueryError when there is nothing to search for or the mode is unknown."""
    if not query.strip():
        raise QueryError("empty query: type a question or some keywords")
    if not _WORDISH.search(query):
        raise QueryError(
            "nothing to search for: the question has only punctuation or symbols; type some words in Chinese or English"
        )
    if mode not in MODES:
        raise QueryError(f"unknown mode '{mode}': use one of {', '.join(MODES)}")


def clean_query(query: str) -> str:
    """The question as searched: invisible characters removed, whitespace collapsed, at most MAX_QUERY_CHARS."""
    return " ".join(_INVISIBLE.sub(" ", query).split())[:MAX_QUERY_CHARS]
