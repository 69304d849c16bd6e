"""The SQLite store over a connection of Python's ``sqlite3`` module: the
``python`` route of ``_library``, for a Python whose SQLite the Rust store
cannot reach (linked statically with hidden symbols, and no extension loading).

Same methods and the same rules as the Rust ``SqliteStore`` (core's
``store.rs``): WAL, ``synchronous``, one ``BEGIN IMMEDIATE`` transaction per
batch with rollback on any failure, waits on contention up to the busy timeout,
savepoints per batch in a group, typed errors. Bodies are still sealed
(checksum, zstd) in Rust, with the GIL released; ``sqlite3`` releases it around
SQLite's own work too. It has no ``commit_queue``: the async savers then run
group commits on a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from fastcheckpoint._native import Body, sqlite_error
from fastcheckpoint.errors import ConfigError, DatabaseLockedError, MissingRowError

T = TypeVar("T")

# Where an error carries no result code (CPython 3.10 has no ``sqlite_errorcode``):
# SQLite's primary result codes, by the messages it gives them.
_CODES_BY_MESSAGE = (
    (5, "database is locked"),  # SQLITE_BUSY
    (6, "database table is locked"),  # SQLITE_LOCKED
    (13, "database or disk is full"),  # SQLITE_FULL
    (11, "malformed"),  # SQLITE_CORRUPT
    (26, "not a database"),  # SQLITE_NOTADB
)


def _typed(e: sqlite3.Error) -> Exception:
    """The exception the Rust store raises for the same SQLite failure
    (``_native.sqlite_error``: one mapping for both stores)."""
    text = str(e)
    code = getattr(e, "sqlite_errorcode", None)
    if code is None:
        code = next((c for c, m in _CODES_BY_MESSAGE if m in text.lower()), 1)  # 1: SQLITE_ERROR
    return sqlite_error(code, text)


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    """One transaction: committed when the block ends, rolled back on any failure."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _param(value: Any) -> Any:
    return value.seal() if isinstance(value, Body) else value


class PythonSqliteStore:
    """``SqliteStore``'s methods over a ``sqlite3`` connection (see the module)."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> None:
        level = str(synchronous).upper()
        if level not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if not (busy_timeout >= 0.0 and busy_timeout != float("inf")):
            raise ConfigError("busy_timeout must be a non-negative number of seconds")
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.Lock()
        try:
            conn = sqlite3.connect(
                path,
                uri=path.startswith("file:"),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise _typed(e) from e
        self._conn: sqlite3.Connection | None = conn
        try:
            # Switching to WAL needs a moment of exclusive access: retried like a write.
            self._retrying(lambda c: c.execute("PRAGMA journal_mode=WAL").fetchall())
            self._retrying(lambda c: c.executescript(f"PRAGMA synchronous={level}; PRAGMA foreign_keys=OFF;"))
        except BaseException:
            conn.close()
            raise

    def _retrying(self, f: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``f`` under the lock, again while SQLite reports contention the
        busy handler did not absorb, up to the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            with self._lock:
                if self._conn is None:
                    raise ConfigError("the saver's database connection is closed")
                try:
                    return f(self._conn)
                except sqlite3.Error as e:
                    error = _typed(e)
                    if not isinstance(error, DatabaseLockedError) or time.monotonic() >= deadline:
                        raise error from e
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    @staticmethod
    def _run(conn: sqlite3.Connection, batch: Sequence[Sequence[Any]]) -> list[int]:
        counts = []
        for i, stmt in enumerate(batch):
            sql, params = stmt[0], stmt[1]
            cur = conn.execute(sql, [_param(p) for p in params])
            n = len(cur.fetchall()) if cur.description is not None else max(cur.rowcount, 0)
            if len(stmt) > 2 and stmt[2] and n == 0:
                raise MissingRowError(f"statement {i} of the batch found no row")
            counts.append(n)
        return counts

    def write(self, batch: list[tuple[Any, ...]]) -> list[int]:
        """Runs ``[(sql, params, require_row), ...]`` in one ``BEGIN IMMEDIATE``
        transaction; returns the rows each statement changed (or returned)."""

        def once(conn: sqlite3.Connection) -> list[int]:
            with _transaction(conn, "BEGIN IMMEDIATE"):
                return self._run(conn, batch)

        return self._retrying(once)

    def write_group(self, batches: list[list[tuple[Any, ...]]]) -> list[Any]:
        """Runs several batches in one transaction, each in a savepoint of its
        own; returns for each its row counts, or the typed error that undid it
        alone. An error of the transaction as a whole is raised."""

        def once(conn: sqlite3.Connection) -> list[Any]:
            out: list[Any] = []
            with _transaction(conn, "BEGIN IMMEDIATE"):
                for batch in batches:
                    conn.execute("SAVEPOINT fc_batch")
                    try:
                        out.append(self._run(conn, batch))
                    except (sqlite3.Error, MissingRowError) as e:
                        error = _typed(e) if isinstance(e, sqlite3.Error) else e
                        # SQLite may have rolled the whole transaction back by itself.
                        if isinstance(error, DatabaseLockedError) or not conn.in_transaction:
                            raise
                        conn.execute("ROLLBACK TO fc_batch")
                        out.append(error)
                    conn.execute("RELEASE fc_batch")
            return out

        return self._retrying(once)

    def read(self, queries: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
        """Runs ``[(sql, params), ...]`` in one read transaction; returns each one's rows."""

        def once(conn: sqlite3.Connection) -> list[list[tuple[Any, ...]]]:
            with _transaction(conn, "BEGIN"):
                return [conn.execute(q[0], [_param(p) for p in q[1]]).fetchall() for q in queries]

        return self._retrying(once)

    def execute_script(self, sql: str) -> None:
        """Runs a multi-statement script (schema set-up, maintenance)."""
        self._retrying(lambda c: c.executescript(sql))

    def close(self) -> None:
        """Closes the connection; later calls raise ``ConfigError``."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
