#!/usr/bin/env bash
# Installs dist/'s wheel with its test extras into .venv-$1, a venv of the
# newest installed CPython $1 (pyenv's, else python$1 on PATH), or of the
# distribution's own /usr/bin/python3 for "system". A missing interpreter or
# wheel is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"
shopt -s nullglob
wheels=(dist/*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "expected one wheel in dist/, found ${#wheels[@]}: run make wheel" >&2; exit 1; }
wheel="${wheels[0]}"
python=""
if [ "$version" = system ]; then
  python=/usr/bin/python3
  bash scripts/system-deps.sh
elif command -v pyenv >/dev/null; then
  for p in "$(pyenv root)"/versions/"$version".*/bin/python"$version"; do python="$p"; done
fi
[ -n "$python" ] || python="$(command -v "python$version" || true)"
[ -n "$python" ] || { echo "CPython $version not found (pyenv versions / PATH)" >&2; exit 1; }
venv=".venv-$version"
echo "== CPython $version ($python): $wheel" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[test]"
# The same version number may already be installed from an earlier build.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
