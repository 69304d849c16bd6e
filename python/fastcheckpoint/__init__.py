"""fastcheckpoint: drop-in LangGraph checkpoint savers with a Rust core.

Change one import::

    # from langgraph.checkpoint.sqlite import SqliteSaver
    from fastcheckpoint.sqlite import SqliteSaver
"""

from typing import TYPE_CHECKING, Any

from fastcheckpoint.errors import (
    CheckpointError,
    ConfigError,
    CorruptDataError,
    DatabaseLockedError,
    DeserializationError,
    DisallowedTypeError,
    DiskFullError,
    PreparedStatementError,
    SerializationError,
    StorageError,
    TwoSqliteLibrariesError,
    UnknownSerializationTypeError,
)
from fastcheckpoint.memory import InMemorySaver, MemorySaver
from fastcheckpoint.serde import RustSerializer

if TYPE_CHECKING:
    from fastcheckpoint.sqlite import SqliteSaver
    from fastcheckpoint.sqlite.aio import AsyncSqliteSaver

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The SQLite savers import Python's sqlite3 on first use only, so the
    # in-memory saver and the serializer work on a Python without it.
    if name == "SqliteSaver":
        from fastcheckpoint.sqlite import SqliteSaver

        return SqliteSaver
    if name == "AsyncSqliteSaver":
        from fastcheckpoint.sqlite.aio import AsyncSqliteSaver

        return AsyncSqliteSaver
    raise AttributeError(f"module 'fastcheckpoint' has no attribute {name!r}")


__all__ = [
    "AsyncSqliteSaver",
    "CheckpointError",
    "ConfigError",
    "CorruptDataError",
    "DatabaseLockedError",
    "DeserializationError",
    "DisallowedTypeError",
    "DiskFullError",
    "InMemorySaver",
    "MemorySaver",
    "PreparedStatementError",
    "RustSerializer",
    "SerializationError",
    "SqliteSaver",
    "StorageError",
    "TwoSqliteLibrariesError",
    "UnknownSerializationTypeError",
]
