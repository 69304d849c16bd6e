"""One SQLite library in the process, by construction.

Our store and Python's ``sqlite3`` module must use the same copy of SQLite.
SQLite tracks the POSIX locks a process holds on a file in a table private to
each copy of the library, and POSIX locks never conflict within one process:
with two copies, a write through one commits while the other holds a write
transaction on the same file, and closing a file in one silently drops the
other's locks. That is how databases get corrupted.

So the extension links no SQLite at all. Before the first database opens,
``bind`` points the Rust store at the library ``sqlite3`` itself uses, by the
first route that works (``FASTCHECKPOINT_SQLITE_ROUTE`` names one to use alone):

``symbols``
    The SQLite functions of the object that serves ``sqlite3`` (the shared
    ``libsqlite3`` that ``_sqlite3`` links, or an extension module that carries
    its own copy and exports it), looked up where they are already mapped.
    Nothing is loaded and nothing is enabled. pyenv, python.org, conda,
    Homebrew and distribution Pythons; pysqlite3.
``extension``
    Where the library's symbols are hidden (python-build-standalone, as uv
    installs, links SQLite statically into ``_sqlite3``): a private
    connection of ``sqlite3`` loads our own module as an SQLite extension,
    SQLite hands it its function table, and extension loading is switched off
    again and the connection closed at once.
``python``
    Where neither works (a static SQLite whose ``sqlite3`` cannot load
    extensions): the store does its I/O through a ``sqlite3`` connection
    (``_pystore.PythonSqliteStore``); encoding, deltas, compression and
    checksums still happen in Rust.

The lock probe stays as the last guard: Python's ``sqlite3`` holds ``BEGIN
IMMEDIATE`` on a scratch file and our store must be refused the write lock,
or every saver refuses to open files with ``TwoSqliteLibrariesError``.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

from fastcheckpoint import _native
from fastcheckpoint.errors import ConfigError, DatabaseLockedError, TwoSqliteLibrariesError
from fastcheckpoint.sqlite._pystore import PythonSqliteStore

logger = logging.getLogger("fastcheckpoint")

# What ``open_store`` returns: the Rust store, or its twin on the "python" route.
Store = _native.SqliteStore | PythonSqliteStore

ROUTE_ENV = "FASTCHECKPOINT_SQLITE_ROUTE"
ROUTES = ("symbols", "extension", "python")

_lock = threading.Lock()
_route: str | None = None
_verdict: str | None = None  # "" once checked and shared; otherwise the refusal


def mapped_sqlite_libraries() -> list[str]:
    """Paths of the mapped objects whose name mentions SQLite (Linux; empty
    elsewhere). For error messages and tests: the routes and the probe decide."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if "sqlite" in line.rsplit("/", 1)[-1]})


def bind() -> str:
    """Binds the Rust store to the SQLite library Python's ``sqlite3`` uses,
    once per process, and returns the route taken ("symbols", "extension",
    "python", or "linked" for a build that carries its own copy)."""
    global _route
    with _lock:
        if _route is None:
            _route = _bind()
            logger.debug("fastcheckpoint: SQLite %s reached by route %r", sqlite3.sqlite_version, _route)
        return _route


def _bind() -> str:
    bound = _native.sqlite_binding()
    if bound is not None:
        return bound[1]
    wanted = os.environ.get(ROUTE_ENV, "").strip().lower()
    if wanted and wanted not in ROUTES:
        raise ConfigError(f"{ROUTE_ENV} must be one of {', '.join(ROUTES)}, not {wanted!r}")
    reasons = []
    for route in (wanted,) if wanted else ROUTES:
        try:
            if route == "symbols":
                _native.bind_sqlite_symbols(_module_file(), sqlite3.sqlite_version)
            elif route == "extension":
                _load_as_extension()
            else:
                return "python"
        except (ConfigError, sqlite3.Error, AttributeError, OSError) as e:
            reasons.append(f"{route}: {e}")
            continue
        bound = _native.sqlite_binding()
        if bound is not None and bound[0] == sqlite3.sqlite_version:
            return bound[1]
        reasons.append(f"{route}: bound {bound}, while Python's sqlite3 reports {sqlite3.sqlite_version}")
    raise ConfigError(f"{ROUTE_ENV}={wanted} cannot be used here: {'; '.join(reasons)}")


def _module_file() -> str | None:
    """The file of the extension module behind ``sqlite3`` (``_sqlite3``, or
    pysqlite3's when it stands in for it); ``None`` when that module is built
    into the interpreter, whose symbols are the process's own."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if getattr(module, "Connection", None) is sqlite3.Connection and path and path.endswith(suffixes):
            return str(path)
    return None


def _load_as_extension() -> None:
    """Loads our module into a private ``sqlite3`` connection as an SQLite
    extension: its entry point binds the table SQLite hands it. Extension
    loading is on only for that call, on a connection nobody else holds."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        try:
            conn.load_extension(_native.__file__)
        finally:
            conn.enable_load_extension(False)
    finally:
        conn.close()


def open_store(path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> Store:
    """The store for ``path`` on the route ``bind`` chose: the Rust
    ``SqliteStore``, or ``PythonSqliteStore`` (same methods) on the "python" route."""
    if bind() == "python":
        return PythonSqliteStore(path, synchronous=synchronous, busy_timeout=busy_timeout)
    check_one_sqlite(path)
    return _native.SqliteStore(path, synchronous=synchronous, busy_timeout=busy_timeout)


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
            ours = _native.SqliteStore(path, busy_timeout=0.0)
            try:
                ours.write([("INSERT INTO probe VALUES (1)", [], False)])
            except DatabaseLockedError:
                return ""
            finally:
                ours.close()
        finally:
            theirs.close()
    version, route = _native.sqlite_binding() or ("?", "?")
    return (
        "fastcheckpoint's SQLite and Python's sqlite3 module are two different copies of the SQLite library "
        f"(ours {version}, reached by route {route!r}; Python's {sqlite3.sqlite_version}; mapped: "
        f"{', '.join(mapped_sqlite_libraries()) or '?'}). Two copies in one process do not see each other's "
        "file locks and can corrupt a database, so SQLite savers refuse to open files here. A wheel from PyPI "
        "links no SQLite; this build links one of its own. Reinstall the published wheel or sdist, or set "
        f"{ROUTE_ENV}=python to do SQLite I/O through Python's sqlite3 module, and report it."
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
