"""``AsyncPostgresSaver``: drop-in for ``langgraph.checkpoint.postgres.aio.AsyncPostgresSaver``.

Same constructor (a psycopg ``AsyncConnection`` or ``AsyncConnectionPool``,
``pipe=``, ``serde=``), async ``from_conn_string`` and ``setup()``. The
operations are the shared saver's, driven with ``await``: with a pool every
call borrows its own connection, so concurrent graph runs do not queue behind
one lock (upstream #7259), and the puts of concurrent tasks share transactions
(``_group.GroupCommit``). As upstream, the sync methods may be called from
other threads while the event loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
    DeltaChannelHistory,
    SerializerProtocol,
)
from psycopg import AsyncConnection, AsyncPipeline
from psycopg_pool import AsyncConnectionPool

from fastcheckpoint._group import GroupCommit, on_loop
from fastcheckpoint._ops import aiter_op, arun_op
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint.postgres import _schema as sql
from fastcheckpoint.postgres import setup_op
from fastcheckpoint.postgres._store import PREPARE_THRESHOLD, AsyncPgStore, connection_kwargs, pool_arguments


class _FromThread:
    """A sync store over the async one, for the sync methods called from a
    thread other than the event loop's."""

    def __init__(self, store: AsyncPgStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop

    def read(self, queries: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(self.store.read(queries), self.loop).result()

    def write(self, statements: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(self.store.write(statements), self.loop).result()


class AsyncPostgresSaver(StoreSaver):
    """An async PostgreSQL checkpoint saver whose encoding, deltas and compression run in Rust."""

    sql = sql
    lock: asyncio.Lock

    def __init__(
        self,
        conn: AsyncConnection[Any] | AsyncConnectionPool,
        pipe: AsyncPipeline | None = None,
        serde: SerializerProtocol | None = None,
        *,
        ttl: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(serde=serde, ttl=ttl)
        if isinstance(conn, AsyncConnectionPool) and pipe is not None:
            raise ValueError("Pipeline should be used only with a single AsyncConnection, not AsyncConnectionPool.")
        self.conn = conn
        self.pipe = pipe
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.is_setup = False
        self._setup_lock = asyncio.Lock()
        self._group: GroupCommit | None = None  # puts and writes of concurrent tasks share transactions

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        pipeline: bool = False,
        serde: SerializerProtocol | None = None,
        ttl: Mapping[str, Any] | None = None,
        prepare_threshold: int | None = PREPARE_THRESHOLD,
        pool_config: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[AsyncPostgresSaver]:
        """A saver on a new connection (or pool) to ``conn_string``, closed on exit.

        Args:
            conn_string: A libpq URI or key/value string.
            pipeline: Run on one connection in pipeline mode (not with ``pool_config``).
            serde: The serializer (default: ``RustSerializer``).
            ttl: Time-to-live settings (see the README's Configuration).
            prepare_threshold: psycopg's; ``None`` (the default) prepares no
                statements, which transaction-mode poolers need. ``0`` is
                upstream's fixed value, for a direct connection.
            pool_config: Open a ``psycopg_pool.AsyncConnectionPool`` with these
                settings (``min_size``, ``max_size``, ``max_idle``,
                ``max_lifetime``, ``timeout``, ...; ``kwargs`` adds connection
                arguments) instead of one connection (upstream #7304).

        Returns:
            An async context manager yielding the saver.
        """
        if pool_config is not None:
            pool_args = pool_arguments(prepare_threshold, pool_config, pipeline)
            async with AsyncConnectionPool(conn_string, open=False, **pool_args) as pool:
                yield cls(conn=pool, serde=serde, ttl=ttl)
            return
        async with await AsyncConnection.connect(conn_string, **connection_kwargs(prepare_threshold)) as conn:
            if pipeline:
                async with conn.pipeline() as pipe:
                    yield cls(conn=conn, pipe=pipe, serde=serde, ttl=ttl)
            else:
                yield cls(conn=conn, serde=serde, ttl=ttl)

    def _store(self) -> AsyncPgStore:
        return AsyncPgStore(self.conn, self.lock)

    async def setup(self) -> None:
        """Creates or migrates the tables (and takes over upstream's); also run on first use."""
        async with self._setup_lock:
            await arun_op(setup_op(self), self._store())
            self.is_setup = True

    async def _aready(self) -> AsyncPgStore:
        if not self.is_setup:
            await self.setup()
        return self._store()

    async def _astore(self) -> GroupCommit:
        store = await self._aready()
        if self._group is None:
            self._group = GroupCommit(self, store.read, store.write_group)
        return self._group

    def _ready(self) -> _FromThread:
        if on_loop(self.loop):
            raise asyncio.InvalidStateError(
                "Synchronous calls to AsyncPostgresSaver are only allowed from a different thread. From the main "
                "thread, use the async interface. For example, use `checkpointer.alist(...)` or "
                "`await graph.ainvoke(...)`."
            )
        if not self.is_setup:
            asyncio.run_coroutine_threadsafe(self.setup(), self.loop).result()
        return _FromThread(self._store(), self.loop)

    # -- the async API: the shared operations, awaited ----------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await arun_op(self._get_tuple_op(config), await self._aready())

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        store = await self._aready()
        async for page in aiter_op(self._list_op(config, filter, before, limit), store):
            for item in page:
                yield item

    async def adelete_thread(self, thread_id: str) -> None:
        await arun_op(self._delete_thread_op(thread_id), await self._aready())

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await arun_op(self._delete_for_runs_op(run_ids), await self._aready())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await arun_op(self._copy_thread_op(source_thread_id, target_thread_id), await self._aready())

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await arun_op(self._prune_op(thread_ids, strategy), await self._aready())

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await arun_op(self._history_op(config, channels), await self._aready())

    async def asweep(self) -> int:
        return await arun_op(self._sweep_op(), await self._aready())


__all__ = ["AsyncPostgresSaver"]
