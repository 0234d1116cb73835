"""The two questions the product was built for, on the bundled corpus and on the same files in other folders.

    python scripts/check_questions.py                # index/ and a re-laid-out copy built under a temporary folder
    python scripts/check_questions.py --json out.json

For each index and for the reranker off and on it prints the rank of the passage each question must find:
"what measures address live-stream talent" -> a seed passage about live-streaming talent (rank 1-3 wanted);
"什么是价格欺诈" -> the article that defines 价格欺诈 ("本规定所称价格欺诈…", top 3 wanted).
The copy moves every file into other folders (laws/, commentary/english/, notes/, books/) without metadata.csv,
so nothing in the ranking may depend on the bundled folder names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kb import config
from kb.backends import build_index
from kb.embed.models import build_embedders
from kb.errors import KbError
from kb.search.hits import Hit
from kb.search.searcher import Searcher

LAYOUT = {"zh": "laws", "en": "commentary/english", "seeds": "notes", "pdf": "books"}


def _talent(hit: Hit) -> bool:
    text = hit.chunk.text.lower()
    return Path(hit.chunk.doc_id).name[:4] in {f"00{i}_" for i in range(10)} and "talent" in text and "live" in text


def _defines_price_fraud(hit: Hit) -> bool:
    return "本规定所称价格欺诈" in hit.chunk.text


QUESTIONS: dict[str, Callable[[Hit], bool]] = {
    "what measures address live-stream talent": _talent,
    "什么是价格欺诈": _defines_price_fraud,
}


def relayout(corpus: Path, out: Path) -> Path:
    """Copy the corpus's files into other folders (no metadata.csv)."""
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.parent != corpus:
            top = path.relative_to(corpus).parts[0]
            target = out / LAYOUT.get(top, top) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return out


def ranks(index: Path) -> dict[str, dict[str, int | None]]:
    """Rank (1-based, within 20) of each question's target passage, reranker off and on."""
    searcher = Searcher(index)
    out: dict[str, dict[str, int | None]] = {}
    for question, wanted in QUESTIONS.items():
        out[question] = {}
        for rerank in (False, True):
            hits = searcher.search(question, 20, rerank=rerank, xrefs=False)
            out[question]["rerank " + ("on" if rerank else "off")] = next((h.rank for h in hits if wanted(h)), None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=config.DEFAULT_CORPUS)
    p.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        result = {"bundled": ranks(args.index)}
        with tempfile.TemporaryDirectory() as tmp:
            corpus = relayout(args.corpus, Path(tmp) / "corpus")
            build_index("faiss", corpus, build_embedders(config.DEFAULT_MODEL, "use"), index=Path(tmp) / "index")
            result["other folders"] = ranks(Path(tmp) / "index")
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
