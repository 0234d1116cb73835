"""The real app in headless Chromium: questions typed, citations seen, markup inert, time to results measured.

Needs Debian `chromium` and `fonts-noto-cjk` and the Python `playwright` package (`scripts/test.sh` installs
them). Without them the tests skip, unless KB_REQUIRE_BROWSER=1 (set by scripts/test.sh) makes that a failure.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import load_script, one_file_index

_APPSERVER = load_script("appserver")
IDLE, free_port, running_app = _APPSERVER.IDLE, _APPSERVER.free_port, _APPSERVER.running_app

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("KB_CHROMIUM", "/usr/bin/chromium")
# Questions timed after a first one has loaded the models: Chinese and English, short and long.
TIMED = [
    "网购商品无理由退货期限",
    "how are live-stream hosts regulated",
    "电子商务平台经营者的责任",
    "cross-border e-commerce pilot zones",
    "直播营销人员应当遵守哪些规定",
    "consumer personal information protection",
    "格式条款规定收货人签收商品即视为认可质量，这个条款有效吗",
]

SIDEBAR_CHECKED = "() => document.querySelectorAll('[data-testid=stSidebar] input[type=radio]:checked').length"

pytestmark = pytest.mark.browser


def _browser_or_skip() -> object:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Python package playwright is not installed"
    else:
        if Path(CHROMIUM).exists():
            return sync_playwright
        reason = f"{CHROMIUM} not found (apt-get install chromium fonts-noto-cjk)"
    if os.environ.get("KB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:  # type: ignore[operator]
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
        )
        yield browser
        browser.close()


def _ask(page: object, question: str, timeout_ms: int = 60_000) -> float:
    """Type a question, press Enter, wait until its results are drawn; seconds from Enter to results."""
    box = page.get_by_label("Question / 问题")  # type: ignore[attr-defined]
    box.fill(question)
    start = time.perf_counter()
    box.press("Enter")
    # The results header names the question and is drawn only after the search has returned; the page is
    # complete when no element of the previous run (data-stale) or placeholder (skeleton) is left.
    page.get_by_text(f"“{question}”").first.wait_for(timeout=timeout_ms)  # type: ignore[attr-defined]
    page.wait_for_function(IDLE, timeout=timeout_ms)  # type: ignore[attr-defined]
    # Element code loads lazily on first use; until then a passage is a grey placeholder.
    page.locator(".kb-passage").first.wait_for(timeout=timeout_ms)  # type: ignore[attr-defined]
    return time.perf_counter() - start


@pytest.mark.model
def test_questions_in_the_browser_show_citations(chromium: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(ROOT / "index") as url:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.get_by_label("Question / 问题").wait_for(timeout=60_000)
        first = _ask(page, "格式条款规定收货人签收商品即视为认可质量，这个条款有效吗", 120_000)
        body = page.inner_text("body")
        assert "《最高人民法院关于审理网络消费纠纷案件适用法律若干问题的规定（一）》第一条" in body
        # The interface switched to Chinese with the question; every sidebar choice must still show as chosen.
        assert page.evaluate(SIDEBAR_CHECKED) == 4
        timings = [_ask(page, q) for q in TIMED]
        _ask(page, "what measures address live-stream talent")
        body = page.inner_text("body")
        assert "Vigorously cultivate high-quality e-commerce" in body and "Open source" in body
        page.screenshot(path=str(ARTIFACTS / "app-results.png"), full_page=False)
        page.get_by_text("Answer / 答案", exact=True).click()
        page.get_by_text("grouped by document").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-answer.png"), full_page=False)
        assert "q=what+measures" in page.url or "q=what%20measures" in page.url
        assert not errors, errors
        report = {
            "first_question_s": round(first, 2),
            "timed_questions": len(timings),
            "median_s": round(statistics.median(timings), 3),
            "max_s": round(max(timings), 3),
            "all_s": [round(x, 3) for x in timings],
        }
        (ARTIFACTS / "browser-latency.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        print("browser latency:", report)
        page.close()


def test_markup_in_a_document_stays_text_in_the_browser(chromium: object, tmp_path: Path) -> None:
    index = one_file_index(
        tmp_path,
        "tricky.txt",
        "Customs Notice\n\nThe notice says <script>alert(1)</script> and <img src=x onerror=alert(2)> "
        "about customs rules.\n\n# Not a heading either\n\nThe second paragraph names **customs** "
        "again.\n",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(index) as url:
        page = chromium.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url + "/?ui=en")
        page.get_by_label("Question / 问题").wait_for(timeout=60_000)
        _ask(page, "customs rules notice")
        body = page.inner_text("body")
        assert "<script>alert(1)</script>" in body and "<img src=x onerror=alert(2)>" in body
        # Markdown in a source file is rendered to text at ingest (issue 17): the marks never reach the page, and
        # what stays is plain text, not HTML the browser would draw.
        assert "names customs again" in body and "**customs**" not in body
        page.get_by_text("Open source").first.click()
        page.get_by_text("Whole document (scrolled to the passage)").click()
        page.wait_for_timeout(1500)
        frame = next(f for f in page.frames if f != page.main_frame and "Customs Notice" in f.inner_text("body"))
        assert "<script>alert(1)</script>" in frame.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "app-markup.png"), full_page=True)
        assert not dialogs, dialogs
        page.close()


def test_url_parameters_fetch_nothing_and_link_nowhere(chromium: object, tmp_path: Path) -> None:
    """Issue 14: a shared link's q / in / doc shows as text; the browser fetches no image and gets no link."""
    index = one_file_index(tmp_path, "notice.txt", "Customs Notice\n\nThe notice names customs rules for parcels.\n")
    evil = f"http://127.0.0.1:{free_port()}"
    links = [
        f"/?ui=en&q=![x]({evil}/img-q)",
        f"/?ui=en&q=customs&in=![x]({evil}/img-in)",
        f"/?ui=en&page=source&doc=![x]({evil}/img-doc)",
        f"/?ui=en&q=[Session expired - sign in again]({evil}/phish) {evil}/bare www.example.com a@example.com",
    ]
    with running_app(index) as url:
        page = chromium.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url) if r.url.startswith(evil) else None)
        for link in links:
            page.goto(url + link.replace(" ", "%20"))
            page.get_by_text("Policy KB", exact=True).first.wait_for(timeout=60_000)
            page.wait_for_function(IDLE, timeout=60_000)
            page.wait_for_timeout(1000)
            body = page.inner_text("body")
            assert evil in body.replace("\u2060", ""), link  # the value is shown, as text (word joiners aside)
            hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            assert not [h for h in hrefs if not h.startswith(url) and (h.startswith(evil) or "example.com" in h)], hrefs
            assert not page.query_selector_all(f"img[src^='{evil}']"), link
        assert not fetched, fetched
        page.close()
