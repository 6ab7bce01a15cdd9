#!/usr/bin/env bash
# Refreshes the lock files in requirements/ to the newest versions pyproject.toml allows, for every
# supported Python at once (uv's universal resolution: one file, with markers where versions differ).
#   requirements/dev.lock   the dev extra: what scripts/test.sh (= .ci/run) installs
#   requirements/test.lock  the test extra: the package stage's unit suite on 3.10 and 3.13
#   requirements/demo.lock  the demo extra: what scripts/demo.sh installs
#   requirements/bench.lock the bench extra: the tools of benchmarks/ (see benchmarks/README.md)
# Every pin carries its hashes; the scripts install with --require-hashes. Run it, then the suite
# (./scripts/test.sh), then commit the locks with the code they were tested with. uv comes from
# PyPI (`pip install uv`); LOCK_UPGRADE=0 keeps today's pins and only adds what is new.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-uv}
command -v "$uv" >/dev/null || { echo "lock: uv is not installed; install it with: pip install uv" >&2; exit 1; }
upgrade=(--upgrade)
[ "${LOCK_UPGRADE:-1}" = 0 ] && upgrade=()
for extra in dev test demo bench; do
    echo "lock: requirements/$extra.lock"
    "$uv" pip compile pyproject.toml requirements/build.in --extra "$extra" --universal \
        --python-version 3.10 --generate-hashes --quiet "${upgrade[@]}" \
        --custom-compile-command "scripts/lock.sh" -o "requirements/$extra.lock"
done
