#!/usr/bin/env bash
# The test command: lint, types, migrations (upgrade on an empty database + drift check), the
# published OpenAPI contract, and the test suite against real Postgres, Redis and S3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

echo "== ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
echo "== mypy"
"$PY" -m mypy
echo "== migrations"
"$PY" -m scripts.check_migrations
echo "== pytest"
exec "$PY" -m pytest -p no:cacheprovider "$@"
