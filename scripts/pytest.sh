#!/usr/bin/env bash
# Runs the Python suite (or the test files given after the venv) with that
# venv's interpreter; pytest's exit code 5 ("no tests collected") is a failure here.
set -euo pipefail
venv="${1:-.venv}"
shift || true
[ "$#" -gt 0 ] || set -- tests
set +e
"$venv/bin/python" -m pytest "$@" -q -p no:cacheprovider
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as failure" >&2
  exit 1
fi
exit "$rc"
