"""The storage model shared by every backend: how channel values become stored
blobs and back, independent of where the blobs live.

* Only channels named in ``new_versions`` are written (unchanged channels keep
  pointing at the stored ``(channel, version)``).
* A value a ``(channel, version)`` blob cannot hold is stored inline, in the
  checkpoint record's own ``channel_values``: a value whose channel has no
  version, and every value of a re-put (a put of a checkpoint id that is
  already stored, which upstream's SqliteSaver answers with the values given
  the second time). ``channels``, the map readers follow to blobs, names such
  a channel ``INLINE``.
* With a ``RustSerializer``, lists are stored as keyframes, element deltas and
  segments (which turn the deltas they cover into pointers), and every blob,
  checkpoint row and pending write is a checksummed (and, when large,
  zstd-compressed) envelope tagged ``ENVELOPE_TYPE``: a damaged byte is
  an error, never other data.
* With an ``EncryptedSerializer`` over a ``JsonPlusSerializer`` (or ours), the
  same, and then each stored body is encrypted for its row
  (``fastcheckpoint.encryption``). Any other serializer (a custom
  ``JsonPlusSerializer``, an ``EncryptedSerializer`` over a serializer of the
  user's own) is used exactly as upstream uses it.
"""

from __future__ import annotations

import functools
import random
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import TASKS

from fastcheckpoint._native import ENVELOPE_TYPE, Body, DeltaWriter, delta_base, seal
from fastcheckpoint.encryption import Row, Vault, is_sealed
from fastcheckpoint.errors import CheckpointError, ConfigError, CorruptDataError, DecryptionError
from fastcheckpoint.serde import RustSerializer, default_serializer

Typed = tuple[str, bytes]
# What ``channels`` maps a channel to whose value the checkpoint record holds
# itself; never a LangGraph version (those are numbers or digit strings).
INLINE = "@inline"
# A delta chain longer than this can only come from a cycle in corrupt data.
_MAX_CHAIN = 100_000


# LangGraph's SQL savers number versions "<counter:032>.<random>" (``next_version``).
# A table names a list version up to three times (the blob's key, the next
# delta's base, a checkpoint's ``channels``), and there the counter is mostly
# zeros: a dialect may store such a version as "~<counter>.<random>", its
# counter without leading zeros (a version of any other shape that starts with
# "~" gets a second one, so distinct versions stay distinct).
_SHORT = "~"
_COUNTER = 32


# Cached: a put names a version again as the next delta's base (typed: 1 and
# 1.0 are distinct versions, named "1" and "1.0").
@functools.lru_cache(maxsize=1 << 14, typed=True)
def short_version(version: str | int | float) -> str:
    """How a table that shortens versions names ``version`` (see ``long_version``)."""
    v = str(version)
    counter = v[:_COUNTER]
    if len(v) > _COUNTER and v[_COUNTER] == "." and counter.isascii() and counter.isdigit():
        return f"{_SHORT}{int(counter)}{v[_COUNTER:]}"
    return _SHORT + v if v.startswith(_SHORT) else v


@functools.lru_cache(maxsize=1 << 14)  # a read names each version of its chains twice, and reads repeat
def long_version(stored: str) -> str:
    """The version ``short_version`` stored as ``stored``."""
    if not stored.startswith(_SHORT):
        return stored
    if stored.startswith(_SHORT, 1):
        return stored[1:]
    counter, dot, rest = stored[1:].partition(".")
    if not (dot and 0 < len(counter) <= _COUNTER and counter.isascii() and counter.isdigit()):
        return stored  # not a name short_version gives: damaged, and found nowhere
    return f"{int(counter):0{_COUNTER}}.{rest}"


def thread_id_of(config: RunnableConfig | None) -> str:
    try:
        tid = config["configurable"]["thread_id"]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ConfigError(
            "config['configurable']['thread_id'] is required: pass "
            "{'configurable': {'thread_id': ...}} to identify the thread"
        ) from None
    if tid is None:
        raise ConfigError("config['configurable']['thread_id'] must not be None")
    return str(tid)


def checkpoint_ns_of(config: RunnableConfig) -> str:
    return config["configurable"].get("checkpoint_ns", "") or ""


class Layout(NamedTuple):
    """How a saver's serializer stores values: ``ours`` (a ``RustSerializer``)
    encodes our envelopes, or None for upstream's format through the
    serializer itself; ``vault`` then encrypts each body for its row."""

    ours: RustSerializer | None
    vault: Vault | None = None


_UPSTREAM = Layout(None)
# EncryptedSerializer -> (its cipher, its inner serializer, their layout).
_encrypted: weakref.WeakKeyDictionary[Any, tuple[Any, Any, Layout]] = weakref.WeakKeyDictionary()


def _as_ours(serde: Any) -> RustSerializer | None:
    """A RustSerializer that reads and writes as ``serde`` does, if there is one."""
    if isinstance(serde, RustSerializer):
        return serde
    if type(serde) is JsonPlusSerializer and not serde._custom_unpack_ext_hook:
        return RustSerializer(
            pickle_fallback=serde.pickle_fallback,
            allowed_json_modules=serde._allowed_json_modules,
            allowed_msgpack_modules=serde._allowed_msgpack_modules,
        )
    return None


def layout_of(serde: SerializerProtocol, at_rest: bool = True) -> Layout:
    """The storage layout of ``serde`` (read at each call: a saver's ``serde``
    may be replaced). Without ``at_rest`` (a saver in process memory) an
    ``EncryptedSerializer`` keeps upstream's format."""
    if isinstance(serde, RustSerializer):
        return Layout(serde)
    if not (at_rest and isinstance(serde, EncryptedSerializer)):
        return _UPSTREAM
    found = _encrypted.get(serde)
    if found is not None and found[0] is serde.cipher and found[1] is serde.serde:
        return found[2]
    ours = _as_ours(serde.serde)
    layout = Layout(ours, Vault.of(serde.cipher)) if ours is not None else _UPSTREAM
    _encrypted[serde] = (serde.cipher, serde.serde, layout)
    return layout


def reveal(serde: SerializerProtocol, layout: Layout, row: Row, typed: Typed) -> Typed:
    """A stored ``(type, bytes)`` as it was before encryption for ``row``."""
    type_ = typed[0]
    if "+" not in type_:
        return typed
    if layout.vault is not None and is_sealed(type_):
        return layout.vault.open(row, type_, typed[1])
    if layout.vault is None and not isinstance(serde, EncryptedSerializer):
        raise DecryptionError(
            f"the row is encrypted ({type_!r}) and the saver's serializer has no cipher: "
            "pass serde=EncryptedSerializer(...) with its key"
        )
    return typed


@contextmanager
def located(where: Callable[[], str]) -> Iterator[None]:
    """Re-raises our errors as the same type with ``where()`` (the damaged
    row) in front of the message."""
    try:
        yield
    except CheckpointError as e:
        raise type(e)(f"{where()}: {e}") from e


def reveal_blob(serde: SerializerProtocol, row: Row, typed: Typed) -> Typed:
    """A stored blob row's ``(type, bytes)`` as before encryption (for tools
    that read blobs one by one); ``row`` is ``("blob", thread, ns, channel, version)``."""
    return reveal(serde, layout_of(serde), row, typed)


def dumps(serde: SerializerProtocol, obj: Any, row: Row, later: bool = False) -> tuple[str, bytes | Body]:
    """How a checkpoint record or a pending write is stored in ``row``: sealed
    in a checksummed envelope when the serializer is ours (bytes and None stay
    as upstream stores them), then encrypted for ``row`` when it has a cipher;
    with ``later`` an unencrypted envelope is a ``Body`` the store seals."""
    layout = layout_of(serde)
    if layout.ours is None:
        return serde.dumps_typed(obj)
    type_, data = layout.ours.dumps_typed(obj)
    if layout.vault is not None:
        return layout.vault.seal(row, *((ENVELOPE_TYPE, seal(data)) if type_ == "msgpack" else (type_, data)))
    if type_ == "msgpack":
        return ENVELOPE_TYPE, (Body(data) if later else seal(data))
    return type_, data


def loads(serde: SerializerProtocol, typed: Typed, row: Row, where: Callable[[], str]) -> Any:
    """Reads what ``dumps`` stored in ``row`` (or an upstream row); ``where()``
    names the row in errors."""
    with located(where):
        layout = layout_of(serde)
        type_, data = reveal(serde, layout, row, typed)
        if type_ == ENVELOPE_TYPE:
            return (layout.ours or default_serializer()).codec.loads_chain([data])
        if layout.ours is not None and type_ != typed[0]:
            return layout.ours.loads_typed((type_, data))
        return serde.loads_typed((type_, data))


def next_version(current: str | int | None) -> str:
    """The version after ``current``, as upstream's SQL savers write it:
    ``"<counter:032>.<random:016>"``."""
    if current is None:
        current_v = 0
    elif isinstance(current, int):
        current_v = current
    else:
        current_v = int(current.split(".")[0])
    return f"{current_v + 1:032}.{random.random():016}"


def move_pending_sends(
    checkpoint: dict[str, Any],
    values: dict[str, Any],
    sends: Iterable[tuple[str, str, int, Any]],
    load: Callable[[Any], Any],
) -> None:
    """As upstream PostgresSaver reads a checkpoint of format v < 4: the Sends
    pending for it, its parent's writes to ``TASKS`` given as ``(task path,
    task id, index, stored)``, become its ``TASKS`` value in that order (each
    ``load(stored)``), at the newest version it has."""
    ordered = sorted(sends, key=lambda s: s[:3])
    if not ordered:
        return
    versions = checkpoint.setdefault("channel_versions", {})
    versions[TASKS] = max(versions.values()) if versions else next_version(None)
    values[TASKS] = [load(s[3]) for s in ordered]


def inline_values(checkpoint: dict[str, Any], values: Mapping[str, Any], reput: bool) -> dict[str, Any]:
    """Moves the values blobs cannot hold into ``checkpoint`` (the record a
    put stores, its ``channel_values`` already popped) and returns its
    ``channels`` map: each channel's version, or ``INLINE``."""
    versions = checkpoint.get("channel_versions", {})
    inline = {ch: v for ch, v in values.items() if reput or ch not in versions}
    if inline:
        checkpoint["channel_values"] = inline
    return channels_of(checkpoint)


def channels_of(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A stored checkpoint record's ``channels`` map (as ``inline_values`` made it)."""
    inline = checkpoint.get("channel_values") or {}
    return {**checkpoint.get("channel_versions", {}), **dict.fromkeys(inline, INLINE)}


def dump_record(
    serde: SerializerProtocol,
    record: Mapping[str, Any],
    channels: Mapping[str, Any],
    row: Row,
    slim: bool,
    later: bool,
) -> tuple[str, bytes | Body]:
    """How a SQL saver stores a checkpoint record (as ``inline_values`` left
    it) beside its ``channels`` in ``row``: whole, or with ``slim`` as
    ``slim_record`` leaves it (only where no earlier release reads the table)."""
    return dumps(serde, slim_record(record, channels) if slim else record, row, later)


def checkpoint_row(thread_id: str, ns: str, checkpoint_id: str) -> Row:
    """What a checkpoint record's body is bound to."""
    return ("checkpoint", thread_id, ns, checkpoint_id)


def write_row(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> Row:
    """What a pending write's body is bound to (``idx`` as stored)."""
    return ("write", thread_id, ns, checkpoint_id, task_id, idx)


def slim_record(record: Mapping[str, Any], channels: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint record without its ``id``, which is its row's key, nor,
    when no value is inline, its ``channel_versions``, which then equal
    ``channels``, stored beside it. On a long thread these are about half the
    record's bytes. ``full_record`` puts both back."""
    slim = {k: v for k, v in record.items() if k != "id"}
    if "channel_versions" in slim and channels == slim["channel_versions"]:
        del slim["channel_versions"]
    return slim


def full_record(
    record: Mapping[str, Any], checkpoint_id: str, channels: Callable[[], Mapping[str, Any]]
) -> dict[str, Any]:
    """A record as ``slim_record`` stored it (or whole, as stored before),
    given its row's checkpoint id and ``channels()``, called only when the
    record left its versions out."""
    out = {"v": record["v"]} if "v" in record else {}
    out["id"] = checkpoint_id
    out.update(record)
    if "channel_versions" not in record:
        out["channel_versions"] = dict(channels())
    return out


def blob_channels(checkpoint: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The (channel, version) pairs whose values a stored checkpoint record
    leaves to blobs."""
    inline = checkpoint.get("channel_values") or {}
    return ((ch, ver) for ch, ver in checkpoint.get("channel_versions", {}).items() if ch not in inline)


def encode_channels(
    serde: SerializerProtocol,
    writer: DeltaWriter,
    thread_id: str,
    checkpoint_ns: str,
    values: Mapping[str, Any],
    new_versions: ChannelVersions,
    later: bool = False,
    reput: bool = False,
    at_rest: bool = True,
) -> list[tuple[str, str | int | float, str, bytes | Body, str | None, bool]]:
    """The blobs one put stores, one per channel in ``new_versions``:
    ``(channel, version, type, bytes, delta base version or None, False)``;
    after a list stored as a segment, ``(..., True)`` for each stored row it
    turns into a pointer to it (``DeltaWriter.encode_blobs``): the store
    replaces that row's bytes and base in the same transaction. A ``reput``
    rewrites no row: its segment may meet a stored row of the same version,
    which the pointers would not rebuild. With ``later`` our unencrypted
    envelopes are ``Body`` objects the store seals; a cipher encrypts each
    blob for its (thread, ns, channel, version); ``at_rest``: see ``layout_of``."""
    layout = layout_of(serde, at_rest)
    if layout.ours is not None:
        vault = layout.vault
        blobs = writer.encode_blobs(
            thread_id, checkpoint_ns, dict(values), dict(new_versions), seal=vault is not None or not later
        )
        if reput:
            blobs = [b for b in blobs if not b[5]]
        if vault is not None:
            blobs = [
                (ch, ver, *vault.seal(("blob", thread_id, checkpoint_ns, ch, str(ver)), t, d), base, rw)
                for ch, ver, t, d, base, rw in blobs
            ]
        return blobs
    return [
        (ch, ver, *(serde.dumps_typed(values[ch]) if ch in values else ("empty", b"")), None, False)
        for ch, ver in new_versions.items()
    ]


# A stored blob as the savers hand it to ``load_channel``: (type, bytes, delta base version).
Stored = tuple[str, bytes, "str | None"]
BlobKey = tuple[Any, ...]  # (..., channel, version as text)


def load_channel(
    serde: SerializerProtocol,
    key: BlobKey,
    fetch: Callable[[BlobKey], Stored | None],
    cache: dict[BlobKey, Any] | None,
    where: Callable[[], str],
    writer: DeltaWriter | None = None,
    head: bool = False,
    at_rest: bool = True,
) -> Any:
    """Decodes the blob stored at ``key``; ``fetch(key)`` returns a stored blob.

    A delta is applied on top of its base's decoded value, so each blob of a
    chain is decoded once. ``cache`` keeps every version decoded: one dict per
    listing shares unchanged elements between the checkpoints it returns. With
    None (a value nobody else holds) only the newest version is built, and a
    list read whole teaches ``writer`` (``DeltaWriter.seed``; ``head``: read
    from the thread's latest checkpoint) the stored version its next put can
    be a delta of and, from the head, the objects handed out, so that put
    encodes only what a run adds; ``key`` is then (thread, ns, channel,
    version). ``where()`` names the row in errors. A blob encrypted for its
    row is decrypted as it is fetched; ``at_rest``: see ``layout_of``.
    """
    with located(where):
        layout = layout_of(serde, at_rest)
        if layout.vault is not None:
            fetch = _revealing(serde, layout, fetch)
        return _load_channel(serde, layout, key, fetch, cache, writer, head)


def _revealing(
    serde: SerializerProtocol, layout: Layout, fetch: Callable[[BlobKey], Stored | None]
) -> Callable[[BlobKey], Stored | None]:
    def revealed(key: BlobKey) -> Stored | None:
        stored = fetch(key)
        if stored is None:
            return None
        return (*reveal(serde, layout, ("blob", *key), stored[:2]), stored[2])

    return revealed


def _load_channel(
    serde: SerializerProtocol,
    layout: Layout,
    key: BlobKey,
    fetch: Callable[[BlobKey], Stored | None],
    cache: dict[BlobKey, Any] | None,
    writer: DeltaWriter | None = None,
    head: bool = False,
) -> Any:
    known = {} if cache is None else cache
    if key in known:
        return known[key]
    stored = fetch(key)
    if stored is None:
        raise CorruptDataError(f"blob for version {key[-1]} is missing")
    type_, data, base = stored
    if type_ != ENVELOPE_TYPE:
        if layout.vault is None:  # an encrypted blob is an error here, typed
            value = serde.loads_typed(reveal(serde, layout, ("blob", *key), (type_, data)))
        elif "+" in type_:  # upstream's encrypted format, as an earlier release stored it
            value = serde.loads_typed((type_, data))
        else:  # revealed as fetched
            value = (layout.ours or serde).loads_typed((type_, data))
        known[key] = value
        return value
    # Walk back to a keyframe or to a version already decoded...
    chain = [(key, data, base)]
    while base is not None:
        base_key = (*key[:-1], base)
        if base_key in known:
            break
        if len(chain) > _MAX_CHAIN:
            raise CorruptDataError("delta chain does not terminate")
        nxt = fetch(base_key)
        if nxt is None or nxt[0] != ENVELOPE_TYPE:
            raise CorruptDataError(f"delta base version {base} is missing")
        chain.append((base_key, nxt[1], nxt[2]))
        base = nxt[2]
    # ...then decode forward, each delta on top of its base's value.
    codec = (layout.ours or default_serializer()).codec
    value = known[(*key[:-1], base)] if base is not None else None
    if cache is None:
        value = codec.loads_steps([(blob, b) for _, blob, b in reversed(chain)], value)
        if writer is not None and type(value) is list:
            writer.seed(*key, [blob for _, blob, _ in chain], head, value if head else None)
        return value
    for k, blob, b in reversed(chain):
        value = cache[k] = codec.loads_step(blob, value, b)
    return value


def needed_ancestors(
    survivors: Iterable[str],
    entry: Callable[[str], tuple[Mapping[str, Any], str | None] | None],
    stores_value: Callable[[str, Any], bool],
) -> set[str]:
    """Checkpoint IDs whose writes the survivors' DeltaChannel history walks through.

    ``entry(id)`` gives a checkpoint's ``channels`` map (versions, or
    ``INLINE``) and parent id, visible or hidden. A channel whose blob at a
    survivor is absent or "empty" (how DeltaChannel stores non-snapshot steps)
    is rebuilt from ancestors' writes back to the nearest ancestor holding a
    stored value: all those are needed.
    """
    needed: set[str] = set()

    def holds(ch: str, ver: Any) -> bool:
        return ver == INLINE or stores_value(ch, ver)

    for cid in survivors:
        found = entry(cid)
        if found is None:
            continue
        versions, current = found
        open_channels = {ch for ch, ver in versions.items() if not holds(ch, ver)}
        while open_channels and current is not None and current not in needed:
            anc = entry(current)
            if anc is None:
                break
            needed.add(current)
            anc_versions, parent = anc
            open_channels = {ch for ch in open_channels if (ver := anc_versions.get(ch)) is None or not holds(ch, ver)}
            current = parent
    return needed


def blob_closure(keys: set[tuple[Any, ...]], blobs: Mapping[tuple[Any, ...], Typed]) -> set[tuple[Any, ...]]:
    """``keys`` (thread, ns, channel, version) plus every delta base they need."""
    out: set[tuple[Any, ...]] = set()
    todo = [k for k in keys if k in blobs]
    while todo:
        k = todo.pop()
        if k in out:
            continue
        out.add(k)
        typed = blobs.get(k)
        if typed is not None and typed[0] == ENVELOPE_TYPE:
            base = delta_base(typed[1])
            if base is not None:
                todo.append((*k[:3], base))
    return out
