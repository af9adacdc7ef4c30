#!/usr/bin/env bash
# The test command (README and .ci/run): set up, lint, then the whole pytest suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-$(command -v python3 || command -v python)}"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
exec "$PY" -m pytest -q "$@"
