"""Opening what the command is pointed at: a SQLite path or a Postgres URI,
holding our tables, upstream LangGraph's, or something else."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from typing import Any

from fastcheckpoint._copy import Source
from fastcheckpoint._ops import Op, Read, T
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint.encryption import KEY_ENV, AesCipher
from fastcheckpoint.errors import CheckpointError, StorageError

_PG_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class CliError(Exception):
    """A problem the user can fix (wrong path, unknown thread, ...): printed, exit status 2."""


def cli_serde() -> Any:
    """The serializer the commands read and write with: encrypted with the key
    in ``LANGGRAPH_AES_KEY`` when it is set (as upstream's
    ``from_pycryptodome_aes`` reads it), else ours."""
    if not os.environ.get(KEY_ENV):
        return None
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    try:
        return EncryptedSerializer(AesCipher.from_env())
    except CheckpointError as e:
        raise CliError(f"{KEY_ENV}: {e}") from e


def is_postgres(target: str) -> bool:
    return target.startswith(_PG_SCHEMES)


def _tables_op(saver: StoreSaver) -> Op[set[str]]:
    (rows,) = yield Read([(saver.sql.TABLES, ())])
    return {r[0] for r in rows}


class Database:
    """One database: our saver on it (set up without taking upstream tables
    over), what it holds (``kind``), and how to run operations on it."""

    def __init__(self, target: str, *, create: bool = False, prepare_threshold: int | None = None) -> None:
        self.target = target
        self.pg = is_postgres(target)
        self.saver: StoreSaver
        if self.pg:
            self._open_postgres(target, prepare_threshold)
        else:
            self._open_sqlite(target, create)
        self.saver._take_over = False
        try:
            tables = self.run(_tables_op(self.saver), setup=False)
        except CheckpointError as e:
            self.close()
            raise CliError(f"{target}: {e}") from e
        self.kind = "fastcheckpoint" if "fc_schema" in tables else "upstream" if "checkpoints" in tables else "empty"

    def _open_sqlite(self, path: str, create: bool) -> None:
        from fastcheckpoint.sqlite import SqliteSaver

        if os.path.isdir(path):
            raise CliError(f"{path}: is a directory, not a SQLite database file")
        if not os.path.exists(path):
            if not create:
                raise CliError(f"{path}: no such file (give a SQLite file or a postgresql:// URI)")
        else:
            with open(path, "rb") as f:
                head = f.read(16)
            if head and head != _SQLITE_MAGIC:
                raise CliError(f"{path}: not a SQLite database")
        if os.path.exists(path):
            # Inspecting never writes: this connection is read-only (our saver
            # opens its own, read-write, when a command needs it).
            uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
            self.conn: Any = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.conn = sqlite3.connect(path, check_same_thread=False)
        self.saver = SqliteSaver(self.conn, serde=cli_serde())

    def _open_postgres(self, uri: str, prepare_threshold: int | None) -> None:
        try:
            import psycopg

            from fastcheckpoint.postgres import PostgresSaver
            from fastcheckpoint.postgres._store import connection_kwargs
        except ImportError as e:  # pragma: no cover - depends on the install
            raise CliError("Postgres needs psycopg: pip install 'fastcheckpoint[postgres]'") from e
        try:
            self.conn = psycopg.Connection.connect(uri, **connection_kwargs(prepare_threshold))
        except psycopg.Error as e:
            raise CliError(f"cannot connect to {_redact(uri)}: {str(e).strip()}") from e
        self.saver = PostgresSaver(self.conn, serde=cli_serde())

    @property
    def store(self) -> Any:
        """A store to read with, without setting anything up."""
        return self.saver._store() if self.pg else _Sqlite3Reader(self.conn)  # type: ignore[attr-defined]

    def run(self, op: Op[T], *, setup: bool = True) -> T:
        """Runs an operation on this database; with ``setup``, our schema is
        created or brought up to date first (as a saver opening it would)."""
        return self.saver._run(op, self.saver._ready() if setup else self.store)

    def ours(self) -> StoreSaver:
        """The saver, after checking the database holds our tables."""
        if self.kind == "upstream":
            raise CliError(
                f"{self.name}: holds upstream LangGraph checkpoints, not fastcheckpoint's: "
                f"`fastcheckpoint migrate {self.name} DEST` copies them into a fastcheckpoint database "
                "(a fastcheckpoint saver opening it takes them over too)"
            )
        if self.kind != "fastcheckpoint":
            raise CliError(f"{self.name}: not a fastcheckpoint database (no fastcheckpoint tables in it)")
        self.saver._ready()
        return self.saver

    def source(self) -> tuple[Source, str]:
        """What ``migrate`` reads from this database, and a description."""
        from fastcheckpoint._copy import OurTables

        if self.kind == "fastcheckpoint":
            self.saver._ready()
            return OurTables(self.saver), "fastcheckpoint"
        if self.kind == "upstream":
            if self.pg:
                from fastcheckpoint.postgres._upstream import UpstreamPostgres as Upstream
            else:
                from fastcheckpoint.sqlite._upstream import UpstreamSqlite as Upstream  # type: ignore[assignment]
            found = self.run(Upstream.detect_op(self.saver.serde), setup=False)
            if found is not None:
                return found, "upstream LangGraph"
        raise CliError(f"{self.name}: no checkpoints to migrate (neither fastcheckpoint nor LangGraph tables)")

    @property
    def name(self) -> str:
        return _redact(self.target) if self.pg else self.target

    def close(self) -> None:
        if not self.pg:
            self.saver.close()  # type: ignore[attr-defined]
        self.conn.close()


class _Sqlite3Reader:
    """Reads through Python's ``sqlite3`` connection, each call one snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def read(self, queries: Any) -> list[list[tuple[Any, ...]]]:
        try:
            self.conn.execute("BEGIN")
            try:
                return [self.conn.execute(sql, tuple(params)).fetchall() for sql, params in queries]
            finally:
                self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"SQLite error: {e}") from e

    def write(self, statements: Any) -> list[int]:
        raise AssertionError("inspection never writes")


def _redact(uri: str) -> str:
    """A URI without its password, for messages."""
    head, sep, rest = uri.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{head}{sep}{creds}@{host}"
    return uri
