"""fastcheckpoint: drop-in LangGraph checkpoint savers with a Rust core.

Change one import::

    # from langgraph.checkpoint.sqlite import SqliteSaver
    from fastcheckpoint.sqlite import SqliteSaver
"""

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
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver

__version__ = "0.1.0"

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
