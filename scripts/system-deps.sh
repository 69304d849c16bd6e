#!/usr/bin/env bash
# System packages for the tests, never for the build (which needs Rust alone):
# the shared libsqlite3 that core's store tests bind to (in Python the
# store binds to the SQLite of Python's sqlite3), the distribution's own
# python3 with venv (a test interpreter), the PostgreSQL server and the
# PgBouncer the tests and benchmarks start (tests/pgserver.py), and strace,
# which the reliability suite uses to inject I/O errors.
set -euo pipefail
missing=()
compgen -G "/usr/lib/*/libsqlite3.so.0" >/dev/null || missing+=(libsqlite3-0)
/usr/bin/python3 -c "import ensurepip, sqlite3" 2>/dev/null || missing+=(python3 python3-venv)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  missing+=(postgresql)
fi
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
command -v strace >/dev/null || missing+=(strace)
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
