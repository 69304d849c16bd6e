"""One SQLite library in the process.

Our store (rusqlite) and Python's ``sqlite3`` module must use the same copy of
SQLite. SQLite tracks the POSIX locks a process holds on a file in a table
private to each copy of the library, and POSIX locks never conflict within one
process: with two copies, a write through one commits while the other holds a
write transaction on the same file, and closing a file in one silently drops
the other's locks. That is how databases get corrupted.

The wheel links the system's ``libsqlite3.so.0`` (the copy CPython's
``_sqlite3`` loads on Debian, Ubuntu, Fedora, pyenv and python.org builds) and
does not vendor one. An interpreter whose ``_sqlite3`` carries SQLite linked in
statically (python-build-standalone, as uv installs) still ends up with two
copies, so before the first file is opened we check the property itself:
Python's ``sqlite3`` holds ``BEGIN IMMEDIATE`` on a scratch file and our store
must be refused the write lock. If it is not, every saver refuses to open
files, with ``TwoSqliteLibrariesError``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
from pathlib import Path

from fastcheckpoint._native import SqliteStore, sqlite_library
from fastcheckpoint.errors import DatabaseLockedError, TwoSqliteLibrariesError

logger = logging.getLogger("fastcheckpoint")
_lock = threading.Lock()
_verdict: str | None = None  # "" once checked and shared; otherwise the refusal


def mapped_sqlite_libraries() -> list[str]:
    """Paths of the SQLite shared libraries mapped into this process (Linux;
    empty elsewhere). For error messages only: the lock probe decides."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if "sqlite" in line.rsplit("/", 1)[-1]})


def _probe(beside: str) -> str:
    """Returns "" when Python's sqlite3 and our store share one SQLite, else
    the reason they do not. The scratch file goes in the temporary directory,
    else beside the database (``beside``) when that one is not writable."""
    for where in (None, os.path.dirname(os.path.abspath(beside))):
        try:
            return _probe_in(where)
        except OSError:
            continue
    logger.warning(
        "fastcheckpoint: could not check that Python's sqlite3 and ours are one SQLite library "
        "(no writable scratch directory); see the README's Install"
    )
    return ""


def _probe_in(where: str | None) -> str:
    with tempfile.TemporaryDirectory(prefix="fastcheckpoint-probe-", dir=where) as scratch:
        path = os.path.join(scratch, "probe.db")
        theirs = sqlite3.connect(path, isolation_level=None)
        try:
            theirs.execute("PRAGMA journal_mode=WAL")
            theirs.execute("CREATE TABLE probe (x)")
            theirs.execute("BEGIN IMMEDIATE")
            ours = SqliteStore(path, busy_timeout=0.0)
            try:
                ours.write([("INSERT INTO probe VALUES (1)", [], False)])
            except DatabaseLockedError:
                return ""
            finally:
                ours.close()
        finally:
            theirs.close()
    version, _ = sqlite_library()
    return (
        "fastcheckpoint's SQLite and Python's sqlite3 module are two different copies of the SQLite library "
        f"(ours {version}, Python's {sqlite3.sqlite_version}; mapped: {', '.join(mapped_sqlite_libraries()) or '?'}). "
        "Two copies in one process do not see each other's file locks and can corrupt a database, so SQLite "
        "savers refuse to open files here. Use a Python whose sqlite3 module links the shared libsqlite3.so.0 "
        "(the system Python, pyenv or python.org builds; not a statically linked build such as "
        "python-build-standalone), or use the Postgres or in-memory savers."
    )


def check_one_sqlite(path: str) -> None:
    """Raises ``TwoSqliteLibrariesError`` if opening ``path`` would put two
    SQLite libraries on one file. Checked once per process; private in-memory
    databases are never shared and skip it."""
    global _verdict
    if path == ":memory:" or path == "" or "mode=memory" in path:
        return
    with _lock:
        if _verdict is None:
            _verdict = _probe(path)
    if _verdict:
        raise TwoSqliteLibrariesError(_verdict)
