"""Speed, size and memory figures for a corpus and its index: `python scripts/bench.py --corpus DIR --index DIR`."""

from __future__ import annotations

import sys

from kb.cli import main as kb_main


def main(argv: list[str] | None = None) -> int:
    """Same flags as `python -m kb bench` (see docs/BENCHMARKS.md)."""
    return kb_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
