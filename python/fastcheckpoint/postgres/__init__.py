"""``PostgresSaver``: drop-in for ``langgraph.checkpoint.postgres.PostgresSaver``.

Same constructor (a psycopg ``Connection`` or ``ConnectionPool``, ``pipe=``,
``serde=``), ``from_conn_string(uri, *, pipeline=False)`` and ``setup()``;
psycopg does the I/O, Rust the encoding, list deltas and compression. Each
put is one transaction in one round trip; with a pool, independent threads
never wait on each other (no instance-wide lock).

Deliberate differences, also in the README:

* Rows live in ``fc_``-prefixed tables; upstream's ``checkpoints`` /
  ``checkpoint_blobs`` / ``checkpoint_writes`` are taken over by ``setup()``
  (copied into ours once, with a progress bar; the originals left in place).
* ``setup()`` also runs by itself on first use.
* The async methods work too (on a worker thread); upstream refuses them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol
from psycopg import Connection, Pipeline
from psycopg_pool import ConnectionPool

from fastcheckpoint._copy import migrate_upstream_op
from fastcheckpoint._ops import Op, Read, Write
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint.errors import ConfigError
from fastcheckpoint.postgres import _schema as sql
from fastcheckpoint.postgres._store import PREPARE_THRESHOLD, PgStore, connection_kwargs, pool_arguments
from fastcheckpoint.postgres._upstream import UpstreamPostgres


def setup_op(saver: StoreSaver) -> Op[None]:
    """Creates or migrates our tables, then takes over upstream's. Workers
    starting together serialize on an advisory lock; every step is idempotent.
    A database already current, with no upstream tables to take over, is only
    read (a saver opened per request sets up on its first call)."""
    ((ours, upstream),) = (yield Read([(sql.SET_UP, ())]))[0]
    if ours and not (upstream and saver._take_over):
        ((version,),) = (yield Read([(sql.GET_VERSION, ())]))[0]
        if version == sql.SCHEMA_VERSION:
            return
    yield Write([(sql.MIGRATION_LOCK, (), False), (sql.CREATE_VERSION_TABLE, (), False)])
    while True:
        ((version,),) = (yield Read([(sql.GET_VERSION, ())]))[0]
        version = version or 0
        if version > sql.SCHEMA_VERSION:
            raise ConfigError(
                f"this database has fastcheckpoint schema version {version}, newer than this "
                f"release understands ({sql.SCHEMA_VERSION}): upgrade fastcheckpoint"
            )
        if version == sql.SCHEMA_VERSION:
            break
        step = [(sql.MIGRATION_LOCK, (), False)]
        step += [(stmt, (), False) for stmt in sql.MIGRATIONS[version]]
        step.append((sql.SET_VERSION, (version + 1,), False))
        yield Write(step)
    if saver._take_over:
        yield from migrate_upstream_op(saver, UpstreamPostgres)


class PostgresSaver(StoreSaver):
    """A PostgreSQL checkpoint saver whose encoding, deltas and compression run in Rust."""

    sql = sql
    lock: threading.Lock

    def __init__(
        self,
        conn: Connection[Any] | ConnectionPool,
        pipe: Pipeline | None = None,
        serde: SerializerProtocol | None = None,
        *,
        ttl: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(serde=serde, ttl=ttl)
        if isinstance(conn, ConnectionPool) and pipe is not None:
            raise ValueError("Pipeline should be used only with a single Connection, not ConnectionPool.")
        self.conn = conn
        # Our statements run in pipeline mode whether or not a pipeline is set
        # (a pipe set here or later is honoured: its connection stays in it).
        self.pipe = pipe
        self.lock = threading.Lock()
        self.is_setup = False
        self._setup_lock = threading.Lock()

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        pipeline: bool = False,
        ttl: Mapping[str, Any] | None = None,
        prepare_threshold: int | None = PREPARE_THRESHOLD,
        pool_config: Mapping[str, Any] | None = None,
    ) -> Iterator[PostgresSaver]:
        """A saver on a new connection (or pool) to ``conn_string``, closed on exit.

        Args:
            conn_string: A libpq URI or key/value string.
            pipeline: Run on one connection in pipeline mode (not with ``pool_config``).
            ttl: Time-to-live settings (see the README's Configuration).
            prepare_threshold: psycopg's; ``None`` (the default) prepares no
                statements, which transaction-mode poolers need. ``0`` is
                upstream's fixed value, for a direct connection.
            pool_config: Open a ``psycopg_pool.ConnectionPool`` with these
                settings (``min_size``, ``max_size``, ``max_idle``,
                ``max_lifetime``, ``timeout``, ...; ``kwargs`` adds connection
                arguments) instead of one connection: threads then never wait
                on each other.

        Returns:
            A context manager yielding the saver.
        """
        if pool_config is not None:
            pool_args = pool_arguments(prepare_threshold, pool_config, pipeline)
            with ConnectionPool(conn_string, open=True, **pool_args) as pool:
                yield cls(pool, ttl=ttl)
            return
        with Connection.connect(conn_string, **connection_kwargs(prepare_threshold)) as conn:
            if pipeline:
                with conn.pipeline() as pipe:
                    yield cls(conn, pipe, ttl=ttl)
            else:
                yield cls(conn, ttl=ttl)

    def _store(self) -> PgStore:
        return PgStore(self.conn, self.lock)

    def setup(self) -> None:
        """Creates or migrates the tables (and takes over upstream's); also run on first use."""
        with self._setup_lock:
            self._run(setup_op(self), self._store())
            self.is_setup = True

    def _ready(self) -> PgStore:
        if not self.is_setup:
            self.setup()
        return self._store()


__all__ = ["PostgresSaver"]
