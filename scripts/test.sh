#!/usr/bin/env bash
# One command from a fresh clone: install everything the tests need (Python packages, headless Chromium), run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
export HF_HUB_OFFLINE=1
# The browser tests fail rather than skip here: this is the run that must prove the app works in a browser.
export KB_REQUIRE_BROWSER=1
exec .venv/bin/python -m pytest -q "$@"
