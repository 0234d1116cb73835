"""Policy KB in the browser: ask in Chinese or English, read cited passages, check quotes. Run: streamlit run app.py"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import streamlit as st

from kb import config
from kb.errors import IndexMissingError, KbError
from kb.quote import QuoteChecker, QuoteMatch
from kb.search import Hit, Searcher

INDEX = Path(os.environ.get("KB_INDEX", config.DEFAULT_INDEX))

st.set_page_config(page_title="Policy KB", page_icon="📜", layout="wide")


@st.cache_resource(show_spinner="Loading the index…")
def get_searcher(index_dir: str) -> Searcher:
    return Searcher(Path(index_dir))


@st.cache_resource(show_spinner="Opening the quote index…")
def get_checker(index_dir: str) -> QuoteChecker:
    return QuoteChecker(Path(index_dir), searcher=get_searcher(index_dir))


def md_escape(text: str) -> str:
    """Backslash-escape Markdown and HTML syntax so a title or citation shows literally."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~&])", r"\\\1", text)


def passage_html(hit: Hit) -> str:
    """The passage as inert HTML: every character escaped, query terms wrapped in <mark>."""
    text, out, pos = hit.chunk.text, [], 0
    for start, end in hit.highlights:
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return ("<div style='white-space:pre-wrap;font-size:0.95rem;line-height:1.6'>" + "".join(out) + "</div>")


def match_html(m: QuoteMatch) -> str:
    """The sentence in context with the matched text marked, or for an altered quote the diff:
    source words the quote dropped or changed struck through, words it added or changed underlined."""
    if m.kind == "altered" and m.diff:
        out = []
        for d in m.diff:
            if d.op == "equal":
                out.append(html.escape(d.source))
            if d.op in ("changed", "dropped"):
                out.append(f"<del style='background:#fdd'>{html.escape(d.source)}</del>")
            if d.op in ("changed", "added"):
                out.append(f"<ins style='background:#dfd'>{html.escape(d.quote)}</ins>")
        body = " ".join(out)
    else:
        start, end = m.char_start - m.context_start, m.char_end - m.context_start
        ctx = m.context
        body = (html.escape(ctx[:max(0, start)]) + "<mark>" + html.escape(ctx[max(0, start):end]) + "</mark>"
                + html.escape(ctx[end:]))
    return "<div style='white-space:pre-wrap;font-size:0.95rem;line-height:1.6'>" + body + "</div>"


def quote_view() -> None:
    """Paste a quote: verdict, then each location with its citation, offsets and context."""
    quote = st.text_area("Quote to check", placeholder="Paste a sentence, or a passage with … for omissions")
    if not quote.strip():
        st.info("Paste a quote to see whether it is in the documents, verbatim, and where.")
        return
    try:
        checker = get_checker(str(INDEX))
        checker.refresh()
        report = checker.check(quote)
    except KbError as exc:
        st.error(str(exc))
        return
    show = {"verbatim": st.success, "normalized": st.success, "omissions": st.info, "altered": st.warning,
            "not_found": st.error}[report.verdict]
    show(f"**{report.label.capitalize()}**" + (f": {report.note}" if report.note else ""))
    for n, m in enumerate(report.matches, start=1):
        with st.container(border=True):
            sim = "" if m.similarity is None else f" · similarity {m.similarity:.2f}"
            st.markdown(f"**{n}\\. {md_escape(m.citation)}** · {md_escape(m.label)}{sim}")
            st.caption(" · ".join(x for x in (m.doc_id, f"characters {m.char_start}–{m.char_end}",
                                              f"page {m.page}" if m.page else "", m.lang) if x))
            st.html(match_html(m))
            if m.also_in:
                st.caption("Same passage also in: " + ", ".join(m.also_in))


def main() -> None:
    st.title("Policy KB")
    st.caption("Search Chinese laws, regulations and policy commentary. Every passage is cited to its document, "
               "article or section, and page.")
    try:
        searcher = get_searcher(str(INDEX))
    except IndexMissingError:
        st.warning(f"No index at `{INDEX}` yet. Build it with `python -m kb build` and reload this page.")
        st.stop()
    except KbError as exc:
        st.error(f"The index could not be loaded: {exc}")
        st.stop()
    if searcher.refresh():
        st.toast("The index was rebuilt; now searching the new one.")
    search_tab, quote_tab = st.tabs(["Search", "Check a quote"])
    with quote_tab:
        quote_view()
    with search_tab:
        search_view(searcher)


def search_view(searcher: Searcher) -> None:
    """Question box, filters in the sidebar, cited passages."""
    docs = searcher.documents()
    with st.sidebar:
        st.header("Filters")
        lang = st.radio("Language", ["any", "zh", "en"], horizontal=True,
                        format_func={"any": "Any", "zh": "中文", "en": "English"}.get)
        titles = {d["doc_id"]: d["title"] for d in docs}
        chosen = st.multiselect("Documents", list(titles), format_func=lambda d: titles[d])
        mode = st.radio("Search mode", ["hybrid", "keyword", "semantic"], horizontal=True)
        k = st.slider("Results", 1, 50, 10)
        st.caption(f"{len(docs)} documents, {searcher.index.n} passages indexed.")

    query = st.text_input("Question", placeholder="e.g. 网购商品无理由退货期限 / what measures address live-stream talent")
    if not query.strip():
        st.info("Type a question in Chinese or English.")
        return
    try:
        hits = searcher.search(query, k, lang=None if lang == "any" else lang, docs=chosen or None, mode=mode)
    except KbError as exc:
        st.error(str(exc))
        return
    if not hits:
        st.warning("No passages matched." + (" Try removing filters." if chosen or lang != "any" else ""))
        return
    for hit in hits:
        meta = hit.meta
        with st.container(border=True):
            st.markdown(f"**{hit.rank}\\. {md_escape(hit.citation)}**")
            st.caption(" · ".join(x for x in (hit.chunk.doc_id, hit.chunk.lang, meta.level, meta.issuer,
                                              meta.published) if x))
            st.html(passage_html(hit))


main()
