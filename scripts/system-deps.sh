#!/usr/bin/env bash
# System libraries the build links: the SQLite development files (rusqlite links
# the system libsqlite3, the same copy Python's sqlite3 module loads).
set -euo pipefail
if [ -f /usr/include/sqlite3.h ] && compgen -G "/usr/lib/*/libsqlite3.so" >/dev/null; then
  exit 0
fi
echo "installing libsqlite3-dev (needed to link against the system SQLite)" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libsqlite3-dev >/dev/null
