"""A ``sqlite3`` whose SQLite is linked statically into its extension module
and loaded privately, so no other library can see its symbols: the shape of
python-build-standalone's (as uv installs), with pysqlite3-binary in place of
the standard library's module. Used by tests/test_sqlite_library.py and the
per-version bench."""

from __future__ import annotations

from pathlib import Path


def available() -> bool:
    try:
        import pysqlite3  # noqa: F401
    except ImportError:
        return False
    return True


def shim(where: Path) -> Path:
    """A directory that, first on ``PYTHONPATH``, makes ``import sqlite3`` give
    pysqlite3's module."""
    package = where / "static-sqlite3" / "sqlite3"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "dbapi2.py"):
        (package / name).write_text("from pysqlite3.dbapi2 import *  # noqa: F403\n")
    return package.parent
