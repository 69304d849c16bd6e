"""``RustSerializer``: a drop-in for LangGraph's ``JsonPlusSerializer``.

It subclasses ``JsonPlusSerializer`` (so ``isinstance`` checks, ``with_allowlist``
and ``EncryptedSerializer`` keep working) and replaces the hot paths: the
``"msgpack"`` type is encoded and decoded by the native codec, byte-compatible
with upstream in both directions. Security differs on purpose: a refused type comes
back as its raw payload as upstream returns it (or a ``DisallowedTypeError`` with
``raise_refused=True``), never called, and even the
permissive default only constructs data types (see README, "Differences").
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterable
from typing import Any, Literal

from langgraph.checkpoint.serde import _msgpack as _lg_msgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _is_safe_json_type

from fastcheckpoint._native import ENVELOPE_TYPE, Codec
from fastcheckpoint.errors import CheckpointError, DisallowedTypeError, UnknownSerializationTypeError

EMPTY_BYTES = b""


def _make_codec(allowed: set[tuple[str, ...]] | Literal[True] | None, raise_refused: bool) -> Codec:
    return Codec(
        permissive=allowed is True,
        allowed=None if allowed is True else allowed,
        safe=_lg_msgpack.SAFE_MSGPACK_TYPES,
        safe_methods=_lg_msgpack.SAFE_MSGPACK_METHODS,
        raise_refused=raise_refused,
    )


class RustSerializer(JsonPlusSerializer):
    """Serializer whose msgpack encoding and decoding run in Rust.

    Same constructor as ``JsonPlusSerializer``. ``LANGGRAPH_STRICT_MSGPACK`` and
    ``allowed_msgpack_modules`` are honoured as upstream does: a value whose type
    the policy refuses is read back as upstream reads it, its raw stored
    arguments (a model's field dict), with upstream's warning and
    ``msgpack_blocked`` event, so a thread stays readable and resumable. Unlike
    upstream, nothing a refused value names is ever called, and the permissive
    default reconstructs data types only. ``raise_refused=True`` makes every
    refusal a ``DisallowedTypeError`` instead. ``pickle`` is only ever read or
    written when ``pickle_fallback=True``.
    """

    def __init__(
        self,
        *,
        pickle_fallback: bool = False,
        allowed_json_modules: Iterable[tuple[str, ...]] | Literal[True] | None = None,
        allowed_msgpack_modules: Any = _lg_msgpack._SENTINEL,
        raise_refused: bool = False,
        __unpack_ext_hook__: Any = None,
    ) -> None:
        super().__init__(
            pickle_fallback=pickle_fallback,
            allowed_json_modules=allowed_json_modules,
            allowed_msgpack_modules=allowed_msgpack_modules,
            __unpack_ext_hook__=__unpack_ext_hook__,
        )
        self.raise_refused = raise_refused
        self._codec = _make_codec(self._allowed_msgpack_modules, raise_refused)

    def with_msgpack_allowlist(self, extra_allowlist: Iterable[tuple[str, ...] | type]) -> RustSerializer:
        """A copy whose allowlist also admits ``extra_allowlist`` (as upstream's)."""
        clone = super().with_msgpack_allowlist(extra_allowlist)
        if clone is not self:
            clone._codec = _make_codec(clone._allowed_msgpack_modules, self.raise_refused)
        return clone  # type: ignore[return-value]

    @property
    def codec(self) -> Codec:
        """The native codec (used by the savers for their own envelopes)."""
        return self._codec

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None:
            return "null", EMPTY_BYTES
        if isinstance(obj, bytes):
            return "bytes", obj
        if isinstance(obj, bytearray):
            return "bytearray", obj
        try:
            return "msgpack", self._codec.dumps(obj)
        except TypeError:
            if self.pickle_fallback:
                return "pickle", pickle.dumps(obj)
            raise

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, data_ = data
        if type_ == "msgpack":
            if self._custom_unpack_ext_hook:
                return super().loads_typed(data)
            return self._codec.loads(data_)
        if type_ == ENVELOPE_TYPE:
            return self._codec.loads_chain([data_])
        if type_ in ("null", "bytes", "bytearray", "json"):
            return super().loads_typed(data)
        if type_ == "pickle":
            if self.pickle_fallback:
                return pickle.loads(data_)
            raise DisallowedTypeError(
                "refused to unpickle stored data: pass RustSerializer(pickle_fallback=True) to allow it"
            )
        raise UnknownSerializationTypeError(f"Unknown serialization type: {type_}")

    # -- the legacy "json" type: upstream's revival, with our refusals ----------------

    def _reviver(self, value: dict[str, Any]) -> Any:
        lc, id_ = value.get("lc"), value.get("id")
        if value.get("type") != "constructor" or not isinstance(id_, list):
            return super()._reviver(value)
        name = ".".join(map(str, id_))
        if lc == 2 and not self._codec.permissive and not _is_safe_json_type(id_):
            allowed = self._allowed_json_modules
            if allowed is not True and tuple(id_) not in (allowed or ()):
                if not self.raise_refused:
                    return value  # the raw dict, as upstream
                raise DisallowedTypeError(f"refused to revive {name} from stored JSON: not in allowed_json_modules")
        try:
            return super()._reviver(value)
        except CheckpointError:
            raise
        except ValueError as e:
            if lc != 1:
                raise
            # langchain-core's loader refusing a class it does not allow.
            raise DisallowedTypeError(f"refused to revive {name} from stored JSON: {e}") from e

    def _revive_lc2(self, value: dict[str, Any]) -> Any:
        # Upstream calls whatever an allowed id names (``os.system`` under
        # ``allowed_json_modules=True``); we construct data types only.
        from fastcheckpoint._cold import is_data_type  # the rare path's module, loaded when needed

        self._check_allowed_json_modules(value)
        *module, name = value["id"]
        try:
            cls = getattr(importlib.import_module(".".join(module)), name)
        except Exception:
            return super()._revive_lc2(value)  # upstream's warning and None
        if not _is_safe_json_type(value["id"]) and not is_data_type(cls):
            if not self.raise_refused:
                return value  # inert: upstream would call it
            raise DisallowedTypeError(
                f"refused to revive {'.'.join(value['id'])} from stored JSON: it is not a data type "
                "(pydantic model, dataclass, enum, named tuple or standard value type)"
            )
        return super()._revive_lc2(value)


_default: RustSerializer | None = None


def default_serializer() -> RustSerializer:
    """A shared RustSerializer with the default (environment-driven) policy."""
    global _default
    if _default is None:
        _default = RustSerializer()
    return _default


__all__ = ["RustSerializer", "default_serializer"]
