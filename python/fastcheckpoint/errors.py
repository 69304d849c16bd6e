"""The exception tree: every error fastcheckpoint raises derives from CheckpointError.

Classes also derive from the builtin exception upstream code expects in the same
situation, so existing ``except TypeError`` / ``except KeyError`` handlers keep working.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """Base class of every fastcheckpoint error."""


class SerializationError(CheckpointError, TypeError):
    """A value cannot be encoded in LangGraph's msgpack format."""


class DeserializationError(CheckpointError, ValueError):
    """Stored bytes are truncated, malformed or otherwise undecodable."""


class CorruptDataError(DeserializationError):
    """A stored blob fails its checksum or its delta chain is incomplete."""


class DecryptionError(DeserializationError):
    """An encrypted body that cannot be read as its row's: no key given opens
    it (a wrong or missing key, a damaged, truncated or tampered body), it was
    encrypted for another row, or it is read by a saver without a cipher."""


class DisallowedTypeError(DeserializationError):
    """A stored blob names a type or callable the security policy refuses."""


class UnknownSerializationTypeError(CheckpointError, NotImplementedError):
    """A stored value carries a type tag no configured serializer understands."""


class ConfigError(CheckpointError, KeyError, ValueError):
    """The RunnableConfig passed to a saver lacks a required key or is malformed."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class StorageError(CheckpointError):
    """The database failed an operation (I/O error, read-only file, constraint...).
    Nothing of the failed call was stored."""


class DatabaseLockedError(StorageError, TimeoutError):
    """Other writers held the database lock for longer than ``busy_timeout``."""


class DiskFullError(StorageError, OSError):
    """The disk (or the database's size limit) is full; nothing of the call was stored."""


class ConnectionLostError(StorageError, ConnectionError):
    """The connection to the database server is gone (server restart, pooler
    timeout); the call was not completed. Pools reconnect by themselves."""


class PreparedStatementError(StorageError):
    """The server does not know a prepared statement the connection relies on,
    or already has one by that name: the mark of a transaction-mode pooler
    (PgBouncer, a cloud SQL pooler) handing the session to another server
    connection. Connect with ``prepare_threshold=None`` (our default)."""


class MissingRowError(StorageError):
    """A row a write depends on vanished (removed concurrently); the write was rolled back."""


class TwoSqliteLibrariesError(CheckpointError, RuntimeError):
    """Python's sqlite3 module and fastcheckpoint use two different copies of
    the SQLite library, which do not see each other's file locks; SQLite
    savers refuse to open files in such a process (see the README's Install)."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConnectionLostError",
    "CorruptDataError",
    "DatabaseLockedError",
    "DecryptionError",
    "DeserializationError",
    "DisallowedTypeError",
    "DiskFullError",
    "MissingRowError",
    "PreparedStatementError",
    "SerializationError",
    "StorageError",
    "TwoSqliteLibrariesError",
    "UnknownSerializationTypeError",
]
