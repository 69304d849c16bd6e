"""fastcheckpoint: drop-in LangGraph checkpoint savers with a Rust core.

Change one import::

    # from langgraph.checkpoint.memory import InMemorySaver
    from fastcheckpoint.memory import InMemorySaver
"""

from fastcheckpoint.errors import (
    CheckpointError,
    ConfigError,
    CorruptDataError,
    DeserializationError,
    DisallowedTypeError,
    SerializationError,
    UnknownSerializationTypeError,
)
from fastcheckpoint.memory import InMemorySaver, MemorySaver
from fastcheckpoint.serde import RustSerializer

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "CorruptDataError",
    "DeserializationError",
    "DisallowedTypeError",
    "InMemorySaver",
    "MemorySaver",
    "RustSerializer",
    "SerializationError",
    "UnknownSerializationTypeError",
]
