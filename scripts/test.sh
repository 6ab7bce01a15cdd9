#!/usr/bin/env bash
# Runs the whole suite on a fresh machine: installs what is missing, starts Redis when none is
# listening, then lint, types, tests (tests/ and the docs) and the docs build. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/services.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";   ruff check . && ruff format --check .
echo "== mypy";   mypy
echo "== pytest"; python -m pytest "$@"
echo "== sphinx"; rm -rf docs/_build && sphinx-build -W -n --keep-going -q -b html docs docs/_build/html
echo "== all checks passed"
