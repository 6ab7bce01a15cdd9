#!/usr/bin/env bash
# Checks QakeAPI as its users get it, outside the repository:
#   1. builds the sdist and the wheel (python -m build);
#   2. installs the wheel, without extras, in a clean virtualenv in a temporary directory and
#      imports every module from there (optional dependencies are imported lazily);
#   3. unpacks the sdist and runs its unit suite (tests/ minus tests/e2e) on the lowest supported
#      Python (3.10) and on 3.13, each in a virtualenv of its own with the `test` set of
#      requirements/test.lock (the locked pins of the wheel's `test` extra) and the wheel.
# Needs what scripts/test.sh sets up (.venv, Redis); Pythons come from pyenv (~/.pyenv/versions)
# or PATH. PACKAGE_PYTHONS="3.10 3.13" overrides the versions.
set -euo pipefail
cd "$(dirname "$0")/.."
dev_python=$PWD/.venv/bin/python
work=$(mktemp -d /tmp/qakeapi-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
pip_quiet=(--quiet --disable-pip-version-check)

find_python() {  # find_python 3.10 -> the newest python3.10 pyenv or PATH has
    local version=$1 found=""
    for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python; do
        [ -x "$candidate" ] && found=$candidate
    done
    if [ -z "$found" ] && command -v pyenv >/dev/null; then
        for candidate in "$(pyenv root)"/versions/"$version".*/bin/python; do
            [ -x "$candidate" ] && found=$candidate
        done
    fi
    [ -z "$found" ] && found=$(command -v "python$version" || true)
    if [ -z "$found" ]; then
        echo "package: Python $version not found; install it with: pyenv install $version" >&2
        return 1
    fi
    echo "$found"
}

echo "package: building the sdist and the wheel"
"$dev_python" -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; exit 1; }
wheel=$(echo "$work"/dist/qakeapi_realtime-*.whl)
sdist=$(echo "$work"/dist/qakeapi_realtime-*.tar.gz)

echo "package: installing the wheel in a clean virtualenv and importing it"
"$dev_python" -m venv "$work/clean"
"$work/clean/bin/python" -m pip install "${pip_quiet[@]}" "$wheel"
(cd "$work" && "$work/clean/bin/python" - "$work/clean" <<'PY'
import importlib
import pkgutil
import sys
from importlib.metadata import metadata
from pathlib import Path

import qakeapi

venv = Path(sys.argv[1]).resolve()
location = Path(qakeapi.__file__).resolve()
assert venv in location.parents, f"qakeapi imported from {location}, not from the wheel in {venv}"
from qakeapi.exceptions import MissingDependencyError

names = [info.name for info in pkgutil.walk_packages(qakeapi.__path__, "qakeapi.", onerror=lambda name: None)]
needs_extra = {}
for name in names:
    try:
        importlib.import_module(name)
    except MissingDependencyError as exc:  # allowed: it names the extra to install
        assert f"pip install 'qakeapi-realtime[{exc.extra}]'" in str(exc), exc
        needs_extra[name] = exc.extra
assert "qakeapi.core.application" not in needs_extra and "qakeapi.testing" not in needs_extra, needs_extra
meta = metadata("qakeapi-realtime")
assert meta["Version"] == qakeapi.__version__, (meta["Version"], qakeapi.__version__)
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
print(f"package: imported qakeapi {qakeapi.__version__} ({len(names)} modules) from {location.parent}")
print(f"package: without extras, these say which extra to install: {needs_extra}")
PY
)

mkdir "$work/sdist"
tar xzf "$sdist" -C "$work/sdist"
source_dir=$(echo "$work"/sdist/qakeapi_realtime-*)
for version in ${PACKAGE_PYTHONS:-3.10 3.13}; do
    python=$(find_python "$version")
    echo "package: unit suite from the sdist on $("$python" --version) ($python)"
    "$python" -m venv "$work/py$version"
    # The test set from its lock (hashes checked), then the wheel itself.
    PIP_CONSTRAINT="" "$work/py$version/bin/python" -m pip install "${pip_quiet[@]}" --require-hashes --no-deps \
        -r requirements/test.lock
    "$work/py$version/bin/python" -m pip install "${pip_quiet[@]}" --no-deps "$wheel"
    "$work/py$version/bin/python" -m pip check
    (cd "$source_dir" && "$work/py$version/bin/python" -m pytest tests --ignore=tests/e2e -m "not e2e" \
        -q -p no:cacheprovider -x)
done
echo "package: all checks passed"
