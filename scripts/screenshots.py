"""Screenshots of the app in headless Chromium, for the faults of issue 17, and the first question's time.

Starts `streamlit run app.py` on the shipped index, then: the "loading models…" line at start, the first question
after the warm-up (timed), the answer view, a source page opened from far down the results (Back in view, the
citation box wrapped, curly quotes in the whole-document panel), the quote page in Chinese, the documents page,
a pdf01 passage from PDF page 140 with its printed "Page|126" kept in the whole document but not in the passage, and
a revised law's hit with its 已修改 badge.

    python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import quote

from appserver import IDLE, ROOT, running_app  # scripts/appserver.py: python puts this script's folder first

BOOK = "pdf/pdf01_cbec_book_future_of_cross_border_ecommerce.pdf"


def first_passage_on(doc_id: str, page: int) -> int:
    """The ordinal of the first passage of the shipped index's doc_id that starts on PDF page `page`."""
    from kb.backends import open_searcher

    _, chunks = open_searcher("faiss", None).source(doc_id)
    return next(c.ordinal for c in chunks if c.page == page)


def settle(page: object) -> None:
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    page.wait_for_function(IDLE, timeout=120_000)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_text("Loading models").first.wait_for(timeout=60_000)
        page.evaluate("document.fonts.ready")  # the icon font, else its glyph is drawn as a box
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out / "01-loading-models.png"))
        page.get_by_text("Loading models").first.wait_for(state="detached", timeout=300_000)
        box = page.get_by_label("Question / 问题")
        start = time.monotonic()
        box.fill("网购商品无理由退货期限")
        box.press("Enter")
        page.get_by_text("第二十五条").first.wait_for(timeout=120_000)
        settle(page)
        print(f"first question after the warm-up: {time.monotonic() - start:.2f} s to results shown")
        page.screenshot(path=str(args.out / "02-first-answer.png"))
        page.get_by_text("Answer / 答案").first.click()
        settle(page)
        page.screenshot(path=str(args.out / "03-answer-view.png"))
        page.goto(f"{url}/?q={quote('Economist live-streamers crackdown')}&ui=en&k=10")
        settle(page)
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Open source").last.click()
        settle(page)
        page.screenshot(path=str(args.out / "04-source-top-after-open.png"))
        page.get_by_text("Whole document").first.click()
        settle(page)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(args.out / "05-source-whole-document.png"), full_page=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # a new session reads the URL
        page.goto(f"{url}/?page=quote&ui=zh&quote={quote('消费者有权自收到商品之日起十日内退货')}")
        settle(page)
        page.get_by_text("相近但有改动").first.wait_for(timeout=120_000)  # the verdict, in the interface's language
        settle(page)
        page.screenshot(path=str(args.out / "06-quote-zh.png"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/?page=docs&ui=zh")
        settle(page)
        page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "07-documents-zh.png"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/?page=source&ui=en&doc={quote(BOOK)}&chunk={first_passage_on(BOOK, 140)}")
        settle(page)
        page.get_by_text("Whole document").first.click()
        settle(page)
        page.wait_for_timeout(1500)
        page.locator("iframe").last.scroll_into_view_if_needed()  # the printed page number above the passage
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out / "08-pdf-page-furniture-kept.png"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/?q={quote('商业秘密的定义')}&repealed=1&ui=zh")
        settle(page)
        page.get_by_text("已修改", exact=True).first.wait_for(timeout=120_000)  # the badge, not the checkbox label
        page.locator(".kb-passage").first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(args.out / "09-revised-law-badge.png"))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
