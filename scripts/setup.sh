#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: a virtualenv in .venv holding exactly the
# pins of requirements/<set>.lock (installed with --require-hashes: what was last green), then
# QakeAPI itself, editable. Sets: dev (the whole suite), demo (the demo chat). Safe to run again:
# it installs only when the lock or pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
set_name=${1:-dev}
lock=requirements/$set_name.lock
[ -f "$lock" ] || { echo "setup: no lock file $lock (sets: dev, test, demo)" >&2; exit 1; }
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$set_name-$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing $lock"
    pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
    # The lock is complete (every dependency pinned, with hashes): --no-deps installs it as written.
    PIP_CONSTRAINT="" "${pip[@]}" install --require-hashes --no-deps -r "$lock"
    PIP_CONSTRAINT="" "${pip[@]}" install --no-deps --no-build-isolation -e .
    "${pip[@]}" check
    rm -f .venv/.installed-*  # one set at a time: the next set re-checks its own pins
    touch "$stamp"
fi
