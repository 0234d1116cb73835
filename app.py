"""Policy KB in the browser: ask in Chinese or English, read cited passages, open sources, export, check quotes.

Run: streamlit run app.py. The question, filters and open document live in the URL, so a link reproduces a search.
All retrieval, grouping and export logic is in `kb`; this file only lays it out.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from kb import config
from kb.backends import open_searcher
from kb.chunk import Chunk, parse_chunk_id
from kb.cite import citation, highlight_spans
from kb.errors import IndexMissingError, KbError
from kb.ingest.boxes import passage_boxes, source_file
from kb.ingest.document import Document
from kb.ingest.read import detect_lang
from kb.ingest.scans import passage_source
from kb.legal.meta import title_key
from kb.legal.pinpoint import sub_of
from kb.present.answer import answer
from kb.present.export import citations_text, md_text, to_csv, to_markdown
from kb.present.i18n import both, t
from kb.present.pageview import page_image
from kb.present.references import FORMATS, LABEL, MIME, SUFFIX, export
from kb.present.render import document_html, passage_html, quote_match_html
from kb.present.research import diff_columns_html, status_html
from kb.present.sentences import Similarity, backend_similarity
from kb.quote.check import QuoteChecker
from kb.research.citing import citing_groups
from kb.research.compare import STATUSES, compare_texts
from kb.research.laws import Laws
from kb.research.versions import earlier_articles
from kb.research.works import work_of_hit
from kb.search.contract import MODES, Backend
from kb.search.hits import Hit

INDEX = Path(config.env("KB_INDEX") or config.DEFAULT_INDEX)
# milvus: serve a Milvus collection instead, at KB_MILVUS_URI (a milvus-lite .db file or a server; docs/MILVUS.md).
BACKEND = config.env("KB_BACKEND") or "faiss"
PAGES = ("search", "docs", "quote", "source", "diff")
VIEWS = ("passages", "answer")
LANGS = ("any", "zh", "en")
UI_LANGS = ("auto", "zh", "en")
MAX_K = 50
# The search filters: drawn on the search page only (elsewhere they would act on nothing), kept across pages.
FILTER_KEYS = ("lang", "in_docs", "levels", "date_from", "date_to", "as_of", "repealed", "tuned", "rerank", "mode", "k")
# Hits fetched for the answer view: enough distinct passages to group, few enough to stay fast.
ANSWER_POOL = 20
# Pairs of articles drawn on the version comparison page at once (a whole revision can be 300).
MAX_PAIRS = 120
# Citing passages listed per level on an article's "cited by" list.
MAX_CITING = 30
# What the date pickers accept: the oldest texts still cited, and laws passed now but in force years later.
DATE_RANGE = (datetime.date(1900, 1, 1), datetime.date(datetime.date.today().year + 10, 12, 31))

st.set_page_config(page_title="Policy KB", page_icon="📜", layout="wide")
ss = st.session_state


@st.cache_resource(show_spinner="Loading the index…")
def get_searcher(index_dir: str) -> Backend:
    return open_searcher(BACKEND, Path(index_dir))


@st.cache_resource(show_spinner="Opening the quote index…")
def get_checker(index_dir: str) -> QuoteChecker:
    return QuoteChecker(Path(index_dir), searcher=get_searcher(index_dir))


@dataclass(frozen=True)
class WarmUp:
    """The start-up warm-up: models loading in a background thread while the page is already usable."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)


@st.cache_resource(show_spinner=False)
def warm_up(index_dir: str) -> WarmUp:
    """Load the models once per server, in the background, as soon as the first page is drawn."""
    searcher, state = get_searcher(index_dir), WarmUp(time.monotonic())

    def run() -> None:
        try:
            searcher.warm()
        except Exception:  # the first search loads the models itself and shows the error with its fix
            pass
        finally:
            state.done.set()

    threading.Thread(target=run, daemon=True, name="kb-warm-up").start()
    return state


@st.fragment(run_every=0.5)
def warming_banner(state: WarmUp, lang: str) -> None:
    """A visible "loading models…" line, polled until the warm-up is done; then the page reruns without it."""
    if state.done.is_set():
        st.rerun()
    # A Material icon, not an emoji: headless and minimal systems draw emoji as an empty box.
    st.info(t("warming", lang, s=int(time.monotonic() - state.started)), icon=":material/hourglass_top:")


@st.cache_resource(show_spinner=False)
def sentence_similarity(index_dir: str) -> Similarity | None:
    """How the answer view scores sentences: the index's dense model (kb.present.sentences)."""
    return backend_similarity(get_searcher(index_dir))


def load_url_state() -> None:
    """Seed the widgets from the URL once per session; values the app cannot use fall back to defaults."""
    if ss.get("_seeded"):
        return
    qp = st.query_params
    ss.q = qp.get("q", "")
    ss.page = _pick(qp.get("page"), PAGES, "search")
    ss.view = _pick(qp.get("view"), VIEWS, "passages")
    ss.lang = _pick(qp.get("lang"), LANGS, "any")
    ss.mode = _pick(qp.get("mode"), MODES, "hybrid")
    ss.ui = _pick(qp.get("ui"), UI_LANGS, "auto")
    ss.k = _int(qp.get("k"), 10, 1, MAX_K)
    ss.in_docs = qp.get_all("in")
    ss.repealed = qp.get("repealed") == "1"
    ss.tuned = qp.get("tuned", "1" if config.TUNED else "0") == "1"
    ss.rerank = qp.get("rerank", "1" if config.RERANK else "0") == "1"
    ss.levels = qp.get_all("level")
    ss._url_notes = []
    ss.date_from, ss.date_to, ss.as_of = (_date(key, qp.get(key)) for key in ("from", "to", "as_of"))
    ss.quote = qp.get("quote", "")
    ss.src_doc = qp.get("doc")
    ss.src_chunk = _int(qp.get("chunk"), 0, 0, 10**6)
    if ss.page == "source" and not ss.src_doc:
        ss.page = "search"
    ss.diff_law, ss.diff_from, ss.diff_to = qp.get("law"), qp.get("vfrom"), qp.get("vto")
    ss.diff_focus = None
    ss._seeded = True


def keep_widget_state() -> None:
    """Widgets not drawn in a run lose their state; the question must survive a visit to a source page."""
    for key in ("q", "view", "docs_needle", "quote", *FILTER_KEYS):
        if key in ss:
            ss[key] = ss[key]


def save_url_state() -> None:
    """Write the current question, filters and open document into the URL (defaults left out)."""
    params: dict[str, str | list[str]] = {}
    if ss.q.strip():
        params["q"] = ss.q.strip()
    for key, default in (
        ("page", "search"),
        ("view", "passages"),
        ("lang", "any"),
        ("mode", "hybrid"),
        ("ui", "auto"),
        ("k", 10),
    ):
        if ss[key] != default:
            params[key] = str(ss[key])
    if ss.in_docs:
        params["in"] = list(ss.in_docs)
    if ss.page == "quote" and ss.quote.strip():
        params["quote"] = ss.quote.strip()
    if ss.repealed:
        params["repealed"] = "1"
    if ss.tuned != config.TUNED:
        params["tuned"] = "1" if ss.tuned else "0"
    if ss.rerank != config.RERANK:
        params["rerank"] = "1" if ss.rerank else "0"
    if ss.levels:
        params["level"] = list(ss.levels)
    for key, name in (("date_from", "from"), ("date_to", "to"), ("as_of", "as_of")):
        if ss.get(key):
            params[name] = ss[key].isoformat()
    if ss.page == "source" and ss.src_doc:
        params["doc"] = ss.src_doc
        params["chunk"] = str(ss.src_chunk)
    if ss.page == "diff":
        for key, name in (("diff_law", "law"), ("diff_from", "vfrom"), ("diff_to", "vto")):
            if ss.get(key):
                params[name] = ss[key]
    st.query_params.from_dict(params)


def _pick(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _date(name: str, value: str | None) -> datetime.date | None:
    """A date from the URL; one outside DATE_RANGE (what the date pickers accept) or not a date is ignored with a
    note for the reader (the picker would raise otherwise)."""
    if not value:
        return None
    low, high = DATE_RANGE
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        ss._url_notes.append(("bad_date", {"name": name, "value": value[:40]}))
        return None
    if not low <= day <= high:
        ss._url_notes.append(("date_out_of_range", {"name": name, "value": value, "low": low, "high": high}))
        return None
    return day


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


def ui_lang() -> str:
    """The interface language: the reader's choice, else the question's (or quote's) language, else the browser's."""
    if ss.ui in ("zh", "en"):
        return ss.ui
    text = ss.quote if ss.page == "quote" else ss.q
    if text.strip():
        return detect_lang(text)
    locale = getattr(st.context, "locale", None) or ""
    return "zh" if locale.lower().startswith("zh") else "en"


def open_source(doc_id: str, ordinal: int) -> None:
    ss.page, ss.src_doc, ss.src_chunk = "source", doc_id, ordinal
    ss._scroll_top = True  # the page it was opened from may be scrolled far down; Back must be in view


# Streamlit keeps the scroll position across a rerun; a page that replaces another starts at its top.
_SCROLL_TOP = (
    "<script>for (const el of [document.querySelector('[data-testid=\"stMain\"]'), "
    "document.scrollingElement]) { if (el) el.scrollTop = 0; }</script>"
)


def meta_line(meta: object, extra: tuple[str | None, ...] = ()) -> str:
    parts = (*extra, meta.level, meta.issuer, meta.doc_number, meta.published, meta.validity)  # type: ignore[attr-defined]
    return " · ".join(x for x in parts if x)


def validity_badge(meta: object) -> str:
    """A badge after a heading for a text not in force as written (已修改, 已废止, 尚未生效); '' otherwise."""
    validity = meta.validity  # type: ignore[attr-defined]
    if validity in config.HIDDEN_VALIDITY or validity == "尚未生效":
        return f" :orange-badge[{validity}]"
    return ""


def sidebar(searcher: Backend, lang: str) -> None:
    docs = searcher.documents()
    titles = {d["doc_id"]: d["title"] for d in docs}
    for key, values in ss.get("_url_notes") or ():
        st.sidebar.warning(md_text(t(key, lang, **values)))
    ss._url_notes = []  # said once
    unknown = [d for d in ss.in_docs if d not in titles]
    if unknown:
        st.sidebar.warning(md_text(t("unknown_docs", lang, docs=", ".join(unknown[:3]))))
        ss.in_docs = [d for d in ss.in_docs if d in titles]
    with st.sidebar:
        st.radio(
            t("interface", lang),
            UI_LANGS,
            key="ui",
            horizontal=True,
            format_func={"auto": both("auto"), "zh": "中文", "en": "English"}.get,
        )
        pages = ("search", "docs", "quote", "diff")
        st.radio(
            t("page", lang),
            pages,
            key="page_choice",
            horizontal=True,
            index=pages.index(ss.page) if ss.page in pages else 0,
            format_func=lambda p: both(f"page_{p}"),
            on_change=_page_changed,
        )
        if ss.page != "search":
            st.caption(t("indexed", lang, docs=len(docs), chunks=searcher.passages))
            return
        st.header(t("filters", lang))
        st.radio(
            t("language", lang),
            LANGS,
            key="lang",
            horizontal=True,
            format_func={"any": both("any"), "zh": "中文", "en": "English"}.get,
        )
        st.multiselect(t("documents", lang), list(titles), key="in_docs", format_func=lambda d: titles[d])
        facets = searcher.facets()
        known_levels = [level for level, _ in facets.levels]
        ss.levels = [level for level in ss.levels if level in known_levels]
        st.multiselect(
            t("levels", lang), known_levels, key="levels", format_func=lambda v: f"{v} ({dict(facets.levels)[v]})"
        )
        low, high = DATE_RANGE
        left, right = st.columns(2)
        left.date_input(t("date_from", lang), key="date_from", min_value=low, max_value=high, format="YYYY-MM-DD")
        right.date_input(t("date_to", lang), key="date_to", min_value=low, max_value=high, format="YYYY-MM-DD")
        st.date_input(
            t("as_of", lang),
            key="as_of",
            min_value=low,
            max_value=high,
            format="YYYY-MM-DD",
            help=t("as_of_help", lang),
        )
        st.checkbox(t("include_repealed", lang), key="repealed")
        st.checkbox(t("tuned", lang), key="tuned", help=t("tuned_help", lang))
        st.checkbox(t("rerank", lang), key="rerank", help=t("rerank_help", lang))
        st.radio(t("mode", lang), MODES, key="mode", horizontal=True, format_func=lambda m: both(f"mode_{m}"))
        st.slider(t("results_n", lang), 1, MAX_K, key="k")
        st.caption(t("indexed", lang, docs=len(docs), chunks=searcher.passages))


def _page_changed() -> None:
    ss.page = ss.page_choice


def run_search(searcher: Backend, k: int) -> list[Hit]:
    """Search once per distinct question, filters and index generation; reruns reuse the result."""
    dates = {
        name: ss[key].isoformat() if ss.get(key) else None
        for key, name in (("date_from", "date_from"), ("date_to", "date_to"), ("as_of", "as_of"))
    }
    key = (
        searcher.generation,
        ss.q.strip(),
        k,
        ss.lang,
        tuple(ss.in_docs),
        ss.mode,
        ss.repealed,
        ss.tuned,
        ss.rerank,
        tuple(ss.levels),
        tuple(dates.values()),
    )
    if ss.get("_hits_key") != key:
        ss._hits = searcher.search(
            ss.q,
            k,
            lang=None if ss.lang == "any" else ss.lang,
            docs=list(ss.in_docs) or None,
            mode=ss.mode,
            include_repealed=ss.repealed,
            tuned=ss.tuned,
            rerank=ss.rerank,
            levels=list(ss.levels) or None,
            **dates,
        )
        ss._hits_key = key
    return ss._hits


def channels_text(hit: Hit, lang: str) -> str:
    return ", ".join(t(f"ch_{name}", lang, rank=rank) for name, rank in hit.channels)


def search_page(searcher: Backend, lang: str) -> None:
    st.text_input(t("question", lang), key="q", placeholder=t("placeholder", lang))
    if not ss.q.strip():
        st.info(t("type_question", lang))
        return
    st.radio(t("view", lang), VIEWS, key="view", horizontal=True, format_func=lambda v: both(f"view_{v}"))
    try:
        with st.spinner(t("warming_search", lang), show_time=True):
            hits = run_search(searcher, max(ss.k, ANSWER_POOL) if ss.view == "answer" else ss.k)
    except KbError as exc:
        st.error(md_text(str(exc)))  # messages quote the reader's values
        return
    if not hits:
        active = [
            name
            for name, on in (
                (t("language", lang), ss.lang != "any"),
                (t("documents", lang), ss.in_docs),
                (t("levels", lang), ss.levels),
                (t("dates", lang), ss.get("date_from") or ss.get("date_to")),
                (t("as_of", lang), ss.get("as_of")),
                (t("mode", lang), ss.mode != "hybrid"),
            )
            if on
        ]
        st.warning(
            t("no_results", lang) + (" " + t("remove_filters", lang, filters=", ".join(active)) if active else "")
        )
        return
    if ss.view == "answer":
        answer_view(hits, lang)
        shown = hits[: ss.k]
    else:
        shown = hits[: ss.k]
        st.caption(md_text(t("n_results", lang, n=len(shown), q=ss.q.strip())))
        for hit in shown:
            hit_card(hit, lang)
    export_box(shown, lang)


def hit_card(hit: Hit, lang: str) -> None:
    with st.container(border=True):
        st.markdown(f"**{hit.rank}\\. {md_text(hit.citation)}**{validity_badge(hit.meta)}")
        st.caption(md_text(meta_line(hit.meta, (hit.chunk.doc_id, "中文" if hit.chunk.lang == "zh" else "English"))))
        st.html(passage_html(hit.chunk.text, hit.highlights))
        if hit.also_in:
            st.caption(md_text(t("also_in", lang, docs=", ".join(hit.also_in))))
        xref_links(hit, lang)
        span = hit.span
        if span and len(span.versions) > 1 and span.versions[-1] != hit.chunk.doc_id and hit.chunk.article:
            st.button(
                t("changed_since", lang),
                key=f"since-{hit.chunk.chunk_id}",
                on_click=open_diff,
                args=(title_key(hit.chunk.title), hit.chunk.doc_id, span.versions[-1], hit.chunk.article),
            )
        left, right = st.columns([1, 4])
        left.button(
            t("open_source", lang),
            key=f"open-{hit.chunk.chunk_id}",
            on_click=open_source,
            args=(hit.chunk.doc_id, hit.chunk.ordinal),
        )
        right.caption(md_text(t("why", lang, channels=channels_text(hit, lang))))


def xref_links(hit: Hit, lang: str) -> None:
    """The articles this passage cites: a button opening each one held in the index, the others named."""
    targets = {r.target.chunk_id: r.target for r in hit.xrefs if r.target and r.target.chunk_id != hit.chunk.chunk_id}
    missing = sorted({r.ref.text for r in hit.xrefs if r.target is None})
    if not targets and not missing:
        return
    st.caption(t("cites", lang))
    cols = st.columns(min(len(targets), 3) or 1)
    for n, target in enumerate(list(targets.values())[:6]):
        cols[n % len(cols)].button(
            "→ " + md_text(target.citation),
            key=f"xref-{hit.chunk.chunk_id}-{target.chunk_id}",
            on_click=open_source,
            args=parse_chunk_id(target.chunk_id),
        )
    if missing:
        st.caption(md_text(t("not_indexed", lang, refs="; ".join(missing[:4]))))


def answer_view(hits: list[Hit], lang: str) -> None:
    st.caption(t("answer_intro", lang))
    for group in answer(hits, ss.q, similarity=sentence_similarity(str(INDEX))):
        with st.container(border=True):
            st.markdown(f"**{md_text(group.title)}**{validity_badge(group.points[0].hit.meta)}")
            st.caption(md_text(meta_line(group.points[0].hit.meta, (group.doc_id,))))
            for point in group.points:
                st.html(
                    passage_html(
                        point.sentence,
                        point.highlights,
                        "padding-left:0.8rem;border-left:3px solid #c9a227;margin:0.2rem 0",
                    )
                )
                left, right = st.columns([1, 4])
                left.button(
                    t("open_source", lang),
                    key=f"ans-{point.hit.chunk.chunk_id}",
                    on_click=open_source,
                    args=(point.hit.chunk.doc_id, point.hit.chunk.ordinal),
                )
                right.caption(f"{point.hit.rank}\\. {md_text(point.hit.citation)}")


def export_box(hits: list[Hit], lang: str) -> None:
    with st.expander(t("export", lang)):
        st.caption(t("copy_citations", lang))
        st.code(citations_text(hits), language=None)
        left, right = st.columns(2)
        left.download_button(
            t("download_md", lang),
            to_markdown(hits, ss.q.strip()),
            "policy-kb-results.md",
            "text/markdown",
            on_click="ignore",
        )
        right.download_button(
            t("download_csv", lang), to_csv(hits), "policy-kb-results.csv", "text/csv", on_click="ignore"
        )
        st.caption(t("export_refs", lang))
        works = [work_of_hit(h) for h in hits]
        for col, fmt in zip(st.columns(len(FORMATS)), FORMATS):
            col.download_button(
                LABEL[fmt],
                export(works, fmt),
                f"policy-kb-references.{SUFFIX[fmt]}",
                MIME[fmt],
                key=f"refs-{fmt}",
                on_click="ignore",
            )


def source_page(searcher: Backend, lang: str) -> None:
    if ss.pop("_scroll_top", False):
        st.html(_SCROLL_TOP, unsafe_allow_javascript=True)
    st.button(t("back", lang), on_click=_back)
    try:
        doc, chunks = searcher.source(ss.src_doc)
    except KbError:
        st.error(md_text(t("no_such_doc", lang, doc=ss.src_doc)))
        return
    if not chunks:
        st.header(md_text(doc.title))
        st.html(passage_html(doc.text, ()))
        return
    ss.src_chunk = min(ss.src_chunk, len(chunks) - 1)
    current = chunks[ss.src_chunk]
    st.header(md_text(doc.title) + validity_badge(doc.meta))
    st.caption(md_text(meta_line(doc.meta, (doc.doc_id, f"{doc.meta.source_format or ''}".upper() or None))))
    prev_col, where, next_col = st.columns([1, 3, 1])
    prev_col.button(t("previous", lang), disabled=ss.src_chunk == 0, on_click=_step, args=(-1,))
    where.caption(t("passage_of", lang, n=ss.src_chunk + 1, total=len(chunks)))
    next_col.button(t("next", lang), disabled=ss.src_chunk >= len(chunks) - 1, on_click=_step, args=(1,))
    cited_by_box(searcher, current, lang)
    text_col, page_col = st.columns([1, 1]) if _has_pages(doc) else (st.container(), None)
    if page_col is not None:
        with page_col:
            _page_view(doc, current, lang)
    for chunk, role in _surroundings(chunks, ss.src_chunk):
        focus = role == "current"
        with text_col, st.container(border=focus):
            st.markdown(("**" if focus else "") + md_text(citation(chunk)) + ("**" if focus else ""))
            spans = highlight_spans(chunk.text, ss.q) if focus and ss.q.strip() else ()
            st.html(passage_html(chunk.text, spans, "" if focus else "opacity:0.65;"))
    if focus_citation := citation(current):
        st.code(f"{focus_citation} ({doc.doc_id})", language=None, wrap_lines=True)
    with st.expander(t("whole_document", lang), expanded=False):
        # st.iframe replaces st.components.v1.html (removed after 2026-06-01); the HTML is our own, text escaped.
        st.iframe(document_html(doc.text, chunks, ss.src_chunk), height=520)


def cited_by_box(searcher: Backend, chunk: Chunk, lang: str) -> None:
    """法条联想 on the article view: how many passages of other texts cite this article, by level, each openable."""
    if chunk.article_no is None:
        return
    try:
        laws = Laws(searcher.documents())
        sub = sub_of(chunk.article)
        version = laws.rows.get(chunk.doc_id)
        before = earlier_articles(searcher, laws, version, chunk.article_no, sub) if version else []
        groups = citing_groups(searcher, laws, chunk.doc_id, chunk.article_no, sub, earlier=before)
    except KbError:  # an index without the cited-by table (or a Milvus collection): nothing to show
        return
    n = sum(len(ps) for _, ps in groups)
    with st.expander(f"{t('cited_by', lang, n=n)} · {chunk.article}", expanded=False):
        if not n:
            st.caption(t("cited_by_none", lang))
        for level, passages in groups:
            st.markdown(f"**{md_text(level)}** ({len(passages)})")
            for p in passages[:MAX_CITING]:
                st.button(
                    "← " + md_text(p.citation) + (f" ({p.date})" if p.date else ""),
                    key=f"citedby-{p.citing.chunk_id}",
                    on_click=open_source,
                    args=parse_chunk_id(p.citing.chunk_id),
                )
                via = t("cited_via", lang, via=p.via) + " " if p.via else ""
                via += t("cited_older", lang) + " " if p.citing.older else ""
                st.caption(md_text(via + "…" + " ".join(p.citing.context.split()) + "…"))


def open_diff(law: str, old_id: str, new_id: str, article: str | None = None) -> None:
    """Open the version comparison of a law between two of its documents, the given old article first."""
    ss.page, ss.page_choice = "diff", "diff"
    ss.diff_law, ss.diff_from, ss.diff_to, ss.diff_focus = law, old_id, new_id, article


def diff_page(searcher: Backend, lang: str) -> None:
    """新旧对照: pick a law and two versions; each article pair in two columns, changes marked, each openable."""
    st.header(t("diff_header", lang))
    laws = Laws(searcher.documents())
    multi = {key: versions for key, versions in laws.by_key.items() if len(versions) > 1}
    if not multi:
        st.info(t("diff_none", lang))
        return
    keys = sorted(multi, key=lambda k: multi[k][-1].title)
    if ss.get("diff_law") not in multi:
        ss.diff_law = keys[0]
    st.selectbox(t("diff_law", lang), keys, key="diff_law", format_func=lambda k: multi[k][-1].title)
    versions = multi[ss.diff_law]
    ids = [v.doc_id for v in versions]
    names = {v.doc_id: f"{v.year or '?'} ({v.date or '?'}, {v.validity or '?'})" for v in versions}
    if ss.get("diff_to") not in ids:
        ss.diff_to = ids[-1]
    if ss.get("diff_from") not in ids:
        ss.diff_from = ids[-2]
    left, right = st.columns(2)
    left.selectbox(t("diff_from", lang), ids, key="diff_from", format_func=names.get)
    right.selectbox(t("diff_to", lang), ids, key="diff_to", format_func=names.get)
    if ss.diff_from == ss.diff_to:
        st.warning(t("diff_same", lang))
        return
    old, new = laws.rows[ss.diff_from], laws.rows[ss.diff_to]
    result = compare_texts(old, new, searcher.source(old.doc_id), searcher.source(new.doc_id))
    st.info(f"**{md_text(new.title)}** {old.year} → {new.year}: " + t("diff_summary", lang, **result.counts()))
    shown = st.multiselect(
        t("diff_status", lang),
        STATUSES,
        default=[s for s in STATUSES if s != "unchanged"],
        format_func=lambda s: both(f"status_{s}"),
        key="diff_statuses",
    )
    focus = ss.get("diff_focus")
    pairs = [p for p in result.pairs if p.status in shown or (focus and p.old and p.old.label == focus)]
    pairs.sort(key=lambda p: not (focus and p.old and p.old.label == focus))  # the article asked about first
    for n, pair in enumerate(pairs[:MAX_PAIRS]):
        with st.container(border=True):
            st.html(status_html(pair, t(f"status_{pair.status}", lang)))
            old_html, new_html = diff_columns_html(pair)
            columns = st.columns(2)
            for target, article, version, body, side in (
                (columns[0], pair.old, old, old_html, "old"),
                (columns[1], pair.new, new, new_html, "new"),
            ):
                if article is None:
                    continue
                target.html(body)
                if article.chunk_id:
                    target.button(
                        t("diff_open", lang, article=article.label, year=version.year),
                        key=f"diff-{side}-{n}",
                        on_click=open_source,
                        args=parse_chunk_id(article.chunk_id),
                    )
    if len(pairs) > MAX_PAIRS:
        st.caption(t("diff_more", lang, n=MAX_PAIRS, total=len(pairs)))


# --- the page with the passage marked (issue 20) ---


def _has_pages(doc: Document) -> bool:
    return bool(doc.page_spans) and source_file(doc) is not None


def _page_view(doc: Document, chunk: Chunk, lang: str) -> None:
    """The passage's page(s) drawn with its boxes marked, beside the text."""
    path = source_file(doc)
    if path is None:
        return
    boxes = passage_boxes(doc, chunk.char_start, chunk.char_end)
    pages = sorted({b.page for b in boxes}) or [chunk.page or 1]
    source = passage_source(dict(doc.meta.extra), chunk.page, chunk.page_end)
    for page in pages:
        label = t("page_image", lang, page=page) + (f" · {t('ocr_source', lang)}" if source == "ocr" else "")
        st.image(page_image(path, page, boxes), caption=label, width="stretch")
    if not boxes:
        st.caption(t("no_boxes", lang))


def _surroundings(chunks: list[Chunk], at: int) -> list[tuple[Chunk, str]]:
    out = []
    if at > 0:
        out.append((chunks[at - 1], "previous"))
    out.append((chunks[at], "current"))
    if at + 1 < len(chunks):
        out.append((chunks[at + 1], "next"))
    return out


def _step(delta: int) -> None:
    ss.src_chunk = max(ss.src_chunk + delta, 0)


def _back() -> None:
    ss.page = ss.get("page_choice", "search")


def quote_page(lang: str) -> None:
    """Paste a quote: the verdict, then each location with its citation, offsets, context or diff."""
    st.header(t("quote_header", lang))
    st.text_area(t("quote_label", lang), key="quote", placeholder=t("quote_placeholder", lang))
    if not ss.quote.strip():
        st.info(t("quote_info", lang))
        return
    if BACKEND != "faiss":
        st.info(t("quote_faiss_only", lang))
        return
    try:
        checker = get_checker(str(INDEX))
        checker.refresh()
        report = checker.check(ss.quote)
    except KbError as exc:
        st.error(md_text(str(exc)))
        return
    show = {
        "verbatim": st.success,
        "normalized": st.success,
        "omissions": st.info,
        "altered": st.warning,
        "not_found": st.error,
    }[report.verdict]
    show(f"**{md_text(t('label_' + report.verdict, lang))}**" + (f": {md_text(report.note)}" if report.note else ""))
    for n, m in enumerate(report.matches, start=1):
        with st.container(border=True):
            sim = "" if m.similarity is None else f" · {t('similarity', lang)} {m.similarity:.2f}"
            st.markdown(f"**{n}\\. {md_text(m.citation)}** · {md_text(t('label_' + m.kind, lang))}{sim}")
            st.caption(
                md_text(
                    " · ".join(
                        x
                        for x in (
                            m.doc_id,
                            t("characters", lang, start=m.char_start, end=m.char_end),
                            t("page_n", lang, page=m.page) if m.page else "",
                            m.lang,
                        )
                        if x
                    )
                )
            )
            st.html(quote_match_html(m))
            if m.also_in:
                st.caption(md_text(t("also_in", lang, docs=", ".join(m.also_in))))
            st.button(
                t("open_source", lang), key=f"quote-open-{n}", on_click=open_source_at, args=(m.doc_id, m.char_start)
            )


def open_source_at(doc_id: str, offset: int) -> None:
    """Open a document at the passage holding a character offset."""
    searcher = get_searcher(str(INDEX))
    _, chunks = searcher.source(doc_id)
    at = next((n for n, c in enumerate(chunks) if c.char_start <= offset < c.char_end), 0)
    open_source(doc_id, at)


def docs_page(searcher: Backend, lang: str) -> None:
    st.header(t("docs_header", lang))
    needle = st.text_input(t("docs_filter", lang), key="docs_needle").strip().lower()
    docs = [
        d
        for d in searcher.documents()
        if not needle or needle in str(d["title"]).lower() or needle in str(d["doc_id"]).lower()
    ]
    rows = [
        {
            t("col_title", lang): d["title"],
            t("col_level", lang): d["meta"].get("level") or "",  # an empty cell, never "None"
            t("col_issuer", lang): d["meta"].get("issuer") or "",
            t("col_published", lang): d["meta"].get("published") or "",
            t("col_effective", lang): d["meta"].get("effective") or "",
            t("col_validity", lang): d["meta"].get("validity") or "",
            t("col_lang", lang): d["lang"],
            t("col_chunks", lang): d["chunks"],
            t("col_path", lang): d["doc_id"],
        }
        for d in docs
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    if not docs:
        return
    titles = {d["doc_id"]: f"{d['title']} ({d['doc_id']})" for d in docs}
    choice = st.selectbox(t("docs_open", lang), list(titles), format_func=titles.get, key="docs_choice")
    st.button(t("open", lang), on_click=open_source, args=(choice, 0), key="docs_open_btn")


def main() -> None:
    load_url_state()
    keep_widget_state()
    lang = ui_lang()
    st.title("Policy KB")
    st.caption(t("tagline", lang))
    try:
        searcher = get_searcher(str(INDEX))
    except IndexMissingError:
        st.warning(t("no_index", lang, index=INDEX if BACKEND == "faiss" else config.env("KB_MILVUS_URI")))
        st.stop()
    except KbError as exc:
        st.error(md_text(t("load_failed", lang, reason=exc)))
        st.stop()
    if searcher.refresh():
        st.toast(t("rebuilt", lang))
    warm = warm_up(str(INDEX))
    if not warm.done.is_set():
        warming_banner(warm, lang)
    sidebar(searcher, lang)
    if ss.page == "source":
        source_page(searcher, lang)
    elif ss.page == "docs":
        docs_page(searcher, lang)
    elif ss.page == "quote":
        quote_page(lang)
    elif ss.page == "diff":
        diff_page(searcher, lang)
    else:
        search_page(searcher, lang)
    save_url_state()


main()
