#!/usr/bin/env bash
# Tests the Python package as a user gets it: installs python/ with pip into a fresh virtual
# environment (cargo builds the library, which goes inside the package), then runs
# python/tests and the examples with that environment's python, from a directory outside
# the repository and without RR_LIB, so that the installed package and its bundled
# library are what is tested. Exits non-zero on any failure.
#
# Environment: PYTHON (default python3), RR_TEST_WORKER (default
# target/release/rr-test-worker: run `make lib` first), CARGO_TARGET_DIR (default
# target/python, kept between runs so that cargo rebuilds only what changed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
export RR_TEST_WORKER=${RR_TEST_WORKER:-$REPO/target/release/rr-test-worker}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/python}
unset RR_LIB

if [ ! -x "$RR_TEST_WORKER" ]; then
    echo "run-tests.sh: no test worker at $RR_TEST_WORKER (run \`make lib\` first)" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/roadrunner-pool-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
VENV=$TMP/venv
"$PYTHON" -m venv "$VENV"

start=$EPOCHREALTIME
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$HERE" \
        >"$TMP/pip.log" 2>&1; then
    cat "$TMP/pip.log" >&2
    echo "run-tests.sh: pip install ./python failed" >&2
    exit 1
fi
end=$EPOCHREALTIME
awk -v s="$start" -v e="$end" 'BEGIN { printf "pip install ./python: %.1f s\n", e - s }'
# The tests' own dependency: prometheus_client's OpenMetrics parser checks metrics().
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check prometheus-client \
        >"$TMP/pip.log" 2>&1; then
    cat "$TMP/pip.log" >&2
    echo "run-tests.sh: pip install prometheus-client failed" >&2
    exit 1
fi

# Nothing of the build may be left in the source tree.
left=$(cd "$HERE" && git status --porcelain --ignored . 2>/dev/null | grep -E '(build|dist|egg-info)/?$' || true)
if [ -n "$left" ]; then
    echo "run-tests.sh: the build left files in python/: $left" >&2
    exit 1
fi

cd "$TMP"
PY=$VENV/bin/python
# The installed package, with its bundled library, is the one imported.
"$PY" - <<'PYEOF'
import os, sys
import roadrunner_pool
pkg = os.path.dirname(roadrunner_pool.__file__)
assert pkg.startswith(sys.prefix), f"imported {pkg}, not the venv's package"
assert os.path.dirname(roadrunner_pool.library_path()) == pkg, roadrunner_pool.library_path()
print(f"roadrunner_pool {roadrunner_pool.__version__} from {pkg}, "
      f"library {roadrunner_pool.library_version()}")
PYEOF

# The tests. unittest's result is also printed as one line "N passed, N failed".
start=$EPOCHREALTIME
"$PY" - "$HERE/tests" <<'PYEOF'
import sys
import unittest
tests = sys.argv[1]
sys.path.insert(0, tests)
suite = unittest.defaultTestLoader.discover(tests, top_level_dir=tests)
result = unittest.TextTestRunner(verbosity=2).run(suite)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
skipped = len(result.skipped)
print(f"python package: {result.testsRun - failed - skipped} passed, {failed} failed, "
      f"{skipped} skipped")
sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
PYEOF
end=$EPOCHREALTIME
awk -v s="$start" -v e="$end" 'BEGIN { printf "tests: %.1f s\n", e - s }'

# The examples, as the README prints them.
out=$("$PY" "$HERE/example.py" "$RR_TEST_WORKER")
echo "$out"
[ "$out" = "hello world" ] || { echo "run-tests.sh: example.py printed something else" >&2; exit 1; }
out=$("$PY" "$HERE/example.py" "$PY $HERE/example_worker.py")
echo "$out"
[ "$out" = "hello WORLD" ] || {
    echo "run-tests.sh: example.py with example_worker.py printed something else" >&2; exit 1; }
echo "run-tests.sh: OK"
