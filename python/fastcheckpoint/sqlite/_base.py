"""The SQLite side of the shared saver (``fastcheckpoint._saver``), behind
``SqliteSaver`` and ``AsyncSqliteSaver``.

Every statement runs in the Rust store (``_native.SqliteStore``): one ``BEGIN
IMMEDIATE`` transaction per put, per put_writes, per delete; reads in one
snapshot. The savers differ only in how they learn the database path from the
connection they are given and in how ``setup`` is awaited.

The async methods run the sync ones on worker threads (the store releases the
GIL), except ``aput`` / ``aput_writes``: they encode on the event loop, as
upstream's AsyncSqliteSaver does, and their statements join a group commit.
Writes that arrive while a transaction is running on the worker thread are
gathered and committed together by the next one (each caller's statements in
a savepoint of their own, so a failing one is undone alone). A caller returns
once the transaction holding its statements has committed: the same
guarantee, for one lock, one commit and one write of each page per group
instead of per call.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint._native import SqliteStore
from fastcheckpoint._saver import Stmt, StoreSaver
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
        if group is None or group.store is not self._store:
            group = self._groups[loop] = GroupCommit(self._store)
        return group

    def close(self) -> None:
        """Closes the saver's own connection (the one passed in stays the caller's)."""
        if self._store is not None:
            self._store.close()


class GroupCommit:
    """The async store of ``aput`` / ``aput_writes`` on one event loop (see the
    module's docstring): reads on a worker thread, writes gathered into groups.
    A group is committed by a task that first lets every caller ready to run
    add its statements (starting each write at once made groups smaller and
    the rate lower: a commit costs more than the encoding it would overlap)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.pending: list[tuple[list[Stmt], asyncio.Future[list[int]]]] = []
        self.flusher: asyncio.Task[None] | None = None  # held: a task nobody holds may be collected

    async def read(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        return await asyncio.to_thread(self.store.read, list(queries))

    async def write(self, statements: Sequence[Stmt]) -> list[int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[int]] = loop.create_future()
        self.pending.append((list(statements), done))
        if self.flusher is None:
            self.flusher = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self.pending:
                group, self.pending = self.pending, []
                try:
                    results = await asyncio.to_thread(self.store.write_group, [batch for batch, _ in group])
                except BaseException as e:  # the transaction as a whole failed: nothing stored
                    results = [e] * len(group)
                    if not isinstance(e, Exception):
                        self._settle(group, results)
                        raise
                self._settle(group, results)
                # Let the callers just answered put their next statements in
                # before the next group is taken, so they share its commit.
                await asyncio.sleep(0)
        finally:
            self.flusher = None

    @staticmethod
    def _settle(group: list[tuple[list[Stmt], asyncio.Future[list[int]]]], results: list[Any]) -> None:
        for (_, done), result in zip(group, results, strict=True):
            if done.done():  # its caller was cancelled (what it wrote is stored all the same)
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            elif isinstance(result, BaseException):  # the flushing task was cancelled or interrupted
                done.cancel()
            else:
                done.set_result(result)


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
