#!/usr/bin/env bash
# Tests what users install: the wheel in dist/ (scripts/wheel.sh), installed
# into a fresh venv per CPython. The whole suite runs on 3.11; 3.10, 3.12 and
# 3.13 run every suite that touches the interpreter or a database (codec,
# writer traces, SQLite, Postgres, conformance, real graphs). A missing
# interpreter fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
wheels=(dist/*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "expected one wheel in dist/, found ${#wheels[@]}: run make wheel" >&2; exit 1; }
wheel="${wheels[0]}"
subset=(tests/test_codec_compat.py tests/test_codec_security.py tests/test_writer_traces.py tests/test_sqlite.py
        tests/test_conformance.py tests/test_postgres.py tests/test_postgres_conformance.py
        tests/test_graph_features.py tests/test_async_savers.py)

interpreter() {  # the newest installed CPython $1 (pyenv's, else on PATH)
  local found=""
  if command -v pyenv >/dev/null; then
    for p in "$(pyenv root)"/versions/"$1".*/bin/python"$1"; do found="$p"; done
  fi
  [ -n "$found" ] || found="$(command -v "python$1" || true)"
  [ -n "$found" ] || { echo "CPython $1 not found (pyenv versions / PATH)" >&2; return 1; }
  echo "$found"
}

for version in ${FC_PYTHONS:-3.11 3.10 3.12 3.13}; do
  python="$(interpreter "$version")"
  venv=".venv-$version"
  echo "== CPython $version ($python): $wheel" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[test]"
  # The same version number may already be installed from an earlier build.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  if [ "$version" = 3.11 ]; then
    bash scripts/pytest.sh "$venv"
  else
    bash scripts/pytest.sh "$venv" "${subset[@]}"
  fi
done
