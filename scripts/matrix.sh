#!/usr/bin/env bash
# The unit suite (tests/ minus tests/e2e) and mypy --strict against versions other than the lock's:
#   ./scripts/matrix.sh newest   the newest versions pyproject.toml allows, resolved today (no lock)
#   ./scripts/matrix.sh floors   the lowest versions the runtime extras allow (jwt, redis, server:
#                                PyJWT, redis, uvicorn, h11 at their ">=" floors), the rest newest
# Each mode has a virtualenv of its own (.venv-newest, .venv-floors), made afresh on every run.
# The locked run is ./scripts/test.sh (= .ci/run); these two tell whether the ranges pyproject.toml
# promises still hold, and what a refresh of the lock (scripts/lock.sh) would meet.
# PYTHON picks the interpreter (default python3). Needs Redis on 127.0.0.1:6379 (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
    newest | floors) ;;
    *) echo "usage: scripts/matrix.sh newest|floors" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
venv=.venv-$mode
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
constraints=$(mktemp /tmp/qakeapi-floors.XXXXXX)
trap 'rm -f "$constraints"' EXIT
if [ "$mode" = floors ]; then
    # name==floor for every ">=" requirement of the runtime extras
    "$python" - pyproject.toml >"$constraints" <<'PY'
import re
import sys

# No tomllib (Python 3.10 has none): the three extras are one line each in pyproject.toml.
text = open(sys.argv[1]).read()
for extra in ("jwt", "redis", "server"):
    line = re.search(rf"^{extra} = \[(.*)\]$", text, re.MULTILINE).group(1)
    for requirement in re.findall(r'"([^"]+)"', line):
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([^,;\s]+)", requirement).groups()
        print(f"{name}=={floor}")
PY
    echo "matrix: floors: $(tr '\n' ' ' <"$constraints")"
fi
echo "matrix: installing qakeapi[dev] ($mode) in $venv"
PIP_CONSTRAINT="$constraints" "${pip[@]}" install --upgrade -e ".[dev]"
"${pip[@]}" check
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(pyjwt|redis|uvicorn|h11|websockets|mypy|pytest) ' | tr -s ' ' | sed 's/^/matrix:   /'
bash scripts/services.sh
echo "== mypy ($mode)"
"$venv/bin/mypy"
echo "== pytest ($mode)"
"$venv/bin/python" -m pytest tests --ignore=tests/e2e --ignore=tests/reader -m "not e2e" -q -p no:cacheprovider
echo "== matrix $mode: all checks passed"
