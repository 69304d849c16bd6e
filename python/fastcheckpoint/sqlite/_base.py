"""The SQLite side of the shared saver (``fastcheckpoint._saver``), behind
``SqliteSaver`` and ``AsyncSqliteSaver``.

Every statement runs in the store (``_native.SqliteStore``, or its Python twin
where only ``sqlite3`` reaches the SQLite library: ``_library``): one ``BEGIN
IMMEDIATE`` transaction per put, per put_writes, per delete; reads in one
snapshot. The savers differ only in how they learn the database path from the
connection they are given and in how ``setup`` is awaited.

The async methods run the sync ones on worker threads (the store releases the
GIL), except ``aput`` / ``aput_writes``: they encode on the event loop, as
upstream's AsyncSqliteSaver does, and their statements join a group commit
(``_group.GroupCommit``) run by the store's commit thread (``_Commits``):
each caller's statements in a savepoint of their own, so a failing one is
undone alone.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint._copy import migrate_upstream_op
from fastcheckpoint._group import GroupCommit, on_loop
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint.errors import ConfigError, MissingRowError
from fastcheckpoint.sqlite import _schema as sql
from fastcheckpoint.sqlite._library import Store, open_store
from fastcheckpoint.sqlite._upstream import UpstreamSqlite


class SqliteSaverBase(StoreSaver):
    """Shared logic; subclasses provide ``setup`` / ``_ready`` for their connection type."""

    sql = sql
    is_setup: bool
    _store_seals = True

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
        self._store: Store | None = None
        self._setup_lock = threading.Lock()
        # One group commit per event loop the async methods are awaited on.
        self._groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()

    def _open(self, path: str) -> None:
        """Opens the store at ``path``, applies pending migrations and takes
        over an upstream-written database (once)."""
        with self._setup_lock:
            if self.is_setup:
                return
            store = open_store(path, synchronous=self.synchronous, busy_timeout=self.busy_timeout)
            try:
                migrate_schema(store)
                if self._take_over:
                    self._run(migrate_upstream_op(self, UpstreamSqlite), store)
            except BaseException:
                store.close()
                raise
            self._store = store
            self.is_setup = True

    def _ready(self) -> Store:
        """The store, set up on first use (how depends on the connection type)."""
        raise NotImplementedError("subclasses open the store")

    async def _astore(self) -> GroupCommit:
        await self._aready()
        assert self._store is not None
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None or group.owner is not self._store:
            store = self._store
            try:
                commits: Any = _Commits(store, loop)
                depth = 2
            except NotImplementedError:  # a loop that cannot watch sockets (Windows' proactor)
                commits, depth = (lambda batches: asyncio.to_thread(store.write_group, batches)), 1
            group = self._groups[loop] = GroupCommit(
                store, lambda queries: asyncio.to_thread(store.read, list(queries)), commits, depth
            )
        return group

    def close(self) -> None:
        """Closes the saver's own connection (the one passed in stays the caller's)."""
        if self._store is not None:
            self._store.close()
        for loop, group in list(self._groups.items()):
            if isinstance(group.commit, _Commits) and not loop.is_closed():
                if on_loop(loop):
                    group.commit.close()
                else:
                    loop.call_soon_threadsafe(group.commit.close)


class _Commits:
    """Group commits on the store's commit thread (``CommitQueue``), answered
    on the event loop when the thread signals its socket.

    The thread never takes the GIL, so the loop keeps encoding the next
    callers' puts while a group commits; ``GroupCommit`` keeps two groups in
    flight to use that."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        if not hasattr(store, "commit_queue"):
            raise NotImplementedError("no commit thread for this store (platform or route)")
        self.queue = store.commit_queue()
        self.loop = loop
        self.waiting: dict[int, asyncio.Future[list[Any]]] = {}
        try:
            loop.add_reader(self.queue.fileno(), self._answer)
        except NotImplementedError:
            self.queue.close()
            raise

    def __call__(self, batches: list[list[Any]]) -> asyncio.Future[list[Any]]:
        done = self.loop.create_future()
        self.waiting[self.queue.submit(batches)] = done
        return done

    def _answer(self) -> None:
        for ticket, answer, failed in self.queue.completions():
            done = self.waiting.pop(ticket)
            if done.done():
                continue
            if failed:
                done.set_exception(answer)
            else:
                done.set_result(answer)

    def close(self) -> None:
        """Stops watching the socket once every queued group is answered."""
        self.loop.remove_reader(self.queue.fileno())
        self.queue.close()
        self._answer()


def migrate_schema(store: Store) -> None:
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
