#!/usr/bin/env bash
# One command from a fresh clone: install, make sure the index matches corpus/, start the app.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# The shipped index is used as is when corpus/ is unchanged; otherwise only changed files are rebuilt.
if ! .venv/bin/python -m kb check --quick >/dev/null 2>&1; then
  .venv/bin/python -m kb build
fi
exec .venv/bin/python -m streamlit run app.py "$@"
