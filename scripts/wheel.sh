#!/usr/bin/env bash
# Writes to dist/ what a release publishes: the sdist and one abi3 wheel
# (CPython 3.10+) tagged manylinux2014 (glibc 2.17), linked by zig against
# glibc 2.17's symbols. The extension links no SQLite: it binds at run time to
# the one Python's sqlite3 uses (python/fastcheckpoint/sqlite/_library.py).
# Then the sdist is built as a user without a wheel would build it: with Rust
# and nothing else (no SQLite development files, no pkg-config).
set -euo pipefail
venv="$(cd "${1:-.venv}" && pwd)"  # absolute: zig is found on PATH from build directories
"$venv/bin/python" -m pip install -q "auditwheel>=6.1" "ziglang>=0.13,<1"
rm -rf dist target/wheel-from-sdist
# maturin runs zig as `python -m ziglang`, with the venv's python first on PATH.
PATH="$venv/bin:$PATH" "$venv/bin/maturin" build --release --zig --compatibility manylinux2014 -o dist
"$venv/bin/maturin" sdist -o dist
PATH="$venv/bin:$PATH" "$venv/bin/python" scripts/check_wheel.py dist/*.whl
PKG_CONFIG=/bin/false "$venv/bin/python" -m pip wheel -q --no-deps dist/*.tar.gz -w target/wheel-from-sdist
"$venv/bin/python" scripts/check_wheel.py --any-tag target/wheel-from-sdist/*.whl
