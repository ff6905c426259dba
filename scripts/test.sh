#!/usr/bin/env bash
# The test command: lint, types, the layering contract (import-linter, [tool.importlinter] in
# pyproject.toml), migrations (upgrade on an empty database + drift check), the published OpenAPI
# contract, and the test suite against real Postgres, Redis and S3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

echo "== ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
echo "== mypy"
"$PY" -m mypy
echo "== layering (lint-imports)"
"$PY" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" --no-cache --no-logo
echo "== migrations"
"$PY" -m scripts.check_migrations
echo "== pytest"
exec "$PY" -m pytest -p no:cacheprovider "$@"
