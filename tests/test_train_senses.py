"""Learned English -> Chinese senses (kb.train.senses) on tiny made-up translation pairs."""

from __future__ import annotations

from kb.text.bilingual import Glossary
from kb.train.senses import LEARNED, chinese_words, english_keys, learn, with_senses

PAIRS = [
    ("Is price fraud illegal?", "价格欺诈违法吗？"),
    ("What counts as fraud by a seller?", "商家欺诈怎么认定？"),
    ("Can I return goods after fraud?", "遭遇欺诈可以退货吗？"),
    ("Can I return goods within seven days?", "七天内可以退货吗？"),
    ("Can I return goods bought online?", "网购商品可以退货吗？"),
]


def test_keys_are_stems_and_adjacent_pairs() -> None:
    keys = english_keys("price fraud")
    assert {"price", "fraud", "price fraud"} <= keys
    assert chinese_words("价格欺诈违法吗") >= {"价格", "欺诈"}
    assert not any(len(w) < 2 for w in chinese_words("价格欺诈违法吗"))


def test_learns_the_word_a_key_keeps_meeting() -> None:
    learned = learn(PAIRS)
    assert learned["fraud"][0] == "欺诈"
    assert learned["return"][0] == "退货"
    assert "price" not in learned  # one pair: below min_count
    assert learn(PAIRS, min_count=4) == {}  # no key meets its word four times


def test_dice_threshold_drops_a_word_the_key_rarely_meets() -> None:
    common = [(f"fraud case {n}", "欺诈") for n in range(3)] + [(f"other {n}", "欺诈") for n in range(30)]
    assert "fraud" not in learn(common)  # 欺诈 in 33 pairs, with "fraud" in 3: Dice 0.17
    assert learn(common, min_dice=0.1)["fraud"] == ["欺诈"]


def test_learned_senses_are_read_before_the_dictionary() -> None:
    dictionary = Glossary({"fraud": {"舞弊": 1.0, "诈骗罪": 1.0}}, {"舞弊": ("舞弊",), "诈骗罪": ("诈骗罪",)})

    def df(token: str) -> int:
        return 5

    assert dictionary.translate("what is fraud", df, per_word=1) in (["舞弊"], ["诈骗罪"])
    merged = with_senses(dictionary, {"fraud": ["欺诈"]})
    assert merged.table["fraud"]["欺诈"] == LEARNED
    assert merged.translate("what is fraud", df, per_word=1) == ["欺诈"]
    assert merged.translate("what is fraud", df, per_word=3)[0] == "欺诈"
    assert dictionary.table["fraud"] == {"舞弊": 1.0, "诈骗罪": 1.0}  # the dictionary itself is unchanged
