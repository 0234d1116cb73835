"""Shared fixtures: a tiny real corpus, a hashing-embedder index built once per session."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from kb.embed.models import HashingEmbedder
from kb.index.build import build
from kb.train.tower import Prepared

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Register markers so `-m "not slow"` works without warnings."""
    config.addinivalue_line("markers", "slow: end-to-end run on real data or models (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "model: loads the packaged embedding models")
    config.addinivalue_line("markers", "browser: drives the app in headless Chromium")


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    """Write a minimal valid PDF with one text line per entry, one page per list (Helvetica, ASCII)."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    font_id = 3 + 2 * n_pages
    for i, lines in enumerate(pages):
        content = (
            "BT /F1 12 Tf 72 720 Td 14 TL "
            + " ".join(
                "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines
            )
            + " ET"
        )
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {4 + 2 * i} 0 R >>".encode()
        )
        data = content.encode("latin-1")
        objects.append(b"<< /Length " + str(len(data)).encode() + b" >>\nstream\n" + data + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def make_corpus(root: Path) -> Path:
    """Copy the tiny test corpus and add the generated PDF and DOCX."""
    shutil.copytree(DATA / "corpus", root)
    make_pdf(
        root / "report.pdf",
        [
            ["Cross-border e-commerce pilot zones", "support small exporters with customs data."],
            ["Rural logistics networks reach every", "county, so farmers can sell online."],
        ],
    )
    import docx

    document = docx.Document()
    document.add_heading("Live Commerce Guidelines", level=1)
    document.add_paragraph("Streamers must disclose paid promotions to viewers.")
    document.save(str(root / "guide.docx"))
    return root


def one_file_index(root: Path, name: str, text: str) -> Path:
    """Build a hashing-embedder index over a corpus of one text file; returns the index folder."""
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / name).write_text(text, encoding="utf-8")
    build(root / "corpus", root / "index", {"dense": HashingEmbedder()}, cache_dir=None)
    return root / "index"


def prepared_set(kinds: list[str], groups: list[int] | None = None) -> Prepared:
    """A tiny prepared training set (kb.train.tower.Prepared) with questions of these kinds: "zh", "en",
    "scifact", pair kinds...; groups default to each Chinese question's own position and -1 for the rest."""
    n = len(kinds)
    return Prepared(
        [f"q{i}" for i in range(n)],
        [np.zeros((2, 4), np.float32)] * n,
        10,
        [np.array([0])] * n,
        [{}] * n,
        np.zeros((1, 4), np.float32),
        np.array([True]),
        kinds.count("zh"),
        kinds,
        groups if groups is not None else [i if k == "zh" else -1 for i, k in enumerate(kinds)],
    )


def load_script(name: str) -> ModuleType:
    """Import scripts/NAME.py as a module (scripts are not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)  # registered first: its dataclasses look their module up
    return module


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("c") / "corpus")


@pytest.fixture(scope="session")
def index(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("i") / "index"
    build(corpus, out, {"dense": HashingEmbedder()}, cache_dir=None)
    return out


# --- Backends: the shared search tests run against the FAISS folder and a milvus-lite file (kb.backends) ---

BACKENDS = ("faiss", "milvus")


def build_and_open(backend: str, corpus: Path, out: Path, **searcher_args: object) -> object:
    """Build corpus with the hashing embedder into out/ (an index folder, or out/kb.db) and open a searcher."""
    from kb.backends import build_index, open_searcher

    where = {"index": out / "index"} if backend == "faiss" else {"uri": str(out / "kb.db")}
    build_index(backend, corpus, {"dense": HashingEmbedder()}, cache_dir=None, **where)  # type: ignore[arg-type]
    return open_searcher(backend, **where, **searcher_args)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=BACKENDS)
def searcher(
    request: pytest.FixtureRequest, index: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """The shared index (FAISS), or the same corpus built into milvus-lite: a test using it runs on both."""
    from kb.search.searcher import Searcher

    if request.param == "faiss":
        yield Searcher(index)
        return
    searcher = build_and_open("milvus", corpus, tmp_path_factory.mktemp("milvus"))
    yield searcher
    searcher.close()  # type: ignore[attr-defined]


def target_args(searcher: object) -> list[str]:
    """The command-line options that point `python -m kb` at the index a searcher serves."""
    from kb.milvus.search import MilvusSearcher

    if isinstance(searcher, MilvusSearcher):
        return ["--backend", "milvus", "--uri", searcher.target.uri, "--collection", searcher.target.collection]
    return ["--index", str(searcher.index_dir)]  # type: ignore[attr-defined]
