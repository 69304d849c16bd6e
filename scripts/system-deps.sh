#!/usr/bin/env bash
# System packages: the SQLite development files (rusqlite links the system
# libsqlite3, the same copy Python's sqlite3 module loads) and the PostgreSQL
# server and the PgBouncer the tests and benchmarks start (tests/pgserver.py),
# and strace, which the reliability suite uses to inject I/O errors.
set -euo pipefail
missing=()
if ! { [ -f /usr/include/sqlite3.h ] && compgen -G "/usr/lib/*/libsqlite3.so" >/dev/null; }; then
  missing+=(libsqlite3-dev)
fi
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
