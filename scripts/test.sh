#!/usr/bin/env bash
# Runs the whole suite on a fresh machine: installs what is missing, starts Redis when none is
# listening, then lint, types, tests (tests/ and the docs), the docs build, and the package as
# users get it (scripts/check_package.sh: sdist and wheel built, the wheel installed and imported
# in a clean virtualenv, the unit suite from the sdist on Python 3.10 and 3.13). Fails loudly.
# SKIP_PACKAGE=1 leaves out the package stage (about a minute and a half).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/services.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";   ruff check . && ruff format --check .
echo "== mypy";   mypy
echo "== pytest"; python -m pytest "$@"
echo "== sphinx"; rm -rf docs/_build && sphinx-build -W -n --keep-going -q -b html docs docs/_build/html
if [ "${SKIP_PACKAGE:-0}" != 1 ]; then echo "== package"; bash scripts/check_package.sh; fi
echo "== all checks passed"
