"""Reliability: bad input, per-file time limits, kills during builds, concurrent searches, hostile queries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb import config
from kb.chunk import chunk_document
from kb.embed.models import HashingEmbedder
from kb.errors import QueryError
from kb.index.build import build
from kb.index.generations import current_generation, read_manifest
from kb.ingest.document import DocMeta, Document
from kb.ingest.guard import printable
from kb.ingest.sidecars import MAX_META_CHARS
from kb.search.searcher import Searcher
from tests.badcorpus import make_bad_corpus

ROOT = Path(__file__).parent.parent


def _build_args(corpus: Path, index: Path) -> list[str]:
    """`kb build` of a corpus with the fast hashing model and no cross-lingual channel."""
    paths = ["--corpus", str(corpus), "--index", str(index)]
    return ["build", *paths, "--model", "hashing", "--xling", "none", "--no-progress"]


def _cli_build(corpus: Path, index: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kb", *_build_args(corpus, index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


# Forks the build from a small Python process and writes the build's own peak RSS (KB) to argv[1]. Linux keeps
# a forked child's high-water mark from before its exec, so a build forked straight from a pytest process that has
# grown (models loaded by earlier tests) would report pytest's size, not its own.
_PEAK_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _cli_build_peak(corpus: Path, index: Path, scratch: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`_cli_build` and the peak memory (MB) of that build alone (see _PEAK_LAUNCHER)."""
    peak = scratch / "build.peak"
    args = [sys.executable, "-c", _PEAK_LAUNCHER, str(peak), "-m", "kb", *_build_args(corpus, index)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done, int(peak.read_text()) / 1024


def test_bad_input_corpus_lands_every_good_file_and_reports_every_bad_one(tmp_path: Path) -> None:
    expect = make_bad_corpus(tmp_path / "corpus")
    done, peak_mb = _cli_build_peak(tmp_path / "corpus", tmp_path / "index", tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(current_generation(tmp_path / "index"))
    skipped: dict[str, str] = manifest["skipped"]
    searcher = Searcher(tmp_path / "index")
    landed = {d["doc_id"] for d in searcher.documents()}
    for doc_id, (outcome, detail) in expect.items():
        if outcome == "landed":
            assert doc_id in landed, f"{doc_id} did not land: {skipped.get(doc_id)}"
            hits = searcher.search(detail, 3, docs=[doc_id], mode="keyword")
            assert hits and detail in hits[0].chunk.text.replace("\n", " "), doc_id
        else:
            assert skipped.get(doc_id, "").startswith(detail), (doc_id, skipped.get(doc_id))
    assert set(landed) | set(skipped) == set(expect)  # nothing silently ignored, nothing read twice via dir_loop
    assert all("\n" not in r and str(tmp_path) not in r for r in skipped.values())  # one line, no absolute path
    for doc_id in skipped:
        # the build summary names each file once with its reason, control characters escaped
        assert done.stdout.count(f"skipped {printable(doc_id)}: ") == 1, doc_id
    assert peak_mb < 1500, f"build peaked at {peak_mb:.0f} MB"  # a 100 MB file is refused, not loaded
    _check_hostile(searcher, done)
    listing = subprocess.run(
        [sys.executable, "-m", "kb", "docs", "--index", str(tmp_path / "index")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    header, *rows = listing.stdout.splitlines()
    width = len(header.split("\t"))
    assert header.startswith("doc_id\t") and width == 8
    assert len(rows) == len(landed) and all(len(r.split("\t")) == width for r in rows)  # a newline splits nothing
    assert "hostile/new\\nline.txt\t" in listing.stdout and "\x1b" not in listing.stdout
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "kb",
            "search",
            "--index",
            str(tmp_path / "index"),
            "-k",
            "1",
            "Customs brokers renew licences",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "[hostile/esc\\x1b[31mred\\x07.txt]" in found.stdout and "\x1b" not in found.stdout


def _check_hostile(searcher: object, done: subprocess.CompletedProcess) -> None:
    """Issue 14's hostile files: metadata read and capped, nothing leaked, no traceback, no raw control bytes."""
    assert "Traceback" not in done.stdout + done.stderr
    assert not any(c in done.stdout for c in "\x1b\x07"), "raw control characters printed"
    docs = {d["doc_id"]: d for d in searcher.documents()}
    assert docs["good/utf8.txt"]["meta"]["issuer"] == "北京市商务局"  # metadata.csv saved as GBK is read
    assert len(docs["good/gbk.txt"]["meta"]["issuer"]) <= MAX_META_CHARS  # a 200,000-character cell is capped
    assert len(docs["hostile/big_issuer.txt"]["meta"]["issuer"]) <= MAX_META_CHARS
    assert len(docs["hostile/laughs.md"]["title"]) <= MAX_META_CHARS  # the alias bomb did not expand
    assert len(json.dumps(docs["hostile/wide_meta.md"]["meta"], ensure_ascii=False).encode()) <= 65_535
    assert all("LEAKED" not in d["title"] for d in docs.values())


def test_rebuild_with_bad_files_added_keeps_what_was_stored(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    expect = make_bad_corpus(corpus, big=False)
    good = {d for d, (o, _) in expect.items() if o == "landed"}
    bad_dir = tmp_path / "held-back"
    (corpus / "bad").rename(bad_dir)
    build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    (bad_dir).rename(corpus / "bad")
    report = build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    assert good <= set(report.reused) | set(report.indexed)
    assert not report.removed
    assert {d["doc_id"] for d in Searcher(tmp_path / "index").documents()} >= good - {"good/inside_link.txt"}


def _rows(index: Path) -> list[tuple]:
    """Every stored passage of an index, in row order: id, offsets, article and text."""
    import sqlite3

    (db,) = current_generation(index).glob("chunks-*.sqlite")
    with sqlite3.connect(db) as con:
        return con.execute("SELECT chunk_id, char_start, char_end, article, text FROM chunks ORDER BY row").fetchall()


def test_files_read_by_worker_processes_give_the_same_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big corpora are read by the build's worker processes (kb.index.reading): the bad-input corpus read there
    lands and skips exactly what reading in the build's own process does, passage for passage, in the same order."""
    import kb.pool

    corpus = tmp_path / "corpus"
    make_bad_corpus(corpus, big=False)
    here = build(corpus, tmp_path / "here", {"dense": HashingEmbedder()}, cache_dir=None)
    monkeypatch.setattr(config, "READ_IN_WORKERS", 1)
    monkeypatch.setattr(config, "EMBED_WORKERS", 2)
    there = build(corpus, tmp_path / "there", {"dense": HashingEmbedder()}, cache_dir=None)
    assert 2 in kb.pool._POOLS  # the workers read the files (a dead pool is dropped and the files read here)
    assert there.indexed == here.indexed and there.skipped == here.skipped and len(here.skipped) >= 5
    rows = _rows(tmp_path / "here")
    assert _rows(tmp_path / "there") == rows and len(rows) > 20


def test_a_file_that_takes_too_long_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "slow.html").write_text("<p>Slow page about customs.</p>", encoding="utf-8")
    (corpus / "fine.txt").write_text("Fine page about customs.\n", encoding="utf-8")
    import kb.ingest.read

    def stall(html: str) -> tuple[str, str | None]:
        time.sleep(30)
        return html, None

    monkeypatch.setattr(config, "FILE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(kb.ingest.read, "html_to_text", stall)
    t0 = time.time()
    report = build(corpus, tmp_path / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    assert time.time() - t0 < 10
    assert report.skipped == {"slow.html": "reading took over 0.5 s (KB_FILE_TIMEOUT); skipped"}
    assert report.indexed == ["fine.txt"]


def test_killed_builds_never_break_search(tmp_path: Path) -> None:
    """A short run of scripts/killtest.py (the full one: 50 kills, see docs/BENCHMARKS.md)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "killtest.py"),
            "--kills",
            "12",
            "--docs",
            "400",
            "--seed",
            "7",
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, (report, done.stderr[-2000:])
    assert report["kills"] >= 8 and report["index_usable_after_round"] == 12
    assert report["search_errors"] == 0 and report["searches_served_during_rebuilds"] > 100
    assert report["final_build_ok"] and report["temporary_folders_left"] == []


@pytest.fixture(scope="module")
def searcher(index: Path) -> Searcher:
    return Searcher(index)


@pytest.mark.parametrize("query", ["？？！！……", "😀🎉👍", "...---!!!", "\u200b\u200b", "《》【】"])
def test_queries_without_words_get_a_clear_message(searcher: Searcher, query: str) -> None:
    with pytest.raises(QueryError, match="only punctuation or symbols|empty query"):
        searcher.search(query, 5)


def test_long_and_control_character_queries_are_answered(searcher: Searcher) -> None:
    long_query = ("消费者 七日 退货 " * 2000)[:10_000]
    assert searcher.search(long_query, 3)
    hits = searcher.search("七日\x00内\x07无理由\u200b退货\x1b", 3)
    assert hits and hits[0].citation == "《示范电子商务法》第四条"
    assert searcher.search("😀 退货", 3)[0].citation == "《示范电子商务法》第四条"


@pytest.mark.parametrize("doc_id", ["../../etc/passwd", "/etc/passwd", "zh/../../../etc/passwd", "..", ""])
def test_documents_are_read_from_the_index_never_from_a_path(searcher: Searcher, doc_id: str) -> None:
    with pytest.raises(QueryError, match="no such document"):
        searcher.source(doc_id)
    with pytest.raises(QueryError, match="no such document"):
        searcher.search("退货", 3, docs=[doc_id] if doc_id else ["-"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=3000), st.sampled_from(["zh", "en"]))
def test_chunker_keeps_exact_offsets_on_any_text(text: str, lang: str) -> None:
    doc = Document(doc_id="f.txt", path="f.txt", title="T", lang=lang, text=text, meta=DocMeta())
    for chunk in chunk_document(doc):
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text.strip()


LEGALISH = st.lists(
    st.sampled_from(
        [
            "第一条",
            "第十二条",
            "第一百零一条",
            "第二章 总则",
            "第一节",
            "一、",
            "（二）",
            "1.",
            "本法第六十一条",
            "。",
            "；",
            "\n",
            "\n\n",
            "　",
            " ",
            "消费者",
            "依照",
            "# 标题",
            "Article 3",
            "应当",
            "——",
            "\r\n",
        ]
    ),
    max_size=300,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(LEGALISH)
def test_chunker_keeps_exact_offsets_on_statute_like_text(text: str) -> None:
    doc = Document(doc_id="law.txt", path="law.txt", title="法", lang="zh", text=text, meta=DocMeta())
    for chunk in chunk_document(doc):
        assert text[chunk.char_start : chunk.char_end] == chunk.text


@pytest.mark.model
def test_twenty_concurrent_users_get_answers_without_errors() -> None:
    """A short run of scripts/loadtest.py on the shipped index (the full table is in docs/BENCHMARKS.md)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "loadtest.py"), "--users", "20", "--per-user", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, (row, done.stderr[-2000:])
    assert row["users"] == 20 and row["searches"] == 40 and row["errors"] == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=2000), st.booleans())
def test_quote_folding_maps_every_character_back_to_the_original(text: str, join_hyphens: bool) -> None:
    from kb.text.fold import fold, fold_chars

    folded = fold(text, join_hyphens=join_hyphens)
    assert len(folded.origin) == len(folded.text)
    assert all(0 <= o < len(text) for o in folded.origin.tolist())
    assert all(a <= b for a, b in zip(folded.origin.tolist(), folded.origin.tolist()[1:]))
    if folded.text:
        start, end = folded.span(0, len(folded.text))
        assert 0 <= start < end <= len(text)
        # Folding the original span again gives the same folded text: offsets point at the right characters.
        assert fold(text[start:end], join_hyphens=join_hyphens).text == folded.text
    assert isinstance(fold_chars(text), str)


@pytest.mark.parametrize("failure", ["disk full", "read-only"])
def test_a_build_that_cannot_write_says_why_in_one_line_and_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: str
) -> None:
    import errno
    import sqlite3

    import kb.index.build
    import kb.index.write
    from kb.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Bonded warehouses speed up returns.\n", encoding="utf-8")
    index = tmp_path / "index"
    build(corpus, index, {"dense": HashingEmbedder()}, cache_dir=None)
    (corpus / "b.txt").write_text("Village stations sell produce online.\n", encoding="utf-8")
    if failure == "disk full":

        def full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(kb.index.write, "write_segment", full)
        said = "database or disk is full"
    else:

        def read_only(index_dir: Path) -> object:
            raise OSError(errno.EROFS, "Read-only file system", str(index_dir / ".lock"))

        monkeypatch.setattr(kb.index.build, "build_lock", read_only)
        said = "Read-only file system"
    code = main(_build_args(corpus, index))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert said in err and "the previous index is kept" in err
    hits = Searcher(index).search("bonded warehouses", 1, mode="keyword")
    assert hits and hits[0].chunk.doc_id == "a.txt"
