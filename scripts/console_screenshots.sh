#!/usr/bin/env bash
# Refresh docs/console/*.png: run the console's browser tests and keep what the browser showed.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPTORIUM_CONSOLE_SCREENSHOTS=docs/console exec "${PYTHON:-.venv/bin/python}" -m pytest \
    -p no:cacheprovider -q tests/browser "$@"
