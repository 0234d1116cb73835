"""Bilingual BM25 tokens: jieba search-mode words for Chinese, Snowball stems without stopwords for English."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

from kb import config

log = logging.getLogger(__name__)

TOKENIZER_VERSION = "jieba-search+snowball-en/1"

# Runs of CJK ideographs, or of Latin letters and digits (with inner ' and -).
# Hyphens split ("live-stream" matches "live streaming"); apostrophes do not ("China's" stems whole).
_RUNS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:['’][a-z0-9]+)*")
_jieba_lock = threading.Lock()

# Function words and question scaffolding that carry no topic: removing them stops a layperson's
# "请问我应该怎么办" from matching every article that contains 应当 or 的.
ZH_STOPWORDS = frozenset(
    [
        "的",
        "了",
        "和",
        "与",
        "及",
        "或",
        "等",
        "是",
        "在",
        "对",
        "为",
        "以",
        "由",
        "把",
        "被",
        "将",
        "向",
        "从",
        "于",
        "之",
        "其",
        "而",
        "并",
        "且",
        "也",
        "都",
        "就",
        "又",
        "还",
        "即",
        "则",
        "所",
        "着",
        "过",
        "我",
        "你",
        "他",
        "她",
        "它",
        "我们",
        "你们",
        "他们",
        "自己",
        "这",
        "那",
        "这个",
        "那个",
        "这些",
        "那些",
        "这样",
        "那样",
        "什么",
        "怎么",
        "怎样",
        "如何",
        "为什么",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "哪些",
        "哪个",
        "多少",
        "请问",
        "请",
        "想",
        "问",
        "一下",
        "可以",
        "能",
        "能否",
        "是否",
        "会",
        "要",
        "需要",
        "应该",
        "有",
        "没有",
        "没",
        "不",
        "个",
        "些",
        "一个",
        "上",
        "下",
        "中",
        "后",
        "前",
        "时",
        "时候",
        "如果",
        "但是",
        "但",
        "因为",
        "所以",
        "然后",
        "现在",
        "已经",
        "一直",
        "还是",
        "或者",
        "以及",
        "以下",
        "以上",
        "之后",
    ]
)
EN_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "may",
        "me",
        "might",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "shall",
        "should",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _jieba_full():
    """jieba with its whole dictionary in memory: the build path, which segments every passage."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba.dt


@lru_cache(maxsize=1)
def _jieba():
    """jieba over the memory-mapped dictionary (kb.text.jiebadict): same words, no second of loading."""
    import jieba

    from kb.text.jiebadict import mapped_freq

    jieba.setLogLevel(logging.WARNING)
    if not config.fast_start():  # a long-running server: dict lookups are several times cheaper
        return _jieba_full()
    seg = jieba.Tokenizer()
    table = mapped_freq(seg)
    if table is None:
        return _jieba_full()
    seg.FREQ, seg.total = table
    seg.initialized = True
    return seg


def bm25s_module():
    """bm25s, imported with its logger quietened (it sets itself to DEBUG on import)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def normalise(text: str) -> str:
    """NFKC (full-width to half-width) and lower case: what both sides of a match are compared in."""
    return unicodedata.normalize("NFKC", text).lower()


def tokenize(text: str, segmenter=None) -> list[str]:
    """Tokens for BM25 from mixed Chinese and English text (segmenter: a jieba.Tokenizer, by default _jieba())."""
    tokens: list[str] = []
    stem = _stemmer().stemWord
    seg = segmenter or _jieba()
    for m in _RUNS.finditer(normalise(text)):
        run = m.group(0)
        if run[0] >= "\u3400":
            tokens.extend(w for w in seg.lcut_for_search(run) if w not in ZH_STOPWORDS)
        elif run not in EN_STOPWORDS:
            tokens.append(stem(run.replace("’", "'")))
    return tokens


def tokenize_many(texts: list[str]) -> list[list[str]]:
    """Tokenize a batch (the build path: jieba's in-memory dictionary, faster over many texts)."""
    seg = _jieba_full()
    return [tokenize(t, seg) for t in texts]


def token_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, token) over the original text, for highlighting; NFKC keeps offsets for CJK and ASCII."""
    norm = normalise(text)
    if len(norm) != len(text):  # NFKC changed lengths (ligatures etc.): fall back to case folding only
        norm = text.lower()
    stem = _stemmer().stemWord
    for m in _RUNS.finditer(norm):
        run = m.group(0)
        if run[0] >= "\u3400":
            for word, s, e in _jieba().tokenize(run, mode="search"):
                if word not in ZH_STOPWORDS:
                    yield m.start() + s, m.start() + e, word
        elif run not in EN_STOPWORDS:
            yield m.start(), m.end(), stem(run)


def word_frequency(word: str) -> int:
    """jieba's dictionary count of a word (0 when it has none): a corpus-independent stand-in for a document
    frequency where an index offers none (the Milvus backend translating a question: kb.text.bilingual)."""
    return int(_jieba().FREQ.get(word, 0) or 0)
