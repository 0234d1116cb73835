"""Quote check: a table of quotes drawn from the bundled corpus, each with its verdict and location."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from kb.cli import main as cli
from kb.embed.models import HashingEmbedder
from kb.errors import IndexCorruptError, QueryError
from kb.index.build import build
from kb.index.generations import current_generation
from kb.quote.check import QuoteChecker, QuoteReport
from kb.text.fold import fold

ROOT = Path(__file__).parent.parent
ZH02 = "zh/zh02_consumer_rights_law.txt"
ZH01 = "zh/zh01_ecommerce_law.txt"
ZH07 = "zh/zh07_pipl.txt"
PDF01 = "pdf/pdf01_cbec_book_future_of_cross_border_ecommerce.pdf"
PDF02 = "pdf/pdf02_cbec_journal_foreword.pdf"
SEED0 = "seeds/000_0bac28b07871efd7.txt"
EN12 = "en/en12_economist_drumtower_live_streamers_crackdown_SHORT.txt"
ART25 = "经营者采用网络、电视、电话、邮购等方式销售商品，消费者有权自收到商品之日起七日内退货，且无需说明理由"
PIPL9 = "个人信息处理者应当对其个人信息处理活动负责，并采取必要措施保障所处理的个人信息的安全。"
EC17 = "电子商务经营者应当全面、真实、准确、及时地披露商品或者服务信息，保障消费者的知情权和选择权。"
SEED = (
    "Its sustained and healthy development cannot be separated from a standardized, orderly, fair and "
    "transparent ecological environment."
)
JD = "It is employing 1.26 lakh employees and has earned 62.90 billion US $ as revenue."


@dataclass(frozen=True)
class Case:
    """A quote, its verdict, and where its best match must be: document plus article or exact source text."""

    name: str
    quote: str
    verdict: str
    doc: str | None = None
    article: str | None = None
    source: str | None = None  # the original text at the reported offsets (verbatim, normalized, omissions)
    change: tuple[str, str, str] | None = None  # an op of the diff: (op, quote side, source side)


CASES = [
    # verbatim
    Case("zh exact clause", ART25[23:], "verbatim", ZH02, "第二十五条", ART25[23:]),
    Case("zh exact article", PIPL9, "verbatim", ZH07, "第九条", PIPL9),
    Case("zh two characters (below one trigram)", "退货", "verbatim", ZH02, source="退货"),
    Case("en exact sentence", SEED, "verbatim", SEED0, source=SEED),
    Case(
        "en exact from the pdf book",
        "The share of J.D.Com Inc. revenue",
        "verbatim",
        PDF01,
        source="The share of J.D.Com Inc. revenue",
    ),
    # verbatim after normalisation
    Case(
        "zh traditional characters",
        "電子商務經營者應當全面、真實、準確、及時地披露商品或者服務信息，保障消費者的知情權和選擇權。",
        "normalized",
        ZH01,
        "第十七条",
        EC17,
    ),
    Case(
        "zh traditional characters 2",
        "個人信息處理者應當對其個人信息處理活動負責，並採取必要措施保障所處理的個人信息的安全。",
        "normalized",
        ZH07,
        "第九条",
        PIPL9,
    ),
    Case("zh half-width comma", ART25[:45].replace("，", ","), "normalized", ZH02, "第二十五条", ART25[:45]),
    Case(
        "zh full-width digits",
        "本规定自２００９年３月１日起施行",
        "normalized",
        "zh/zh14_shanghai_ecommerce_promotion.txt",
        "第二十二条",
        "本规定自2009年3月1日起施行",
    ),
    Case(
        "zh straight quotes",
        '通过大众传播媒介发布的广告应当显著标明"广告"，与其他非广告信息相区别',
        "normalized",
        "zh/zh03_advertising_law.txt",
        "第十四条",
        "通过大众传播媒介发布的广告应当显著标明“广告”，与其他非广告信息相区别",
    ),
    Case(
        "zh line break and spaces",
        "消费者有权自收到商品之日起\n七日内 退货",
        "normalized",
        ZH02,
        "第二十五条",
        "消费者有权自收到商品之日起七日内退货",
    ),
    Case("en case", SEED.replace("cannot", "CANNOT").lower(), "normalized", SEED0, source=SEED),
    Case(
        "en curly vs straight quotes",
        'Jiehao Chen, The Economist\'s China researcher and "Drum Tower" producer',
        "normalized",
        EN12,
        source="Jiehao Chen, The Economist’s China researcher and “Drum Tower” producer",
    ),
    Case(
        "en quote spanning pdf line breaks",
        "Having endured for billions of years, the Earth now faces",
        "normalized",
        PDF02,
        source="Having endured for billions of\nyears, the Earth now faces",
    ),
    Case("en pdf line break before a number", JD, "normalized", PDF01, source=JD.replace("earned ", "earned\n")),
    Case(
        "en hyphen broken across lines",
        "revenue is ac-\ncounted to be 32.97 per cent",
        "normalized",
        PDF01,
        source="revenue is\naccounted to be 32.97 per cent",
    ),
    Case(
        "en space the pdf lost",
        "(Table 5). When compared to the number",
        "normalized",
        PDF01,
        source="(Table 5).When compared to the number",
    ),
    # with omissions
    Case("zh ellipsis", ART25[:23] + "……且无需说明理由", "omissions", ZH02, "第二十五条", ART25),
    Case(
        "zh three dots",
        EC17[:30] + "...电子商务经营者不得以虚构交易、编造用户评价等方式进行虚假或者引人误解的商业宣传",
        "omissions",
        ZH01,
        "第十七条",
        EC17[:-1] + "。电子商务经营者不得以虚构交易、编造用户评价等方式进行虚假或者引人误解的商业宣传",
    ),
    Case(
        "en ellipsis",
        "Live-streaming is big business in China … This digital gold rush has lifted many",
        "omissions",
        EN12,
        source="Live-streaming is big business in China, with millions of broadcasts happening "
        "daily, featuring everything from shopping deals to dating advice. This digital gold rush has lifted many",
    ),
    Case(
        "en bracketed ellipsis", "Live-streaming is big business in China [...] it comes with risks.", "omissions", EN12
    ),
    # close but altered
    Case(
        "zh one number changed",
        ART25[23:].replace("七日", "十日"),
        "altered",
        ZH02,
        "第二十五条",
        change=("changed", "十", "七"),
    ),
    Case(
        "zh one digit changed",
        "本规定自2009年3月2日起施行",
        "altered",
        "zh/zh14_shanghai_ecommerce_promotion.txt",
        "第二十二条",
        change=("changed", "2", "1"),
    ),
    Case(
        "zh one word changed",
        PIPL9.replace("必要", "一切"),
        "altered",
        ZH07,
        "第九条",
        change=("changed", "一切", "必要"),
    ),
    Case(
        "zh one word dropped", ART25[23:].replace("且", ""), "altered", ZH02, "第二十五条", change=("dropped", "", "且")
    ),
    Case(
        "zh one word added",
        EC17.replace("服务信息", "服务的信息"),
        "altered",
        ZH01,
        "第十七条",
        change=("added", "的", ""),
    ),
    Case(
        "en one word changed",
        SEED.replace("transparent", "open"),
        "altered",
        SEED0,
        change=("changed", "open", "transparent"),
    ),
    Case("en one word dropped", SEED.replace(" orderly,", ""), "altered", SEED0, change=("dropped", "", "orderly,")),
    Case("en one word added", SEED.replace("fair and", "fair, open and"), "altered", SEED0),
    Case("en one number changed", JD.replace("62.90", "62.91"), "altered", PDF01, change=("changed", "62.91", "62.90")),
    Case(
        "en year changed",
        "the percentage change in the number of digital buyers during the year 2020 over the year 2018",
        "altered",
        PDF01,
        change=("changed", "2018", "2016"),
    ),
    Case(
        "zh two articles mixed",
        ART25 + "。经营者在经营活动中使用格式条款的，应当以显著方式提请消费者注意商品或者服务的数量和质量",
        "altered",
        ZH02,
        "第二十五条",
    ),
    Case(
        "zh ellipsis joining two laws",
        ART25[:23] + "……个人信息处理者应当对其个人信息处理活动负责",
        "altered",
        ZH02,
        "第二十五条",
    ),
    # not found
    Case("zh fabricated", "电子商务经营者应当在其首页显著位置公示其碳排放信息，并每年向社会公布。", "not_found"),
    Case(
        "zh fabricated 2",
        "平台内经营者销售的商品存在质量问题的，电子商务平台经营者应当先行赔付并承担连带责任。",
        "not_found",
    ),
    Case(
        "en fabricated",
        "The Ministry of Commerce announced that all live-streamers must obtain a federal "
        "broadcasting licence by 2025.",
        "not_found",
    ),
]


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> QuoteChecker:
    """The bundled corpus indexed with the hashing embedder: the quote check needs only the store and quote index."""
    out = tmp_path_factory.mktemp("quote") / "index"
    build(ROOT / "corpus", out, {"dense": HashingEmbedder()}, cache_dir=None)
    return QuoteChecker(out)


def assert_provenance(checker: QuoteChecker, report: QuoteReport) -> None:
    for m in report.matches:
        doc = checker.parts.store.document(m.doc_id)
        assert doc is not None and doc.text[m.char_start : m.char_end] == m.text
        assert doc.text[m.context_start : m.context_start + len(m.context)] == m.context
        if m.kind == "verbatim":
            assert m.text == report.quote or (m.quote_span and m.text == report.quote[slice(*m.quote_span)])
        if m.kind == "normalized":
            assert fold(m.text).text in (fold(report.quote).text, fold(report.quote, join_hyphens=True).text)


def test_table_covers_every_verdict() -> None:
    assert len(CASES) >= 30
    assert {c.verdict for c in CASES} == {"verbatim", "normalized", "omissions", "altered", "not_found"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_quote_table(checker: QuoteChecker, case: Case) -> None:
    report = checker.check(case.quote)
    best = report.matches[0] if report.matches else None
    assert report.verdict == case.verdict, [(m.kind, m.citation, m.similarity) for m in report.matches]
    assert_provenance(checker, report)
    if case.verdict == "not_found":
        assert all(m.kind in ("paraphrase", "translation") for m in report.matches)
        return
    assert best is not None and best.doc_id == case.doc
    if case.article:
        assert best.article == case.article
        assert case.article in best.citation
    if case.source:
        doc = checker.parts.store.document(case.doc)
        assert doc is not None
        start = doc.text.find(case.source)
        assert start >= 0, "the expected source text must be in the document"
        if case.verdict == "verbatim" and case.source == "退货":
            assert best.text == "退货"
        else:
            assert (best.char_start, best.char_end) == (start, start + len(case.source))
    if case.change:
        ops = [(d.op, d.quote.strip(), d.source.strip()) for d in best.diff]
        assert case.change in ops, ops
    if case.verdict == "altered" and not report.note:
        assert 0.75 <= (best.similarity or 0) < 1.0


def test_mixed_articles_locate_each_part(checker: QuoteChecker) -> None:
    report = checker.check(CASES[[c.name for c in CASES].index("zh two articles mixed")].quote)
    assert [(m.doc_id, m.article) for m in report.matches] == [(ZH02, "第二十五条"), (ZH02, "第二十六条")]
    assert "2 places" in report.note
    assert report.matches[0].quote_span == (0, len(ART25))


def test_omission_diff_shows_what_the_ellipsis_stands_for(checker: QuoteChecker) -> None:
    best = checker.check(ART25[:23] + "……且无需说明理由").matches[0]
    assert [d.op for d in best.diff] == ["equal", "dropped", "equal"]
    assert best.diff[1].source == "，消费者有权自收到商品之日起七日内退货，"
    assert len(best.parts) == 2


def test_ellipsis_parts_too_far_apart_are_not_omissions(checker: QuoteChecker) -> None:
    # 第一条 and 第五十五条 of the same law: both parts occur, thousands of characters apart.
    doc = checker.parts.store.document(ZH02)
    assert doc is not None
    first = doc.text[doc.text.index("第一条") + 4 :][:20]
    late = doc.text[doc.text.index("第五十五条") + 6 :][:20]
    report = checker.check(f"{first}……{late}")
    assert report.verdict != "omissions"


def test_one_character_or_number_off_is_never_verbatim(checker: QuoteChecker) -> None:
    """Random passages: the passage itself is verbatim at its offsets; with one character changed it never is."""
    rng = random.Random(5)
    store = checker.parts.store
    rows = rng.sample(range(store.n_chunks), 40)
    checked = 0
    for chunk in store.chunks(rows):
        doc = store.document(chunk.doc_id)
        assert doc is not None
        text = chunk.text
        start = rng.randrange(0, max(1, len(text) - 40))
        quote = text[start : start + 40].strip()
        if len(fold(quote).text) < 12:
            continue
        report = checker.check(quote)
        assert report.verdict == "verbatim"
        assert_provenance(checker, report)
        # Change one digit, or one letter / Chinese character, to another of the same kind.
        spots = [i for i, ch in enumerate(quote) if ch.isdigit()] or [i for i, ch in enumerate(quote) if ch.isalpha()]
        i = rng.choice(spots)
        ch = quote[i]
        new = "7" if ch.isdigit() and ch != "7" else "1" if ch.isdigit() else "七" if ch != "七" else "十"
        if ch.isascii() and ch.isalpha():
            new = "q" if ch.lower() != "q" else "z"
        changed = quote[:i] + new + quote[i + 1 :]
        report = checker.check(changed)
        assert_provenance(checker, report)  # whatever it reports verbatim really is the changed text
        where = chunk.char_start + start
        assert not any(
            m.kind in ("verbatim", "normalized") and m.char_start <= where + i < m.char_end and m.doc_id == chunk.doc_id
            for m in report.matches
        ), (quote, changed, report.verdict)
        checked += 1
    assert checked >= 30


def test_digits_split_by_a_space_are_another_number(checker: QuoteChecker) -> None:
    assert fold("20 19").text != fold("2019").text
    assert checker.check("本规定自20 09年3月1日起施行").verdict == "altered"


def test_cli_json_and_batch(checker: QuoteChecker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = checker.index_dir
    assert cli(["quote", "--index", str(index), "--json", PIPL9]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "verbatim"
    m = out["matches"][0]
    assert {
        "doc_id",
        "title",
        "citation",
        "page",
        "char_start",
        "char_end",
        "text",
        "similarity",
        "context",
        "diff",
        "label",
    } <= set(m)
    assert (m["doc_id"], m["citation"]) == (ZH07, "《中华人民共和国个人信息保护法》第九条")
    batch = tmp_path / "quotes.txt"
    batch.write_text(f"{PIPL9}\n\n{PIPL9.replace('必要', '一切')}\n", encoding="utf-8")
    assert cli(["quote", "--index", str(index), "--batch", str(batch)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["verdict"] for x in lines] == ["verbatim", None, "altered"]
    assert lines[2]["matches"][0]["diff"][1] == {"op": "changed", "quote": "一切", "source": "必要"}
    assert cli(["quote", "--index", str(index), ART25[23:].replace("七日", "十日")]) == 0
    assert "[-七-]{+十+}" in capsys.readouterr().out


def test_cli_batch_answers_every_line_like_search(
    checker: QuoteChecker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a symbols-only, an overlong or an undecodable line no longer ends the batch."""
    batch = tmp_path / "quotes.txt"
    batch.write_bytes(
        f"{PIPL9}\n？？！！\n{'长' * 6000}\n\xff\xfe{PIPL9}\n{PIPL9}\x00\n".encode().replace(
            "\xc3\xbf\xc3\xbe".encode("latin-1"), b"\xff\xfe"
        )
    )
    assert cli(["quote", "--index", str(checker.index_dir), "--batch", str(batch)]) == 1
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [x["verdict"] for x in lines] == ["verbatim", None, None, "verbatim", "verbatim"]
    assert "line 2: nothing to search for" in out.err and "line 3: the quote has 6000 characters" in out.err
    assert "error" in lines[1] and "error" in lines[2]


def test_cli_quote_with_nul_or_undecodable_bytes_is_answered(
    checker: QuoteChecker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["quote", "--index", str(checker.index_dir), "--json", PIPL9[:12] + "\x00" + PIPL9[12:]]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] in ("verbatim", "normalized", "omissions", "altered")
    undecodable = os.fsdecode(b"\xff\xfe") + PIPL9  # what Python makes of bytes the locale cannot decode
    assert cli(["quote", "--index", str(checker.index_dir), "--json", undecodable]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] in ("verbatim", "normalized")


def test_empty_quote_says_what_to_do(checker: QuoteChecker) -> None:
    with pytest.raises(QueryError, match="paste the sentence"):
        checker.check("  \n ")


def test_quote_index_is_incremental_and_checked(corpus: Path, tmp_path: Path) -> None:
    """A rebuild re-folds only changed texts; a damaged or pre-quote index is refused with the fix."""
    work = tmp_path / "corpus"
    shutil.copytree(corpus, work)
    index = tmp_path / "index"
    build(work, index, {"dense": HashingEmbedder()}, cache_dir=None)
    assert QuoteChecker(index).check("示范电子商务法").verdict in ("verbatim", "normalized", "omissions", "altered")
    law = work / "zh" / "ecommerce_law.md"
    law.write_text(law.read_text(encoding="utf-8") + "\n第九十九条 本条为测试而加入的新条文。\n", encoding="utf-8")
    build(work, index, {"dense": HashingEmbedder()}, cache_dir=None)
    checker = QuoteChecker(index)
    report = checker.check("本条为测试而加入的新条文")
    assert (report.verdict, report.matches[0].article) == ("verbatim", "第九十九条")
    gen = current_generation(index)
    (gen / "quote.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(IndexCorruptError, match="rebuild with `python -m kb build"):
        QuoteChecker(index)
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    del manifest["quote"]
    (gen / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="before the quote check"):
        QuoteChecker(index)


@pytest.mark.model
def test_english_translation_of_chinese_article_is_a_possible_source() -> None:
    """On the shipped index (real e5 + USE): never verbatim, and the Chinese article is offered as the source."""
    checker = QuoteChecker(ROOT / "index")
    report = checker.check(
        "Where a business operator sells goods online, by television, by telephone or by mail "
        "order, the consumer has the right to return the goods within seven days of receiving "
        "them without giving any reason."
    )
    assert report.verdict == "not_found"
    translations = [m for m in report.matches if m.kind == "translation"]
    assert (translations[0].doc_id, translations[0].article) == (ZH02, "第二十五条")
    assert translations[0].label == "possible source (translation)" and translations[0].similarity is None
    report = checker.check(
        "A personal information handler shall be responsible for its personal information "
        "handling activities and take the necessary measures to safeguard the security of the "
        "personal information it handles."
    )
    assert report.verdict == "not_found"
    assert (ZH07, "第九条") in [(m.doc_id, m.article) for m in report.matches if m.kind == "translation"]


def test_pdf_match_is_cited_to_its_page(checker: QuoteChecker) -> None:
    best = checker.check(JD).matches[0]
    doc = checker.parts.store.document(PDF01)
    assert doc is not None
    assert best.page == doc.page_at(best.char_start) == 38
    assert best.citation.endswith("p. 38")
    assert "62.90 billion" in best.context and best.context_start <= best.char_start
