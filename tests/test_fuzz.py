"""Fuzzing the per-file path: random and mutated bytes under every supported extension, with mutated sidecars and
metadata.csv, must land (within every stored field's limits) or be skipped with a one-line reason; nothing raises.

Seeds are the real test files (the tiny corpus, a generated PDF and .docx, front matter, sidecars, metadata.csv);
mutations flip, insert, delete, duplicate and splice bytes, and for .docx also mutate the XML inside the ZIP, so
the parsers get past the container checks. The default run is short; a long run is one environment variable:

    KB_FUZZ_EXAMPLES=20000 nice -n 10 .venv/bin/python -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kb import config
from kb.chunk import read_passages
from kb.errors import IngestError
from kb.ingest.guard import MAX_REASON, guarded, source_key
from kb.ingest.sidecars import MAX_META_CHARS, MAX_META_JSON, load_sidecars
from kb.text.lexical import tokenize_many
from tests.conftest import DATA, make_corpus

EXAMPLES = int(os.environ.get("KB_FUZZ_EXAMPLES", 40))
SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
FRONT_MATTER = (
    "---\ntitle: Leap notice\ndate: 2023-07-19\nissuer: 商务部\ntags: [a, b]\nanchor: &a {k: v}\n"
    "copy: *a\n---\n# 标题\n\n第一条 本规定适用于跨境电商。\n第二条 本规定自发布之日起施行。\n"
).encode()
SIDECAR = json.dumps(
    {
        "title": "Edited",
        "level": "规范性文件",
        "issuer": "商务部",
        "published": "2023-01-02",
        "validity": "现行有效",
        "lang": "zh",
        "region": "北京",
    },
    ensure_ascii=False,
).encode()
METADATA = "doc_id,title,issuer,published,validity\r\nf{suffix},标题,商务部,2023-01-02,现行有效\r\n".encode()


def _seeds() -> dict[str, list[bytes]]:
    """Real files by kind: what the mutations start from."""
    work = Path(tempfile.mkdtemp(prefix="kb-fuzz-seeds-"))
    try:
        corpus = make_corpus(work / "corpus")
        texts = [p.read_bytes() for p in (DATA / "corpus").rglob("*") if p.is_file()]
        html = (
            b"<html><head><title>T</title></head><body><form id='f'><h1>Notice</h1><p>Text <embed src=x> more "
            b"</p><table><tr><td>a</td></tr></table></form></body></html>"
        )
        return {
            "text": texts + [FRONT_MATTER, "第一条 甲。\n".encode("gbk"), "Notice\n".encode("utf-16")],
            "html": [html, *texts],
            "pdf": [(corpus / "report.pdf").read_bytes()],
            "docx": [(corpus / "guide.docx").read_bytes()],
            "sidecar": [SIDECAR],
            "csv": [METADATA],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


SEEDS = _seeds()
KIND = {
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed after a few byte-level edits, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "dup", "truncate", "splice")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 512))] * draw(st.integers(1, 20))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b"\xff\xfe",
                        b"\xef\xbb\xbf",
                        b"\x00\xd8",
                        b"---\n",
                        b"<embed src=x>",
                        b"<form>",
                        b"*a",
                        b"&a [*a, *a]",
                        b"\r",
                        b"%PDF-",
                        b"PK\x03\x04",
                        b"\x1b[31m",
                        "第九条".encode(),
                    ]
                )
            )
    return bytes(data)


@st.composite
def docx_bytes(draw: st.DrawFn) -> bytes:
    """A .docx whose XML parts are mutated inside a valid ZIP (past the container check), or a mutated ZIP."""
    seed = SEEDS["docx"][0]
    if draw(st.booleans()):
        return draw(mutated([seed]))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".xml") and draw(st.integers(0, 3)) == 0:
                data = draw(mutated([data]))
            dst.writestr(info.filename, data)
    return out.getvalue()


@st.composite
def corpus_file(draw: st.DrawFn) -> tuple[str, bytes, bytes | None, bytes | None]:
    """(suffix, file bytes, sidecar bytes or None, metadata.csv bytes or None)."""
    suffix = draw(st.sampled_from(SUFFIXES))
    kind = KIND[suffix]
    data = draw(docx_bytes()) if kind == "docx" else draw(mutated(SEEDS[kind]))
    side = draw(st.none() | mutated(SEEDS["sidecar"]))
    csv = draw(st.none() | mutated([METADATA.replace(b"{suffix}", suffix.encode())]))
    return suffix, data, side, csv


def _check_landed(doc: object, chunks: list) -> None:
    """What a landed document must satisfy on both backends (Milvus's field limits included)."""
    text = doc.text  # type: ignore[attr-defined]
    assert chunks
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
        assert len(c.index_text().encode("utf-8", "surrogatepass")) <= 65_535
    meta = doc.meta.to_dict()  # type: ignore[attr-defined]
    assert len(json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass")) <= MAX_META_JSON
    assert len(doc.title) <= MAX_META_CHARS  # type: ignore[attr-defined]
    assert len(json.dumps(doc.page_spans)) <= 65_535  # type: ignore[attr-defined]
    assert len((meta.get("issuer") or "").encode()) <= 2048 and len((meta.get("level") or "").encode()) <= 256
    assert doc.lang in ("zh", "en")  # type: ignore[attr-defined]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(corpus_file())
def test_any_bytes_under_any_extension_land_or_are_skipped_with_a_reason(
    case: tuple[str, bytes, bytes | None, bytes | None],
) -> None:
    suffix, data, side, csv = case
    root = Path(tempfile.mkdtemp(prefix="kb-fuzz-"))
    doc_id = "f" + suffix
    previous = config.FILE_TIMEOUT_S
    config.FILE_TIMEOUT_S = 30  # a hang is a finding too: it must end as a skip, not stall the run
    try:
        (root / doc_id).write_bytes(data)
        if side is not None:
            (root / f"{doc_id}.meta.json").write_bytes(side)
        if csv is not None:
            (root / "metadata.csv").write_bytes(csv)
        sidecars = load_sidecars(root)  # never raises: a bad metadata.csv is logged and ignored
        try:
            with guarded(doc_id):
                source_key(root, doc_id, root / doc_id, sidecars.get(doc_id, {}))
                doc, chunks = read_passages(root, doc_id, sidecars.get(doc_id))
                tokenize_many([c.index_text() for c in chunks])
        except IngestError as exc:
            assert exc.reason and "\n" not in exc.reason and len(exc.reason) <= MAX_REASON, exc.reason
            event(f"{suffix} skipped: {' '.join(exc.reason.split()[:3])}")  # --hypothesis-show-statistics
            return
        _check_landed(doc, chunks)
        event(f"{suffix} landed")
    finally:
        config.FILE_TIMEOUT_S = previous
        shutil.rmtree(root, ignore_errors=True)
