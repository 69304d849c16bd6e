"""Rare-type paths of the native codec, kept in Python where speed does not matter.

Each function mirrors the matching branch of upstream's ``_msgpack_default`` /
``_create_msgpack_ext_hook`` so that bytes and results stay compatible.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import pathlib
import re
import sys
from collections import deque
from datetime import date, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.event_hooks import emit_serde_event
from langgraph.checkpoint.serde.types import SendProtocol

from fastcheckpoint.errors import DeserializationError, DisallowedTypeError, SerializationError

logger = logging.getLogger("fastcheckpoint.serde")

EXT_CONSTRUCTOR_SINGLE_ARG = 0
EXT_CONSTRUCTOR_POS_ARGS = 1
EXT_CONSTRUCTOR_KW_ARGS = 2
EXT_PYDANTIC_V1 = 4
EXT_NUMPY_ARRAY = 6

_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Address,
    ipaddress.IPv6Interface,
    ipaddress.IPv6Network,
)
# Value types a permissive decoder may construct without an explicit allowlist.
_VALUE_BASES = (date, time, timedelta, tzinfo, UUID, Decimal, set, frozenset, deque, pathlib.PurePath, *_IP_TYPES)
# Once per type and kind, in upstream's own sets when it has them: a type is
# warned about once whichever serializer meets it, and code that resets
# upstream's memory resets ours.
try:
    from langgraph.checkpoint.serde.jsonplus import (
        _warned_blocked_types,
        _warned_unreconstructable_types,
        _warned_unregistered_types,
    )
except ImportError:  # an upstream without them
    _warned_blocked_types, _warned_unreconstructable_types, _warned_unregistered_types = set(), set(), set()
_WARNED = {
    "blocked": _warned_blocked_types,
    "unreconstructable": _warned_unreconstructable_types,
    "unregistered": _warned_unregistered_types,
}
_MAX_WARNED_TYPES = 1000


def _warn_once(kind: str, module: str, name: str, msg: str, *args: Any) -> None:
    seen = _WARNED[kind]
    if (module, name) in seen or len(seen) >= _MAX_WARNED_TYPES:
        return
    seen.add((module, name))
    logger.warning(msg, *args)


def _head(obj: Any) -> tuple[str, str]:
    return obj.__class__.__module__, obj.__class__.__name__


def default(obj: Any) -> tuple[int | None, Any]:
    """(ext code, payload) for a rare type, or (None, replacement value)."""
    if hasattr(obj, "get_secret_value") and callable(obj.get_secret_value):
        return EXT_CONSTRUCTOR_SINGLE_ARG, (*_head(obj), obj.get_secret_value())
    if hasattr(obj, "dict") and callable(obj.dict):  # pydantic v1
        return EXT_PYDANTIC_V1, (*_head(obj), obj.dict())
    if hasattr(obj, "_asdict") and callable(obj._asdict):
        return EXT_CONSTRUCTOR_KW_ARGS, (*_head(obj), obj._asdict())
    if isinstance(obj, pathlib.Path):
        return EXT_CONSTRUCTOR_POS_ARGS, (*_head(obj), obj.parts)
    if isinstance(obj, re.Pattern):
        return EXT_CONSTRUCTOR_POS_ARGS, ("re", "compile", (obj.pattern, obj.flags))
    if isinstance(obj, _IP_TYPES):
        return EXT_CONSTRUCTOR_SINGLE_ARG, (*_head(obj), str(obj))
    if isinstance(obj, ZoneInfo):
        return EXT_CONSTRUCTOR_SINGLE_ARG, (*_head(obj), obj.key)
    if isinstance(obj, SendProtocol):
        args: tuple[Any, ...] = (obj.node, obj.arg)
        if (timeout := getattr(obj, "timeout", None)) is not None:
            args = (*args, timeout)
        return EXT_CONSTRUCTOR_POS_ARGS, (*_head(obj), args)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return EXT_CONSTRUCTOR_KW_ARGS, (*_head(obj), fields)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise SerializationError(
                "numpy arrays of Python objects cannot be stored (LangGraph's format "
                "would write raw pointers); convert the array to a list first"
            )
        order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
        buf = obj.tobytes(order="A")
        return EXT_NUMPY_ARRAY, (obj.dtype.str, obj.shape, order, buf)
    if isinstance(obj, BaseException):
        return None, repr(obj)
    raise SerializationError(f"Object of type {obj.__class__.__name__} is not serializable")


def pydantic_plain_fields(cls: type) -> tuple[list[str], bool] | None:
    """Field names when ``model_dump()`` of ``cls`` is exactly its field values.

    Returns None (call ``model_dump()``) for root models, computed fields,
    excluded fields and custom serializers.
    """
    fields = getattr(cls, "__pydantic_fields__", None)
    if not isinstance(fields, dict) or getattr(cls, "__pydantic_root_model__", False):
        return None
    if getattr(cls, "__pydantic_computed_fields__", None):
        return None
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is None or decorators.field_serializers or decorators.model_serializers:
        return None
    for info in fields.values():
        if info.exclude or getattr(info, "exclude_if", None) is not None:
            return None
        if any("Serializer" in type(m).__name__ for m in info.metadata):
            return None
    config = getattr(cls, "model_config", {}) or {}
    return list(fields), config.get("extra") == "allow"


def pydantic_extra_descriptor() -> Any:
    """``BaseModel``'s own ``__pydantic_extra__`` slot descriptor (or None)."""
    from pydantic import BaseModel

    return BaseModel.__dict__.get("__pydantic_extra__")


def traceable_model(cls: type) -> bool:
    """True when reading ``__dict__`` and ``__pydantic_extra__`` of an instance runs
    no Python code: pydantic's own slots, no ``__getattribute__`` override. Then an
    identity trace of those attributes proves an instance unchanged (see trace.rs)."""
    import inspect

    from pydantic import BaseModel

    own = pydantic_extra_descriptor()
    return (
        issubclass(cls, BaseModel)
        and cls.__getattribute__ is object.__getattribute__
        and own is not None
        and inspect.getattr_static(cls, "__pydantic_extra__", None) is own
        and type(inspect.getattr_static(cls, "__dict__", None)).__name__ == "getset_descriptor"
    )


def fast_model(cls: Any, module: str, name: str) -> tuple[list[str], bool] | None:
    """Fields of a LangChain message class that may skip re-validation on load.

    Only LangGraph's safe LangChain message types qualify, and only without
    post-init hooks or private attributes: their stored kwargs are model_dump()
    of a valid instance, so building them as model_construct() does yields the
    same object as validating again, several times faster.
    """
    if (module, name) not in SAFE_MSGPACK_TYPES or not module.startswith("langchain_core.messages"):
        return None
    if getattr(cls, "__pydantic_post_init__", None) is not None or getattr(cls, "__private_attributes__", None):
        return None
    if getattr(cls, "__pydantic_root_model__", False) or not isinstance(
        getattr(cls, "__pydantic_fields__", None), dict
    ):
        return None
    config = getattr(cls, "model_config", {}) or {}
    return list(cls.__pydantic_fields__), config.get("extra") == "allow"


def dataclass_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def is_data_type(cls: Any) -> bool:
    """True for classes whose construction only builds data (no arbitrary call)."""
    if not isinstance(cls, type):
        return False
    if issubclass(cls, BaseException):
        return False
    if dataclasses.is_dataclass(cls) or issubclass(cls, (enum.Enum, *_VALUE_BASES)):
        return True
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return True
    for mod in ("pydantic", "pydantic.v1"):
        m = sys.modules.get(mod)
        if m is not None and issubclass(cls, m.BaseModel):
            return True
    return cls.__module__.split(".")[0] == "pydantic" and hasattr(cls, "get_secret_value")


def on_blocked(module: str, name: str, reason: str) -> None:
    """A refused type: upstream's event and (once per type) warning."""
    emit_serde_event({"kind": "msgpack_blocked", "module": module, "name": name})
    _warn_once(
        "blocked",
        module,
        name,
        "Blocked deserialization of %s.%s - %s. Add to allowed_msgpack_modules to allow: [(%r, %r)]",
        module,
        name,
        reason,
        module,
        name,
    )


def on_method_blocked(module: str, name: str, method: str) -> None:
    """A refused method call: upstream's event and warning."""
    emit_serde_event({"kind": "msgpack_method_blocked", "module": module, "name": name, "method": method})
    logger.warning(
        "Blocked deserialization of method call %s.%s.%s - not in allowed methods set.", module, name, method
    )


def on_unregistered(module: str, name: str) -> None:
    emit_serde_event({"kind": "msgpack_unregistered_allowed", "module": module, "name": name})
    _warn_once(
        "unregistered",
        module,
        name,
        "Deserializing unregistered type %s.%s from checkpoint. Set "
        "LANGGRAPH_STRICT_MSGPACK=true to block it, or add it to "
        "allowed_msgpack_modules: [(%r, %r)]",
        module,
        name,
        module,
        name,
    )


def reconstruction_fallback(module: str, name: str, payload: Any, exc: BaseException) -> Any:
    """As upstream: a class that cannot be rebuilt yields its serialized data."""
    _warn_once(
        "unreconstructable",
        module,
        name,
        "Could not reconstruct %s.%s from checkpoint (%s); returning its serialized data instead.",
        module,
        name,
        type(exc).__name__,
    )
    return payload


def send_from_args(args: Any) -> Any:
    from langgraph.types import Send

    if len(args) == 2:
        return Send(*args)
    return Send(args[0], args[1], timeout=args[2])


def numpy_from(meta: Any) -> Any:
    import numpy as np

    try:
        dtype_str, shape, order, buf = meta
        dtype = np.dtype(dtype_str)
    except (TypeError, ValueError) as e:
        raise DeserializationError(f"malformed numpy array payload: {e}") from e
    if dtype.hasobject:
        raise DisallowedTypeError("refused to load a numpy array of Python objects")
    try:
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)
    except (TypeError, ValueError) as e:
        raise DeserializationError(f"malformed numpy array payload: {e}") from e
