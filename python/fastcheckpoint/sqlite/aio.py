"""``AsyncSqliteSaver``: drop-in for ``langgraph.checkpoint.sqlite.aio.AsyncSqliteSaver``.

Takes the same ``aiosqlite.Connection`` (and ``from_conn_string`` is an async
context manager, as upstream), shares every line of logic with
``SqliteSaver``. Puts encode on the event loop and concurrent ones share
commits (group commit, see ``sqlite._base``); reads and the rest run on worker
threads with the GIL released.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint._group import on_loop
from fastcheckpoint.sqlite import database_path
from fastcheckpoint.sqlite._base import SqliteSaverBase
from fastcheckpoint.sqlite._library import Store


class AsyncSqliteSaver(SqliteSaverBase):
    """An async SQLite checkpoint saver whose encoding, deltas and writes run in Rust."""

    lock: asyncio.Lock

    def __init__(
        self,
        conn: Any,
        *,
        serde: SerializerProtocol | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        ttl: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(conn, serde=serde, synchronous=synchronous, busy_timeout=busy_timeout, ttl=ttl)
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        ttl: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[AsyncSqliteSaver]:
        import aiosqlite

        async with aiosqlite.connect(conn_string) as conn:
            saver = cls(conn, synchronous=synchronous, busy_timeout=busy_timeout, ttl=ttl)
            try:
                yield saver
            finally:
                saver.close()

    async def setup(self) -> None:
        """Creates or migrates the tables; called automatically on first use."""
        if self.is_setup:
            return
        async with self.lock:
            if self.is_setup:
                return
            async with self.conn.execute("PRAGMA database_list") as cur:
                rows = await cur.fetchall()
            await asyncio.to_thread(self._open, database_path([tuple(r) for r in rows]))

    async def _aready(self) -> Store:
        if not self.is_setup:
            await self.setup()
        assert self._store is not None
        return self._store

    def _ready(self) -> Store:
        if not self.is_setup:
            # Setting up needs the event loop (the connection is aiosqlite's).
            if on_loop(self.loop):
                raise asyncio.InvalidStateError(
                    "Synchronous calls to AsyncSqliteSaver before setup are only allowed from a "
                    "different thread. From the main thread, use the async interface (e.g. "
                    "`await checkpointer.aget_tuple(...)` or `await graph.ainvoke(...)`)."
                )
            asyncio.run_coroutine_threadsafe(self.setup(), self.loop).result()
        assert self._store is not None
        return self._store


__all__ = ["AsyncSqliteSaver"]
