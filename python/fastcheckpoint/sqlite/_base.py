"""The SQLite side of the shared saver (``fastcheckpoint._saver``), behind
``SqliteSaver`` and ``AsyncSqliteSaver``.

Every statement runs in the Rust store (``_native.SqliteStore``): one ``BEGIN
IMMEDIATE`` transaction per put, per put_writes, per delete; reads in one
snapshot. The savers differ only in how they learn the database path from the
connection they are given and in how ``setup`` is awaited.

The async methods run the sync ones on worker threads (the store releases the
GIL), except ``aput`` / ``aput_writes``: they encode on the event loop, as
upstream's AsyncSqliteSaver does, and their statements join a group commit
(``_saver.GroupCommit``) run by ``SqliteStore.write_group`` on a worker
thread: each caller's statements in a savepoint of their own, so a failing
one is undone alone.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint._native import SqliteStore
from fastcheckpoint._saver import GroupCommit, StoreSaver
from fastcheckpoint.errors import ConfigError, MissingRowError
from fastcheckpoint.sqlite import _schema as sql
from fastcheckpoint.sqlite._legacy import migrate_upstream


class SqliteSaverBase(StoreSaver):
    """Shared logic; subclasses provide ``setup`` / ``_ready`` for their connection type."""

    sql = sql
    is_setup: bool

    def __init__(
        self,
        conn: Any,
        *,
        serde: SerializerProtocol | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        ttl: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(serde=serde, ttl=ttl)
        self.conn = conn
        if str(synchronous).upper() not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.synchronous = str(synchronous).upper()
        self.busy_timeout = float(busy_timeout)
        self.is_setup = False
        self._store: SqliteStore | None = None
        self._setup_lock = threading.Lock()
        # One group commit per event loop the async methods are awaited on.
        self._groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()

    def _open(self, path: str) -> None:
        """Opens the store at ``path``, applies pending migrations and takes
        over an upstream-written database (once)."""
        with self._setup_lock:
            if self.is_setup:
                return
            store = SqliteStore(path, synchronous=self.synchronous, busy_timeout=self.busy_timeout)
            try:
                migrate_schema(store)
                if self._take_over:
                    migrate_upstream(self, store)
            except BaseException:
                store.close()
                raise
            self._store = store
            self.is_setup = True

    def _ready(self) -> SqliteStore:
        """The store, set up on first use (how depends on the connection type)."""
        raise NotImplementedError("subclasses open the store")

    async def _astore(self) -> GroupCommit:
        await self._aready()
        assert self._store is not None
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None or group.owner is not self._store:
            store = self._store
            group = self._groups[loop] = GroupCommit(
                store,
                lambda queries: asyncio.to_thread(store.read, list(queries)),
                lambda batches: asyncio.to_thread(store.write_group, batches),
            )
        return group

    def close(self) -> None:
        """Closes the saver's own connection (the one passed in stays the caller's)."""
        if self._store is not None:
            self._store.close()


def migrate_schema(store: SqliteStore) -> None:
    """Applies pending migrations, each in its own transaction; safe when
    several processes open the same file at once."""
    store.execute_script(sql.CREATE_VERSION_TABLE)
    for _ in range(10 * len(sql.MIGRATIONS) + 10):
        ((version,),) = store.read([(sql.GET_VERSION, ())])[0]
        version = version or 0
        if version >= sql.SCHEMA_VERSION:
            if version > sql.SCHEMA_VERSION:
                raise ConfigError(
                    f"this database has fastcheckpoint schema version {version}, newer than this "
                    f"release understands ({sql.SCHEMA_VERSION}): upgrade fastcheckpoint"
                )
            return
        step = [(sql.CHECK_VERSION, (version,), True)]
        step += [(stmt, (), False) for stmt in sql.MIGRATIONS[version]]
        step.append((sql.SET_VERSION, (version + 1,), False))
        try:
            store.write(step)
        except MissingRowError:
            continue  # another process applied this step first
    raise ConfigError("could not bring the fastcheckpoint schema up to date")
