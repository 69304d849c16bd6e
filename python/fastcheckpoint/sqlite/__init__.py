"""``SqliteSaver``: drop-in for ``langgraph.checkpoint.sqlite.SqliteSaver``.

Same constructor (a ``sqlite3.Connection``), ``from_conn_string`` (":memory:"
included) and behaviour, but the statements run in Rust on the saver's own
connection to the same file (the system SQLite library, the one Python's
``sqlite3`` uses, so their locks cooperate), in WAL mode with one ``BEGIN
IMMEDIATE`` transaction per put, storing only changed channels and only the new
elements of growing lists. The async methods work too (on a worker thread).

Deliberate differences, also in the README:

* Rows live in ``fc_``-prefixed tables; an upstream-written file is taken over
  once (its checkpoints and writes copied into ours, the originals left in
  place) the first time a saver opens it.
* With an in-memory connection (``":memory:"``), the saver keeps its own
  private in-memory database: its rows are not visible through ``conn``.
* ``synchronous`` ("NORMAL": survives a process crash; "FULL": also power
  loss) and ``busy_timeout`` (seconds to wait for other writers) are extra
  keyword arguments.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint.sqlite._base import SqliteSaverBase
from fastcheckpoint.sqlite._library import Store


def database_path(rows: list[tuple[int, str, str]]) -> str:
    """The main database's file from ``PRAGMA database_list`` rows (":memory:" if none)."""
    for _, name, file in rows:
        if name == "main":
            return file or ":memory:"
    return ":memory:"


class SqliteSaver(SqliteSaverBase):
    """A SQLite checkpoint saver whose encoding, deltas and writes run in Rust."""

    conn: sqlite3.Connection

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        serde: SerializerProtocol | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        ttl: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(conn, serde=serde, synchronous=synchronous, busy_timeout=busy_timeout, ttl=ttl)
        self.lock = threading.Lock()
        # Read now, on the thread that made the connection (it may be bound to it).
        self._path = database_path(conn.execute("PRAGMA database_list").fetchall())

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        ttl: Mapping[str, Any] | None = None,
    ) -> Iterator[SqliteSaver]:
        """A saver on ``conn_string`` (a path, a ``file:`` URI or ":memory:"), closed on exit."""
        with closing(sqlite3.connect(conn_string, check_same_thread=False)) as conn:
            saver = cls(conn, synchronous=synchronous, busy_timeout=busy_timeout, ttl=ttl)
            try:
                yield saver
            finally:
                saver.close()

    def setup(self) -> None:
        """Creates or migrates the tables; called automatically on first use."""
        if not self.is_setup:
            self._open(self._path)

    def _ready(self) -> Store:
        if not self.is_setup:
            self.setup()
        assert self._store is not None
        return self._store


__all__ = ["SqliteSaver"]
