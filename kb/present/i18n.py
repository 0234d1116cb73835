"""Interface text in English and Chinese; the app follows the question's language unless the reader picks one."""

from __future__ import annotations

LANGS = ("en", "zh")

# key -> (English, Chinese). Placeholders use str.format names.
STRINGS: dict[str, tuple[str, str]] = {
    "tagline": (
        "Search Chinese laws, regulations and policy commentary. Every passage is cited to its document, "
        "article or section, and page.",
        "检索中国法律法规、政策文件与评论。每段结果均注明出处：文件、条款或章节、页码。",
    ),
    "question": ("Question / 问题", "Question / 问题"),
    "placeholder": (
        "e.g. 网购商品无理由退货期限 / what measures address live-stream talent",
        "例如：网购商品无理由退货期限 / what measures address live-stream talent",
    ),
    "type_question": ("Type a question in Chinese or English.", "请输入中文或英文问题。"),
    "interface": ("Interface", "界面语言"),
    "auto": ("Auto", "自动"),
    "page": ("Page", "页面"),
    "page_search": ("Search", "检索"),
    "page_docs": ("Documents", "文件库"),
    "page_quote": ("Quote check", "核对引文"),
    "quote_header": (
        "Is this quote really in the documents, verbatim, and where?",
        "这句引文是否确实出自文件、是否一字不差、出自何处？",
    ),
    "quote_label": ("Quote to check", "待核对的引文"),
    "quote_placeholder": (
        "Paste a sentence, or a passage with … where words are left out",
        "粘贴一句话，或用……标出省略的段落",
    ),
    "quote_info": (
        "Paste a quote to see whether it is in the documents, verbatim, and where.",
        "粘贴引文，查看它是否出自文件、是否一字不差、出自何处。",
    ),
    "quote_faiss_only": (
        "The quote check reads the index folder's quote index; with the Milvus backend it is not available.",
        "引文核对依赖索引目录中的引文索引；使用 Milvus 后端时不可用。",
    ),
    "similarity": ("similarity", "相似度"),
    # Quote verdicts and match kinds (kb.quote.result.LABELS), in the interface language.
    "label_verbatim": ("Verbatim", "一字不差"),
    "label_normalized": ("Verbatim after normalisation", "规范化后一致"),
    "label_omissions": ("With omissions", "有省略"),
    "label_altered": ("Close but altered", "相近但有改动"),
    "label_not_found": ("Not found", "未找到"),
    "label_paraphrase": ("Possible paraphrase", "可能是转述"),
    "label_translation": ("Possible source (translation)", "可能的出处（译文）"),
    "characters": ("characters {start}–{end}", "字符 {start}–{end}"),
    "page_n": ("page {page}", "第 {page} 页"),
    "filters": ("Filters", "筛选"),
    "language": ("Language", "语言"),
    "any": ("Any", "全部"),
    "documents": ("Documents", "限定文件"),
    "levels": ("Document type / level", "文件类型 / 效力级别"),
    "dates": ("Published between", "发布日期范围"),
    "date_from": ("Published from", "发布日期自"),
    "date_to": ("Published until", "发布日期至"),
    "as_of": ("In force on", "时点（有效于）"),
    "as_of_help": (
        "Only texts in force on this date, in the version then in force.",
        "仅显示该日有效的文本（当时施行的版本）。",
    ),
    "cites": ("This passage cites:", "本段引用："),
    "not_indexed": ("Not in the index: {refs}", "未收录：{refs}"),
    "include_repealed": ("Include repealed and superseded texts", "包括已废止、已修改的文本"),
    "tuned": ("Model tuned for legal questions", "使用法律问答调优模型"),
    "tuned_help": (
        "Questions go through e5 layers trained on real legal questions (Chinese and English); off: the packaged "
        "model alone",
        "问题（中文和英文）经过用真实法律问题训练的 e5 层；关闭则只用原始模型",
    ),
    "rerank": ("Rerank the best passages", "重排最相关的段落"),
    "rerank_help": (
        "A model trained on real questions re-orders the first passages by what they share with the question (its "
        "words, the title, a definition of the term asked about); an English question's Chinese passages are "
        "re-ordered among their own places, through the question's dictionary translation; off: the fused order",
        "用真实问题训练的模型按段落与问题的共同点（词语、标题、所问术语的定义）重新排序前列段落；英文问题的中文段落借助词典译文"
        "在各自的位置间重排；关闭则保持融合顺序",
    ),
    "mode": ("Search mode", "检索方式"),
    "mode_hybrid": ("Hybrid", "混合"),
    "mode_keyword": ("Keyword", "关键词"),
    "mode_semantic": ("Semantic", "语义"),
    "results_n": ("Results", "结果数量"),
    "indexed": ("{docs} documents, {chunks} passages indexed.", "已索引 {docs} 个文件、{chunks} 段。"),
    "view": ("View", "视图"),
    "view_passages": ("Passages", "段落"),
    "view_answer": ("Answer", "答案"),
    "no_index": (
        "No index at `{index}` yet. Build it with `python -m kb build` and reload this page.",
        "`{index}` 尚无索引。请运行 `python -m kb build` 后刷新本页。",
    ),
    "load_failed": ("The index could not be loaded: {reason}", "索引无法加载：{reason}"),
    "warming": (
        "Loading models… ({s} s). Your first question is answered as soon as they are ready.",
        "正在加载模型…（{s} 秒）。模型就绪后立即回答您的第一个问题。",
    ),
    "warming_search": ("Loading models, then searching…", "正在加载模型，随后检索…"),
    "rebuilt": ("The index was rebuilt; now searching the new one.", "索引已重建，正在检索新索引。"),
    "no_results": ("No passages matched.", "没有匹配的段落。"),
    "remove_filters": ("Try removing filters: {filters}.", "请尝试取消筛选：{filters}。"),
    "n_results": ("{n} passages for “{q}”", "“{q}”共 {n} 段结果"),
    "open_source": ("Open source", "查看原文"),
    "also_in": ("Same text also in: {docs}", "相同文本亦见于：{docs}"),
    "why": ("Found by: {channels}", "命中通道：{channels}"),
    "ch_bm25": ("keyword #{rank}", "关键词 #{rank}"),
    "ch_dense": ("semantic #{rank}", "语义 #{rank}"),
    "ch_dense_x": ("cross-language semantic #{rank}", "跨语言语义 #{rank}"),
    "ch_xling": ("cross-language #{rank}", "跨语言 #{rank}"),
    "ch_bm25_x": ("translated keywords #{rank}", "译词关键词 #{rank}"),
    "ch_near": ("next to result #{rank}", "邻近第 {rank} 条结果"),
    "ch_memory": ("answered similar questions #{rank}", "相似问题的答案 #{rank}"),
    "answer_intro": (
        "The passages that best answer the question, grouped by document:",
        "最能回答该问题的段落，按文件分组：",
    ),
    "export": ("Export these results", "导出结果"),
    "copy_citations": ("Citations (use the copy button at the top right)", "引用（点击右上角复制按钮）"),
    "download_md": ("Download Markdown", "下载 Markdown"),
    "download_csv": ("Download CSV", "下载 CSV"),
    "back": ("← Back to results", "← 返回结果"),
    "previous": ("← Previous", "← 上一条"),
    "next": ("Next →", "下一条 →"),
    "passage_of": ("Passage {n} of {total}", "第 {n} 段，共 {total} 段"),
    "whole_document": ("Whole document (scrolled to the passage)", "全文（已定位到该段）"),
    "page_image": ("Page {page}, the passage marked", "第 {page} 页，已标出该段"),
    "ocr_source": ("text read by OCR", "文字由 OCR 识别"),
    "no_boxes": ("The passage could not be placed on the page.", "未能在页面上定位该段。"),
    "no_such_doc": ("This document is not in the index: {doc}", "索引中没有此文件：{doc}"),
    "docs_header": ("Indexed documents", "已索引文件"),
    "docs_filter": ("Filter by title or path", "按标题或路径筛选"),
    "docs_open": ("Open document", "打开文件"),
    "open": ("Open", "打开"),
    "col_title": ("Title", "标题"),
    "col_level": ("Level", "效力级别"),
    "col_issuer": ("Issuer", "发布机关"),
    "col_published": ("Published", "发布日期"),
    "col_effective": ("In force from", "施行日期"),
    "col_validity": ("Validity", "时效性"),
    "col_lang": ("Language", "语言"),
    "col_chunks": ("Passages", "段数"),
    "col_path": ("Path", "路径"),
    "bad_date": (
        "The link's {name}={value} is not a date (YYYY-MM-DD); ignored",
        "链接中的 {name}={value} 不是日期（YYYY-MM-DD），已忽略",
    ),
    "date_out_of_range": (
        "The link's {name}={value} is outside {low} to {high}; ignored",
        "链接中的 {name}={value} 超出 {low} 至 {high}，已忽略",
    ),
    "unknown_docs": ("Ignored unknown documents in the link: {docs}", "链接中的文件不存在，已忽略：{docs}"),
    # Research tools (issue 19): version comparison, cited-by, reference export.
    "page_diff": ("Compare versions", "新旧对照"),
    "diff_header": ("What changed between two versions of a law", "法规新旧对照：两个版本之间改了什么"),
    "diff_law": ("Law", "法规"),
    "diff_from": ("Older version", "旧版本"),
    "diff_to": ("Newer version", "新版本"),
    "diff_none": (
        "No law in this index has two versions to compare.",
        "本索引中没有可以对照的多版本法规。",
    ),
    "diff_same": ("Pick two different versions.", "请选择两个不同的版本。"),
    "diff_unchanged": ("Show unchanged articles", "显示未修改的条文"),
    "diff_status": ("Show", "显示"),
    "status_unchanged": ("unchanged", "未修改"),
    "status_changed": ("changed", "修改"),
    "status_moved": ("moved", "移动"),
    "status_added": ("added", "新增"),
    "status_deleted": ("deleted", "删除"),
    "diff_summary": (
        "{changed} changed, {added} added, {deleted} deleted, {moved} moved, {unchanged} unchanged "
        "({renumbered} renumbered)",
        "修改 {changed} 条，新增 {added} 条，删除 {deleted} 条，移动 {moved} 条，未修改 {unchanged} 条"
        "（其中 {renumbered} 条序号变化）",
    ),
    "diff_open": ("Open {article} ({year})", "打开 {article}（{year}）"),
    "diff_more": (
        "Showing the first {n} of {total} articles: show fewer statuses to see the rest.",
        "仅显示前 {n} 条（共 {total} 条）：减少显示的类别可查看其余条文。",
    ),
    "changed_since": ("What changed since this version", "此版本之后改了什么"),
    "cited_by": ("Cited by {n}", "被引用 {n} 次"),
    "cited_via": ("(cites the earlier version: {via})", "（引用的是旧版本：{via}）"),
    "cited_older": (
        "(made before this version came into force: it may use an older text's article numbers)",
        "（早于本版本施行：可能沿用旧文本的条文序号）",
    ),
    "cited_by_none": ("No other indexed text cites this article.", "索引中没有其他文件引用本条。"),
    "export_refs": ("References", "参考文献"),
}


def t(key: str, lang: str, **values: object) -> str:
    """The interface string for key in lang ('en' or 'zh'), with placeholders filled."""
    en, zh = STRINGS[key]
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text


def both(key: str) -> str:
    """English and Chinese together ("Hybrid / 混合"), for option labels that must not change with the
    interface language: Streamlit forgets a radio's shown selection when its option labels change."""
    en, zh = STRINGS[key]
    return en if en == zh else f"{en} / {zh}"
