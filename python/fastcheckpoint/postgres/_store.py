"""Running the shared saver's reads and writes on psycopg (sync and async).

Each ``read`` / ``write`` is one transaction sent as one pipeline: BEGIN, the
statements, COMMIT and a single sync, so a put costs one network round trip.
(psycopg's ``transaction()`` block syncs on entry and on exit as well, which
cost ~0.25 ms per call here; it is used only inside a transaction the caller
opened, where ours becomes a savepoint, or on a connection without
autocommit.) Reads run REPEATABLE READ (the checkpoint row, its blobs and
its writes come from one snapshot) whenever the transaction is ours to open,
and without JIT: the planner cannot see how few rows a delta-chain walk
touches, and its estimate crosses ``jit_above_cost``, so compiling would cost
~15 ms for a read that takes ~0.3 ms.

With a pool every call borrows its own connection (no lock between threads or
tasks); a single connection is used by one call at a time. A connection lost
between calls (server restart, pooler idle timeout) is replaced by the pool
and the call retried: every statement we send is idempotent and a
transaction is all or nothing, so a retry can neither duplicate nor half-store
anything. On a single connection the loss is reported as
``ConnectionLostError``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from fastcheckpoint.errors import (
    ConnectionLostError,
    DatabaseLockedError,
    DiskFullError,
    MissingRowError,
    PreparedStatementError,
    StorageError,
)

# Connections we open use no server-side prepared statements: a
# transaction-mode pooler (PgBouncer, cloud SQL poolers) runs each transaction
# on whichever server connection is free, where a statement prepared on
# another does not exist or one of the same name already does. Safe everywhere
# is the default; on a direct connection ``prepare_threshold=0`` (upstream's
# fixed value) saves the server's parsing and planning, ~15-20% of a put or
# read (docs/benchmarks.md).
PREPARE_THRESHOLD: int | None = None


def connection_kwargs(prepare_threshold: int | None, pool_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of the connections a saver opens itself: autocommit and
    dict rows (as upstream's), ``prepare_threshold``, then a pool config's own
    ``kwargs``."""
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": prepare_threshold, "row_factory": dict_row}
    kwargs.update((pool_config or {}).get("kwargs") or {})
    return kwargs


def pool_arguments(prepare_threshold: int | None, pool_config: Mapping[str, Any], pipeline: bool) -> dict[str, Any]:
    """What ``from_conn_string`` passes a (sync or async) psycopg pool: the
    config's settings and the connections' ``kwargs``."""
    if pipeline:
        raise ValueError("Pipeline should be used only with a single connection, not a connection pool.")
    settings = {k: v for k, v in pool_config.items() if k != "kwargs"}
    return {**settings, "kwargs": connection_kwargs(prepare_threshold, pool_config)}


_POOLER_HINT = (
    " (a transaction-mode pooler such as PgBouncer moves sessions between server connections: "
    "connect with prepare_threshold=None, fastcheckpoint's default)"
)

_PLACEHOLDER = re.compile(r"\?(\d*)")
_READ_ISOLATION = "ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_NO_JIT = ("SET LOCAL jit = off", ())
# Transient conflicts between concurrent transactions: the call is retried.
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_ATTEMPTS = 8


@lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, tuple[int, ...]]:
    """SQLite-style ``?`` / ``?N`` placeholders -> psycopg ``%s`` and the order
    in which to pass the parameters."""
    order: list[int] = []

    def sub(m: re.Match[str]) -> str:
        order.append(int(m.group(1)) - 1 if m.group(1) else len(order))
        return "%s"

    return _PLACEHOLDER.sub(sub, sql.replace("%", "%%")), tuple(order)


def _args(sql: str, params: Sequence[Any]) -> tuple[str, list[Any]]:
    text, order = translate(sql)
    return text, [params[i] for i in order]


class Rows(list):  # type: ignore[type-arg]
    """Parameter rows of one statement, sent with ``executemany``."""


# One row at most: ``INSERT INTO ... VALUES (...)`` with a single tuple.
_SINGLE_ROW_INSERT = re.compile(r"\s*INSERT INTO [^;]*? VALUES \([^()]*\)(?!\s*,)", re.S)


def _runs(batches: list[list[tuple[str, Sequence[Any], bool]]]) -> list[tuple[str, Any, list[tuple[int, int]]]]:
    """A group's statements as ``(sql, params or Rows, [(batch, index), ...])``:
    the rows of each single-row INSERT merged into one run, in their order;
    any other statement runs alone, after the runs gathered before it."""
    runs: list[tuple[str, Any, list[tuple[int, int]]]] = []
    pending: dict[str, tuple[Rows, list[tuple[int, int]]]] = {}

    def flush() -> None:
        runs.extend((q, rows if len(rows) > 1 else rows[0], owners) for q, (rows, owners) in pending.items())
        pending.clear()

    for b, batch in enumerate(batches):
        for i, (sql, params, _) in enumerate(batch):
            if _SINGLE_ROW_INSERT.match(sql):
                rows, owners = pending.setdefault(sql, (Rows(), []))
                rows.append(params)
                owners.append((b, i))
            else:
                flush()
                runs.append((sql, params, [(b, i)]))
    flush()
    return runs


def storage_error(e: psycopg.Error) -> Exception:
    """Our typed error for a psycopg error (the original chained as the cause)."""
    if isinstance(e, pg_errors.ForeignKeyViolation):
        return MissingRowError(f"a row this write depends on is gone: {e}")
    if isinstance(e, pg_errors.DiskFull):
        return DiskFullError(f"PostgreSQL is out of disk space: {e}")
    if isinstance(e, (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)):
        return DatabaseLockedError(f"PostgreSQL statement timed out waiting: {e}")
    # A parameter count that does not match the statement (ProtocolViolation)
    # is what a pooler's mixed-up prepared statements look like too.
    if isinstance(e, (pg_errors.InvalidSqlStatementName, pg_errors.DuplicatePreparedStatement)) or (
        isinstance(e, pg_errors.ProtocolViolation) and "prepared statement" in str(e)
    ):
        return PreparedStatementError(f"PostgreSQL prepared statement error: {e}{_POOLER_HINT}")
    if isinstance(e, psycopg.OperationalError):
        return ConnectionLostError(f"connection to PostgreSQL failed: {e}")
    return StorageError(f"PostgreSQL error: {e}")


def _no_required_rows(statements: Sequence[tuple[str, Sequence[Any], bool]]) -> None:
    # A pipelined transaction cannot look at a row count before COMMIT: on
    # Postgres, constraints (the delta-base foreign key) do what require_row does.
    if any(required for _, _, required in statements):
        raise ValueError("require_row is not supported by the Postgres store")


def _framed(conn: Any, statements: Sequence[Any], read: bool) -> tuple[bool, list[tuple[str, Sequence[Any]]]]:
    """Whether the transaction is ours to frame with BEGIN/COMMIT, and the
    statements to send (the caller's come last, before our COMMIT)."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    sent = [(sql, params) for sql, params, *_ in statements]
    if idle and conn.autocommit:
        head = [(f"BEGIN {_READ_ISOLATION}", ()), _NO_JIT] if read else [("BEGIN", ())]
        return True, [*head, *sent, ("COMMIT", ())]
    head = [(f"SET TRANSACTION {_READ_ISOLATION}", ()), _NO_JIT] if read and idle else []
    return False, [*head, *sent]


def _results(own: bool, cursors: list[Any], n: int) -> list[Any]:
    """The cursors of the caller's statements among those sent."""
    return cursors[len(cursors) - n - own : len(cursors) - own]


def _must_roll_back(conn: Any) -> bool:
    # A failed statement leaves our explicit transaction open and aborted.
    return not conn.closed and conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)


def _lost(e: BaseException, conn: Any) -> bool:
    return isinstance(e, psycopg.OperationalError) and (conn is None or conn.closed or conn.broken)


class PgStore:
    """``read`` / ``write`` on a psycopg ``Connection`` or ``ConnectionPool``."""

    def __init__(self, conn: psycopg.Connection[Any] | ConnectionPool, lock: threading.Lock) -> None:
        self.conn = conn
        self.lock = lock

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if isinstance(self.conn, ConnectionPool):
            with self.conn.connection() as conn:
                yield conn
        else:
            with self.lock:
                yield self.conn

    def _call(self, run: Any, statements: Sequence[Any]) -> Any:
        pooled = isinstance(self.conn, ConnectionPool)
        for attempt in range(_ATTEMPTS):
            conn = None
            try:
                with self._connection() as conn:
                    return run(conn, statements)
            except _RETRYABLE as e:
                if attempt == _ATTEMPTS - 1:
                    raise storage_error(e) from e
            except psycopg.Error as e:
                if pooled and attempt < _ATTEMPTS - 1 and _lost(e, conn):
                    continue  # the pool discards it and hands out another
                raise storage_error(e) from e
        raise AssertionError("unreachable")

    def read(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        return self._call(self._read, queries)

    def write(self, statements: Sequence[tuple[str, Sequence[Any], bool]]) -> list[int]:
        _no_required_rows(statements)
        return self._call(self._write, statements)

    def _read(self, conn: psycopg.Connection[Any], queries: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [cur.fetchall() for cur in self._send(conn, queries, read=True)]

    def _write(self, conn: psycopg.Connection[Any], statements: Sequence[tuple[str, Sequence[Any], bool]]) -> list[int]:
        return [cur.rowcount for cur in self._send(conn, statements, read=False)]

    @staticmethod
    def _send(conn: psycopg.Connection[Any], statements: Sequence[Any], read: bool) -> list[Any]:
        own, sent = _framed(conn, statements, read)
        try:
            with conn.pipeline(), nullcontext() if own else conn.transaction():
                cursors = []
                for sql, params in sent:
                    cur = conn.cursor(binary=True, row_factory=tuple_row)
                    cur.execute(*_args(sql, params))
                    cursors.append(cur)
        except BaseException:
            if own and _must_roll_back(conn):
                conn.rollback()
            raise
        return _results(own, cursors, len(statements))


class AsyncPgStore:
    """The same on a psycopg ``AsyncConnection`` or ``AsyncConnectionPool``."""

    def __init__(self, conn: psycopg.AsyncConnection[Any] | AsyncConnectionPool, lock: asyncio.Lock) -> None:
        self.conn = conn
        self.lock = lock

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if isinstance(self.conn, AsyncConnectionPool):
            async with self.conn.connection() as conn:
                yield conn
        else:
            async with self.lock:
                yield self.conn

    async def _call(self, run: Any, statements: Sequence[Any]) -> Any:
        pooled = isinstance(self.conn, AsyncConnectionPool)
        for attempt in range(_ATTEMPTS):
            conn = None
            try:
                async with self._connection() as conn:
                    return await run(conn, statements)
            except _RETRYABLE as e:
                if attempt == _ATTEMPTS - 1:
                    raise storage_error(e) from e
            except psycopg.Error as e:
                if pooled and attempt < _ATTEMPTS - 1 and _lost(e, conn):
                    continue
                raise storage_error(e) from e
        raise AssertionError("unreachable")

    async def read(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        return await self._call(self._read, queries)

    async def write(self, statements: Sequence[tuple[str, Sequence[Any], bool]]) -> list[int]:
        _no_required_rows(statements)
        return await self._call(self._write, statements)

    async def write_group(self, batches: list[list[tuple[str, Sequence[Any], bool]]]) -> list[Any]:
        """Several callers' batches as one transaction in one pipeline (group
        commit: one round trip and one commit for all; the rows of each
        single-row INSERT go out in one ``executemany``, far less of psycopg's
        work per row than a statement each). For each batch its row counts or
        its error. A failed statement aborts the whole pipeline, so when the
        group fails each batch is run again on its own, for its own result."""
        if len(batches) > 1:
            runs = _runs(batches)
            try:
                totals = await self.write([(sql, params, False) for sql, params, _ in runs])
            except Exception:
                pass
            else:
                out: list[Any] = [[0] * len(batch) for batch in batches]
                for (_, params, owners), total in zip(runs, totals, strict=True):
                    # A merged run reports its total: each row inserted, or (rarely:
                    # a repeated put) zeros, which only make the writer start over.
                    each = total if not isinstance(params, Rows) else int(total == len(owners))
                    for b, i in owners:
                        out[b][i] = each
                return out
        out = []
        for batch in batches:
            try:
                out.append(await self.write(batch))
            except Exception as e:
                out.append(e)
        return out

    async def _read(
        self, conn: psycopg.AsyncConnection[Any], queries: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[Any]:
        return [await cur.fetchall() for cur in await self._send(conn, queries, read=True)]

    async def _write(
        self, conn: psycopg.AsyncConnection[Any], statements: Sequence[tuple[str, Sequence[Any], bool]]
    ) -> list[int]:
        return [cur.rowcount for cur in await self._send(conn, statements, read=False)]

    @staticmethod
    async def _send(conn: psycopg.AsyncConnection[Any], statements: Sequence[Any], read: bool) -> list[Any]:
        own, sent = _framed(conn, statements, read)
        try:
            async with conn.pipeline(), nullcontext() if own else conn.transaction():
                cursors = []
                for sql, params in sent:
                    cur = conn.cursor(binary=True, row_factory=tuple_row)
                    if isinstance(params, Rows):
                        text, order = translate(sql)
                        await cur.executemany(text, [[row[i] for i in order] for row in params])
                    else:
                        await cur.execute(*_args(sql, params))
                    cursors.append(cur)
        except BaseException:
            if own and _must_roll_back(conn):
                await conn.rollback()
            raise
        return _results(own, cursors, len(statements))
