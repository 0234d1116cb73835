#!/usr/bin/env bash
# One command from a fresh clone: install everything the tests need, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
