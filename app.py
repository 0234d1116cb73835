"""Policy KB in the browser: ask in Chinese or English, read cited passages. Run: streamlit run app.py"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import streamlit as st

from kb import config
from kb.errors import IndexMissingError, KbError
from kb.search import Hit, Searcher

INDEX = Path(os.environ.get("KB_INDEX", config.DEFAULT_INDEX))

st.set_page_config(page_title="Policy KB", page_icon="📜", layout="wide")


@st.cache_resource(show_spinner="Loading the index…")
def get_searcher(index_dir: str) -> Searcher:
    return Searcher(Path(index_dir))


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
