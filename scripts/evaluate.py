"""Run a retrieval benchmark: `python scripts/evaluate.py scifact|stard [--limit N] [--model e5] [--mode hybrid]`."""

from __future__ import annotations

import sys

from kb.cli import main as kb_main


def main(argv: list[str] | None = None) -> int:
    """Same flags as `python -m kb eval`."""
    return kb_main(["-v", "eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
