"""English questions over Chinese law: what the cross-lingual USE channel adds, on any index that has it.

100 STARD train questions with our English translations (scripts/data/stard_en100.jsonl: id, query_zh,
query_en and STARD's gold articles) are asked in English twice over the same index: with every channel
(after), and with the USE channel's ranking left out of the fusion (before: what an index built without
`--xling use` answers). The Chinese originals give the reference. Recall@k and MRR@10 follow STARD's rule (a
gold article counts when its first 30 characters appear in a returned passage), as `kb eval stard` does.

    .venv/bin/python scripts/xling_eval.py --index DIR [--json out.json]

English questions do not go through the question tower (it was trained on Chinese STARD train questions), so
nothing here was tuned on these English questions; the Chinese reference is asked with the tower off for the
same reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kb.bench.evaluate import _stard_judge
from kb.errors import KbError
from kb.search.fusion import depth
from kb.search.searcher import Searcher

DATA = Path(__file__).resolve().parent / "data" / "stard_en100.jsonl"
K = 100


def score(searcher: Searcher, rows: list[dict], field: str, drop: str | None = None) -> dict[str, float]:
    """Mean Recall@5/10/100 and MRR@10 of the questions in `field`, with channel `drop` left out of the fusion."""
    total = {"recall@5": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for row in rows:
        ranked = searcher.rankings(row[field], depth(K))
        if drop:
            ranked.pop(drop, None)
        hits = searcher.fuse(ranked, row[field], K)
        recall, rr = _stard_judge([h.chunk.text for h in hits], row)
        for k in (5, 10, 100):
            total[f"recall@{k}"] += recall[k]
        total["mrr@10"] += rr
    return {k: round(v / len(rows), 4) for k, v in total.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--questions", type=Path, default=DATA)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    try:
        searcher = Searcher(args.index, tuned=False)
    except KbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [json.loads(x) for x in args.questions.read_text(encoding="utf-8").splitlines() if x.strip()]
    if "xling" not in searcher.channels:
        print(f"note: {args.index} has no cross-lingual channel; 'before' and 'after' are the same", file=sys.stderr)
    t0 = time.perf_counter()
    out = {
        "index": str(args.index),
        "passages": searcher.passages,
        "questions": len(rows),
        "english_before_without_use": score(searcher, rows, "query_en", drop="xling"),
        "english_after_with_use": score(searcher, rows, "query_en"),
        "chinese_reference_tower_off": score(searcher, rows, "query_zh"),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, ensure_ascii=False, indent=1)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
