"""The one saver implementation behind every SQL backend (SQLite and Postgres,
sync and async).

Each operation is written once, as a generator in the vocabulary of
``_ops`` (it yields ``Read`` / ``Write`` / ``Page`` and gets the results
back). A backend supplies the store that runs them and its SQL dialect
(``sql``: a module of statements with the same names on every backend,
written with SQLite's ``?``/``?N`` placeholders); sync savers drive the
operations with ``_run`` / ``_iter``, async ones with ``_ops``' async
drivers over the same generators (and group commit, ``_group``).

The file is long because it is one class: every operation of ``StoreSaver``
(reading, writing, removing), then its public methods and their async twins,
which are one line each over those operations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    writes_sort_key,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fastcheckpoint._native import DeltaWriter
from fastcheckpoint._ops import AsyncStore, Op, Page, Read, Stmt, Store, T, Write, arun_op, iter_op, run_op
from fastcheckpoint._rekey import rebody_op
from fastcheckpoint._retention import Retention, prune_strategy
from fastcheckpoint._sql import ThreadCheckpoint
from fastcheckpoint._storage import (
    INLINE,
    Stored,
    blob_channels,
    checkpoint_ns_of,
    checkpoint_row,
    dump_record,
    dumps,
    encode_channels,
    full_record,
    inline_values,
    layout_of,
    load_channel,
    loads,
    move_pending_sends,
    needed_ancestors,
    next_version,
    thread_id_of,
    write_row,
)
from fastcheckpoint.errors import CheckpointError, MissingRowError
from fastcheckpoint.serde import RustSerializer

# JSON without the spaces json.dumps puts after separators (made once: json.dumps
# builds an encoder per call for any non-default argument).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
# Passes of copy_thread over copies whose source changed while it ran.
_REBIND_PASSES = 3
# Checkpoints fetched per round trip when listing.
LIST_PAGE = 64
# Threads whose newest checkpoint id a saver remembers (forgetting one only
# costs its next put a query).
NEWEST_KEPT = 100_000
logger = logging.getLogger("fastcheckpoint")


def metadata_json(sql: ModuleType, config: RunnableConfig, metadata: CheckpointMetadata) -> str:
    # As upstream: JSON, unencodable code points dropped.
    text = json.dumps(sql.checkpoint_metadata(config, metadata), ensure_ascii=False)
    return text.encode("utf-8", "ignore").decode("utf-8")


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def _timestamp(ts: Any) -> float | None:
    """Seconds since the epoch of a checkpoint's ISO ``ts`` (None if unreadable)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(ts)).timestamp()
    except (TypeError, ValueError):
        return None


def _json_text(value: Any) -> Any:
    """A JSON column as the backend returned it (text, or already parsed)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class StoreSaver(BaseCheckpointSaver[str]):
    """Shared logic; a backend sets ``sql`` and provides ``_ready()`` (its store)."""

    serde: SerializerProtocol = RustSerializer()
    sql: ModuleType
    is_setup: bool = False
    _has_task_path: bool = True
    # Whether setting up copies upstream LangGraph tables found in the same
    # database into ours (off for the read-only commands of the CLI).
    _take_over: bool = True

    # Whether the store seals our envelopes itself (``_native.Body``): the
    # SQLite store does, on the thread that commits (off the event loop).
    _store_seals: bool = False

    # When rows are stored (seconds since the epoch); replaceable for tests.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(
        self, *, serde: SerializerProtocol | None = None, ttl: Mapping[str, Any] | Retention | None = None
    ) -> None:
        super().__init__(serde=serde)
        self.jsonplus_serde = JsonPlusSerializer()
        self._writer = DeltaWriter()
        self._newest: dict[tuple[str, str], str] = {}  # see _stored_op
        self.ttl = Retention.of(ttl)
        self._last_sweep: float | None = None
        self._sweep_lock = threading.Lock()

    def _ready(self) -> Store:
        raise NotImplementedError("a backend provides its store")

    # -- drivers ---------------------------------------------------------------------

    def _iter(self, op: Op[T], store: Store | None = None) -> Generator[Page, None, T]:
        """Runs ``op`` on the store (default: this saver's), yielding its pages; returns its result."""
        return iter_op(op, store or self._ready())

    def _run(self, op: Op[T], store: Store | None = None) -> T:
        """Runs ``op`` on the store (default: this saver's); returns its result."""
        return run_op(op, store or self._ready())

    # -- reading -------------------------------------------------------------------

    def _tuple(
        self,
        row: Sequence[Any],
        blobs: Mapping[tuple[Any, ...], Stored],
        writes: Sequence[Sequence[Any]],
        cache: dict[tuple[Any, ...], Any] | None,
        config: RunnableConfig | None = None,
        head: bool = False,
        sends: Sequence[Sequence[Any]] = (),
    ) -> CheckpointTuple:
        """One checkpoint as read. With no ``cache`` (``get_tuple``), the lists
        read teach the writer what its next put can be a delta of (``head``:
        this is the thread's latest checkpoint). ``sends``: the parent's
        writes to ``TASKS`` (task path, task id, index, type, value), a
        pre-v4 checkpoint's pending sends where the dialect reads them."""
        thread_id, ns, checkpoint_id, parent_id, type_, data, metadata, channels = row[:8]
        serde = self.serde
        where = f"thread {thread_id!r} checkpoint_ns {ns!r} checkpoint {checkpoint_id!r}"
        record = loads(serde, (type_, bytes(data)), checkpoint_row(thread_id, ns, checkpoint_id), lambda: where)
        checkpoint: Checkpoint = full_record(record, checkpoint_id, lambda: self._channels(channels))  # type: ignore[assignment]
        values: dict[str, Any] = {}
        for ch, ver in blob_channels(checkpoint):
            key = (thread_id, ns, ch, str(ver))
            typed = blobs.get(key)
            if typed is None or typed[0] == "empty":
                continue
            values[ch] = load_channel(
                serde,
                key,
                blobs.get,
                cache,
                lambda ch=ch: f"{where} channel {ch!r}",
                self._writer if cache is None else None,
                head,
            )
        values.update(checkpoint.get("channel_values") or {})
        if sends and parent_id and checkpoint.get("v", 4) < 4:
            move_pending_sends(
                checkpoint,  # type: ignore[arg-type]
                values,
                ((s[0], s[1], s[2], s) for s in sends),
                lambda s: loads(
                    serde,
                    (s[3], bytes(s[4])),
                    write_row(thread_id, ns, parent_id, s[1], s[2]),
                    lambda: f"{where} pending send of task {s[1]!r}",
                ),
            )
        pending: list[PendingWrite] = [
            (
                w[0],
                w[1],
                loads(
                    serde,
                    (w[2], bytes(w[3])),
                    write_row(thread_id, ns, checkpoint_id, w[0], w[5]),
                    lambda w=w: f"{where} write {w[1]!r} of task {w[0]!r}",
                ),
            )
            for w in sorted(writes, key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        ]
        return CheckpointTuple(
            config=config or _config(thread_id, ns, checkpoint_id),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=_json_text(metadata) if metadata else {},
            parent_config=_config(thread_id, ns, parent_id) if parent_id else None,
            pending_writes=pending,
        )

    # -- versions as the tables name them (``sql.stored_version``) -------------------

    def _blobs(self, rows: Sequence[Sequence[Any]]) -> dict[tuple[Any, ...], Stored]:
        """Blob rows (``BLOB_COLUMNS``) by (thread, ns, channel, version)."""
        version_of = self.sql.version_of
        return {
            (b[0], b[1], b[2], version_of(b[3])): (b[4], bytes(b[5]), None if b[6] is None else version_of(b[6]))
            for b in rows
        }

    def _channels(self, stored: Any) -> dict[str, Any]:
        """A row's ``channels`` JSON (text, or parsed by the backend) as versions."""
        version_of = self.sql.version_of
        return {ch: version_of(v) if isinstance(v, str) else v for ch, v in _json_text(stored).items()}

    def _stored_channels(self, channels: Mapping[str, Any]) -> str:
        """``channels`` as a row stores it (JSON; numbers stay numbers)."""
        stored_version = self.sql.stored_version
        named = {ch: stored_version(v) if isinstance(v, str) else v for ch, v in channels.items()}
        return _COMPACT_JSON.encode(named)

    def _get_tuple_op(self, config: RunnableConfig) -> Op[CheckpointTuple | None]:
        sql = self.sql
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoint_id = get_checkpoint_id(config) or None  # "" means the latest, as upstream
        params = (thread_id, ns, checkpoint_id)
        queries = [(sql.GET_CHECKPOINT, params), (sql.GET_BLOBS, params), (sql.GET_WRITES, params)]
        if sql.PARENT_SENDS:
            queries.append((sql.PARENT_SENDS, params))
        rows, blob_rows, write_rows, *sends = yield Read(queries)
        if not checkpoint_id:
            self._saw_head(thread_id, ns, rows[0][0] if rows else "")
        if not rows:
            return None
        writes = [w[1:] for w in write_rows]
        return self._tuple(
            (thread_id, ns, *rows[0]),
            self._blobs(blob_rows),
            writes,
            None,
            config if checkpoint_id else None,
            head=checkpoint_id is None,
            sends=sends[0] if sends else (),
        )

    def _where(
        self, config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None
    ) -> tuple[list[str], list[Any]]:
        wheres = ["hidden = 0"]
        params: list[Any] = []
        if config is not None:
            wheres.append("thread_id = ?")
            params.append(thread_id_of(config))
            if (ns := config["configurable"].get("checkpoint_ns")) is not None:
                wheres.append("checkpoint_ns = ?")
                params.append(ns)
            if checkpoint_id := get_checkpoint_id(config):
                wheres.append("checkpoint_id = ?")
                params.append(checkpoint_id)
        for predicate, param in self.sql.metadata_filter(filter or {}):
            wheres.append(predicate)
            params.append(param)
        if before is not None:
            wheres.append("checkpoint_id < ?")
            params.append(get_checkpoint_id(before))
        return wheres, params

    def _list_op(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Op[None]:
        """Newest first, a page per round trip (each page one consistent read).

        Versions decoded for one checkpoint are reused for the others: list
        elements unchanged between checkpoints are decoded once and the
        returned checkpoints share those objects (as a graph's own channel
        values share them from one step to the next)."""
        wheres, params = self._where(config, filter, before)
        cache: dict[tuple[Any, ...], Any] = {}
        remaining = limit
        after: tuple[str, str, str] | None = None
        while remaining is None or remaining > 0:
            n = LIST_PAGE if remaining is None else min(LIST_PAGE, remaining)
            page_wheres, page_params = list(wheres), list(params)
            if after is not None:
                page_wheres.append("(checkpoint_id, thread_id, checkpoint_ns) < (?, ?, ?)")
                page_params.extend(after)
            args = (*page_params, n)
            page, blobs_q, writes_q, sends_q = self.sql.list_queries("WHERE " + " AND ".join(page_wheres))
            queries = [(page, args), (blobs_q, args), (writes_q, args)]
            if sends_q:
                queries.append((sends_q, args))
            rows, blob_rows, write_rows, *send_rows = yield Read(queries)
            blobs = self._blobs(blob_rows)
            writes: dict[tuple[str, str, str], list[Sequence[Any]]] = {}
            for w in write_rows:
                writes.setdefault(tuple(w[:3]), []).append(w[3:])
            sends: dict[tuple[str, str, str], list[Sequence[Any]]] = {}
            for w in send_rows[0] if send_rows else ():
                sends.setdefault(tuple(w[:3]), []).append(w[3:])
            yield Page(
                [
                    self._tuple(r, blobs, writes.get(tuple(r[:3]), []), cache, sends=sends.get(tuple(r[:3]), ()))
                    for r in rows
                ]
            )
            if len(rows) < n:
                return
            last = rows[-1]
            after = (last[2], last[0], last[1])
            if remaining is not None:
                remaining -= len(rows)

    def _history_op(self, config: RunnableConfig, channels: Sequence[str]) -> Op[Mapping[str, DeltaChannelHistory]]:
        """Walks the target's parent chain in one query, then fetches the
        chain's writes and the seeds in a second."""
        if not channels:
            return {}
        sql = self.sql
        channels = list(channels)
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        ancestors, blob_types = yield Read(
            [
                (sql.ANCESTORS, (thread_id, ns, get_checkpoint_id(config) or None)),
                (sql.BLOB_TYPES, (thread_id, ns, json.dumps(channels))),
            ]
        )
        stored = {(ch, ver) for ch, ver, t in blob_types if t not in sql.NO_SEED_TYPES}
        chain: dict[str, list[str]] = {ch: [] for ch in channels}  # nearest first
        seeds: dict[str, str] = {}  # channel -> version of its seed, as the tables name it
        inline_seeds: dict[str, str] = {}  # channel -> checkpoint holding its seed inline
        remaining = set(channels)
        for cid, channels_json in ancestors:
            if not remaining:
                break
            versions = _json_text(channels_json)
            for ch in list(remaining):
                chain[ch].append(cid)
                ver = versions.get(ch)
                if ver == INLINE:
                    inline_seeds[ch] = cid
                    remaining.discard(ch)
                elif ver is not None and (ch, str(ver)) in stored:
                    seeds[ch] = str(ver)
                    remaining.discard(ch)
        cids = sorted({cid for lst in chain.values() for cid in lst})
        holders = sorted(set(inline_seeds.values()))
        write_rows, seed_rows, *records = yield Read(
            [
                (sql.WRITES_FOR, (thread_id, ns, json.dumps(cids), json.dumps(channels))),
                (sql.GET_BLOBS_FOR, (thread_id, ns, json.dumps([[ch, v] for ch, v in seeds.items()]))),
                *((sql.CHECKPOINT_RECORD, (thread_id, ns, cid)) for cid in holders),
            ]
        )
        inline: dict[str, Mapping[str, Any]] = {}
        for cid, found in zip(holders, records, strict=True):
            for type_, data in found:
                where = f"thread {thread_id!r} checkpoint_ns {ns!r} checkpoint {cid!r}"
                record = loads(
                    self.serde, (type_, bytes(data)), checkpoint_row(thread_id, ns, cid), lambda where=where: where
                )
                inline[cid] = record["channel_values"]
        by_cid: dict[str, list[Sequence[Any]]] = {}
        for w in write_rows:
            by_cid.setdefault(w[0], []).append(w[1:])
        for lst in by_cid.values():
            lst.sort(key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        blobs = self._blobs(seed_rows)
        result: dict[str, DeltaChannelHistory] = {}

        def where(cid: str, ch: str) -> str:
            return f"thread {thread_id!r} checkpoint_ns {ns!r} checkpoint {cid!r} write {ch!r}"

        for ch in channels:
            writes: list[PendingWrite] = [
                (
                    w[0],
                    w[1],
                    loads(
                        self.serde,
                        (w[2], bytes(w[3])),
                        write_row(thread_id, ns, cid, w[0], w[5]),
                        lambda cid=cid, ch=ch: where(cid, ch),
                    ),
                )
                for cid in reversed(chain[ch])
                for w in by_cid.get(cid, ())
                if w[1] == ch
            ]
            h: DeltaChannelHistory = {"writes": writes}
            if ch in inline_seeds and inline_seeds[ch] in inline:
                h["seed"] = inline[inline_seeds[ch]][ch]
            elif ch in seeds:
                version = sql.version_of(seeds[ch])
                h["seed"] = load_channel(
                    self.serde,
                    (thread_id, ns, ch, version),
                    blobs.get,
                    None,
                    lambda ch=ch, version=version: (
                        f"thread {thread_id!r} checkpoint_ns {ns!r} channel {ch!r} version {version}"
                    ),
                )
            result[ch] = h
        return result

    # -- writing ---------------------------------------------------------------------

    def _put_op(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Op[RunnableConfig]:
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        # A re-put's blobs meet their stored rows, which stay (INSERT OR
        # IGNORE): _put_rows_op then has the writer forget the thread.
        reput = yield from self._stored_op(thread_id, ns, checkpoint["id"])
        row = self._checkpoint_row(
            (thread_id, ns, checkpoint["id"]),
            config["configurable"].get("checkpoint_id"),
            c,  # type: ignore[arg-type]
            values,
            reput,
            metadata_json(self.sql, config, metadata),
            self.clock(),
        )
        yield from self._put_rows_op(row, values, new_versions, reput=reput)
        self._saw_head(thread_id, ns, checkpoint["id"])
        if self._sweep_due():
            try:
                yield from self._sweep_op()
            except CheckpointError:
                # The put is stored; a failed sweep is retried at the next interval.
                logger.warning("fastcheckpoint: TTL sweep failed", exc_info=True)
        return _config(thread_id, ns, checkpoint["id"])

    def _checkpoint_row(
        self,
        key: tuple[str, str, str],
        parent_id: str | None,
        record: dict[str, Any],
        values: Mapping[str, Any],
        reput: bool,
        metadata_json: str,
        created_at: float,
    ) -> tuple[Any, ...]:
        """The ``fc_checkpoints`` row a put stores: ``record`` is the
        checkpoint without its ``channel_values`` (the values blobs cannot
        hold go back into it), stored beside its ``channels`` (slim where the
        dialect's ``SLIM_RECORDS``)."""
        channels = inline_values(record, values, reput)
        return (
            *key,
            parent_id,
            *dump_record(self.serde, record, channels, checkpoint_row(*key), self.sql.SLIM_RECORDS, self._store_seals),
            metadata_json,
            self._stored_channels(channels),
            created_at,
        )

    def _saw_head(self, thread_id: str, ns: str, checkpoint_id: str) -> None:
        """Remembers the newest checkpoint id this saver has read or put for a thread."""
        key = (thread_id, ns)
        if len(self._newest) >= NEWEST_KEPT and key not in self._newest:
            self._newest.clear()
        if checkpoint_id >= self._newest.get(key, ""):
            self._newest[key] = checkpoint_id

    def _stored_op(self, thread_id: str, ns: str, checkpoint_id: str) -> Op[bool]:
        """Whether a checkpoint id is already stored (a put of it is a re-put).

        LangGraph's ids grow with time, so an id above the newest this saver
        has read or put for the thread is new and needs no query. That holds
        unless another process re-puts the thread's checkpoints concurrently,
        which LangGraph never does (one run per thread at a time)."""
        newest = self._newest.get((thread_id, ns))
        if newest is not None and checkpoint_id > newest:
            return False
        (rows,) = yield Read([(self.sql.CHECKPOINT_STORED, (thread_id, ns, checkpoint_id))])
        return bool(rows)

    def _put_rows_op(
        self,
        row: tuple[Any, ...],
        values: Mapping[str, Any],
        new_versions: ChannelVersions,
        extra: Sequence[Stmt] = (),
        reput: bool = False,
    ) -> Op[None]:
        """One transaction: the checkpoint row, its changed channels' blobs (and
        ``extra`` statements); ``reput``: see ``encode_channels``."""
        sql = self.sql
        serde = self.serde
        stored = sql.stored_version
        thread_id, ns = row[0], row[1]
        for attempt in range(2):
            batch: list[Stmt] = [*self._ensure_thread(thread_id), (sql.INSERT_CHECKPOINT, row, False), *extra]
            blob_at: list[int] = []
            rewrites = []
            for ch, ver, type_, data, base, rewrite in encode_channels(
                serde, self._writer, thread_id, ns, values, new_versions, self._store_seals, reput
            ):
                base = None if base is None else stored(base)
                if rewrite:
                    # The row is ours (we stored or read it) and the segment
                    # inserted before it rebuilds its list: the same value, smaller.
                    rewrites.append((thread_id, ns, ch, stored(ver), type_, data, base))
                    continue
                if base is not None and sql.BASE_EXISTS:
                    batch.append((sql.BASE_EXISTS, (thread_id, ns, ch, base), True))
                blob_at.append(len(batch))
                batch.append((sql.INSERT_BLOB, (thread_id, ns, ch, stored(ver), type_, data, base), False))
            batch.extend(sql.rewrite_blobs(rewrites))
            try:
                counts = yield Write(batch)
            except MissingRowError:
                # A delta's base was removed by another saver or process since
                # we wrote it: start this thread's lists over from keyframes.
                self._writer.forget(thread_id)
                if attempt:
                    raise
                continue
            except BaseException:
                # Nothing was stored: what the writer remembers is not stored.
                self._writer.forget(thread_id)
                raise
            if any(counts[i] == 0 for i in blob_at):
                # A (channel, version) was already stored (a repeated put): the
                # stored row, not ours, is the base future deltas must use.
                self._writer.forget(thread_id)
            return

    def _restore_op(
        self,
        key: tuple[str, str, str],
        parent_id: str | None,
        checkpoint: dict[str, Any],
        metadata_json: str,
        stored: set[tuple[str, ...]],
        extra: Sequence[Stmt] = (),
        created_at: float | None = None,
    ) -> Op[None]:
        """Stores a checkpoint read from another saver's tables (``checkpoint``
        with its ``channel_values``) as our put would; ``stored`` holds the
        (thread, ns, channel, version) blobs already written by this copy.
        ``created_at`` defaults to the checkpoint's own ``ts``."""
        thread_id, ns, _ = key
        checkpoint = dict(checkpoint)
        values = checkpoint.pop("channel_values", None) or {}
        versions = checkpoint.get("channel_versions", {})
        new_versions = {ch: v for ch, v in versions.items() if (thread_id, ns, ch, str(v)) not in stored}
        if created_at is None:
            created_at = _timestamp(checkpoint.get("ts")) or self.clock()
        row = self._checkpoint_row(key, parent_id, checkpoint, values, False, metadata_json or "{}", created_at)
        yield from self._put_rows_op(row, values, new_versions, extra)
        stored.update((thread_id, ns, ch, str(v)) for ch, v in new_versions.items())

    def _ensure_thread(self, thread_id: str) -> list[Stmt]:
        """What a transaction storing rows of ``thread_id`` runs first (the
        dialect's ``ENSURE_THREAD``: its tables may key threads by a number)."""
        return [(self.sql.ENSURE_THREAD, (thread_id,), False)] if self.sql.ENSURE_THREAD else []

    def _put_writes_op(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> Op[None]:
        sql = self.sql
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoint_id = str(config["configurable"]["checkpoint_id"])
        query = sql.UPSERT_WRITE if all(w[0] in WRITES_IDX_MAP for w in writes) else sql.INSERT_WRITE
        serde = self.serde
        later = self._store_seals
        key = (thread_id, ns, checkpoint_id, task_id, task_path)
        batch = []
        for idx, (ch, value) in enumerate(writes):
            stored_idx = WRITES_IDX_MAP.get(ch, idx)
            body = dumps(serde, value, write_row(thread_id, ns, checkpoint_id, task_id, stored_idx), later)
            batch.append((query, (*key, stored_idx, ch, *body), False))
        if batch:
            yield Write([*self._ensure_thread(thread_id), *batch])

    # -- deleting, copying, pruning -------------------------------------------------------

    def _delete_thread_op(self, thread_id: str) -> Op[None]:
        yield Write([(q, (str(thread_id),), False) for q in self.sql.DELETE_THREAD])
        self._writer.forget(str(thread_id))

    def _remove_op(self, thread_id: str, doomed_in: Any, idle_since: float | None = None) -> Op[int]:
        """Removes the checkpoints ``doomed_in(ns, visible_rows)`` names from sight;
        returns how many. With ``idle_since``, nothing is removed if the thread
        was written after that time (it is in use again).

        Those a surviving checkpoint's DeltaChannel history still walks through
        are hidden instead of deleted; blobs nothing needs any more are freed.
        A concurrent put can make the freeing fail (it stored a delta on a blob
        about to go): the whole removal is then worked out again.
        """
        sql = self.sql
        for attempt in range(3):
            rows, blob_rows = yield Read(
                [(sql.THREAD_CHECKPOINTS, (thread_id,)), (sql.THREAD_BLOB_TYPES, (thread_id,))]
            )
            checkpoints = [ThreadCheckpoint(*r) for r in rows]
            if idle_since is not None and any((c.created_at or 0) > idle_since for c in checkpoints):
                return 0
            removed = 0
            stored = {(ns, ch, ver) for ns, ch, ver, t in blob_rows if t not in sql.NO_SEED_TYPES}
            by_ns: dict[str, dict[str, ThreadCheckpoint]] = {}
            for c in checkpoints:
                by_ns.setdefault(c.checkpoint_ns, {})[c.checkpoint_id] = c
            batch: list[Stmt] = []
            for ns, entries in by_ns.items():
                visible = {cid: c for cid, c in entries.items() if not c.hidden}
                doomed = set(doomed_in(ns, visible))
                if not doomed:
                    continue
                removed += len(doomed)
                survivors = [cid for cid in visible if cid not in doomed]

                def entry(cid: str, entries: Mapping[str, ThreadCheckpoint] = entries) -> Any:
                    c = entries.get(cid)
                    return None if c is None else (_json_text(c.channels), c.parent_checkpoint_id)

                needed = needed_ancestors(
                    survivors, entry, lambda ch, ver, ns=ns, stored=stored: (ns, ch, str(ver)) in stored
                )
                for cid, c in entries.items():
                    if not c.hidden and cid not in doomed:
                        continue  # a survivor stays visible, even when another one needs it
                    if cid in needed:
                        if not c.hidden:
                            batch.append((sql.HIDE_CHECKPOINT, (thread_id, ns, cid), False))
                    else:
                        batch.extend((q, (thread_id, ns, cid), False) for q in sql.DELETE_CHECKPOINT)
            if not batch:
                return 0
            batch.append((sql.GC_BLOBS, (thread_id,), False))
            try:
                yield Write(batch)
            except MissingRowError:
                if attempt == 2:
                    raise
                continue
            self._writer.forget(thread_id)
            return removed
        return 0  # unreachable: the last attempt re-raises

    def _delete_for_runs_op(self, run_ids: Sequence[str]) -> Op[None]:
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        (threads,) = yield Read([(self.sql.THREADS_WITH_RUNS, (json.dumps(sorted(wanted)),))])
        for (thread_id,) in threads:
            yield from self._remove_op(
                thread_id,
                lambda ns, visible: [
                    cid for cid, c in visible.items() if _json_text(c.metadata).get("run_id") in wanted
                ],
            )

    def _prune_op(self, thread_ids: Sequence[str], strategy: str) -> Op[None]:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        strategy = prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == "delete":
                yield from self._delete_thread_op(str(thread_id))
            else:
                yield from self._retain_op(str(thread_id), 1)

    def _copy_thread_op(self, source_thread_id: str, target_thread_id: str) -> Op[None]:
        """Copies the rows in SQL; encrypted bodies are bound to their rows, so
        those copies are encrypted anew for theirs in the same transaction."""
        pair = (str(source_thread_id), str(target_thread_id))
        rebind: list[Stmt] = []
        if layout_of(self.serde).vault is not None:
            rebind, _ = yield from rebody_op(self, pair[1], read_from=pair[0])
        counts = yield Write(
            [*self._ensure_thread(pair[1]), (self.sql.COPY_CHECKPOINTS, (*pair, self.clock()), False)]
            + [(q, pair, False) for q in self.sql.COPY_THREAD_ROWS]
            + rebind
        )
        missed = bool(rebind) and not all(counts[-len(rebind) :])
        for _ in range(_REBIND_PASSES if missed else 0):
            # Rows of the source changed between reading and copying: their
            # copies are still bound to the source. Encrypt those anew.
            fix, _ = yield from rebody_op(self, pair[1], copied_from=pair[0])
            if not fix or all((yield Write(fix))):
                break
        self._writer.forget(str(target_thread_id))

    # -- retention ---------------------------------------------------------------------

    def _retain_op(self, thread_id: str, keep: int, idle_since: float | None = None) -> Op[int]:
        """Keeps the newest ``keep`` checkpoints per namespace of a thread (0:
        none), DeltaChannel-safe; with ``idle_since`` only if the thread was not
        written after it. Returns how many checkpoints were removed."""
        return (
            yield from self._remove_op(
                thread_id, lambda ns, visible: sorted(visible)[: max(0, len(visible) - keep)], idle_since
            )
        )

    def _expired_op(self, idle_since: float, keep: int) -> Op[list[str]]:
        """Threads not written after ``idle_since`` with more than ``keep``
        checkpoints in some namespace."""
        (rows,) = yield Read([(self.sql.EXPIRED_THREADS, (idle_since, keep))])
        return [r[0] for r in rows]

    def _sweep_due(self) -> bool:
        if self.ttl is None:
            return False
        now = self.clock()
        with self._sweep_lock:
            if self._last_sweep is not None and now - self._last_sweep < self.ttl.sweep_interval:
                return False
            self._last_sweep = now
            return True

    def _sweep_op(self) -> Op[int]:
        """Applies the TTL once; returns how many threads it pruned or deleted."""
        if self.ttl is None:
            return 0
        idle_since = self.clock() - self.ttl.ttl
        keep = 1 if self.ttl.strategy == "keep_latest" else 0
        swept = 0
        expired = yield from self._expired_op(idle_since, keep)
        for thread_id in expired[: self.ttl.sweep_limit]:
            if (yield from self._retain_op(thread_id, keep, idle_since)):
                swept += 1
        return swept

    def sweep(self) -> int:
        """Applies the TTL now (puts do it every ``sweep_interval_minutes``);
        returns how many threads were pruned or deleted."""
        return self._run(self._sweep_op())

    # -- the sync API ------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetches a checkpoint with its pending writes.

        Args:
            config: ``thread_id``, optional ``checkpoint_ns`` (default ``""``) and
                ``checkpoint_id`` (default: the thread's latest in that namespace).

        Returns:
            The checkpoint tuple (fresh objects, never shared with another call),
            or None if there is none.
        """
        return self._run(self._get_tuple_op(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Lists checkpoints, newest first.

        Args:
            config: ``thread_id`` (None: every thread), optional ``checkpoint_ns``
                (absent: every namespace) and ``checkpoint_id`` (only that one).
            filter: Metadata every listed checkpoint must contain (keys are
                validated, values bound as parameters).
            before: Only checkpoints with an id below this config's ``checkpoint_id``.
            limit: At most this many.

        Returns:
            An iterator of checkpoint tuples, read page by page.
        """
        for page in self._iter(self._list_op(config, filter, before, limit)):
            yield from page

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The stored history of LangGraph ``DeltaChannel`` channels.

        Args:
            config: The checkpoint to rebuild the channels for.
            channels: The channel names.

        Returns:
            Per channel, its writes oldest first along the parent chain from the
            checkpoint's parent, and ``seed``: the value stored at the nearest
            ancestor that holds one (absent when the walk reaches the root).
        """
        return self._run(self._history_op(config, channels))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Stores a checkpoint in one transaction: its row and the channels
        named in ``new_versions`` (a growing list as the elements it adds).

        Args:
            config: ``thread_id``, ``checkpoint_ns`` and the parent's ``checkpoint_id``.
            checkpoint: The checkpoint.
            metadata: Its metadata (merged with the config's, as upstream).
            new_versions: The channel versions this checkpoint changed.

        Returns:
            The config of the stored checkpoint.
        """
        return self._run(self._put_op(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Stores a task's pending writes for a checkpoint (special writes such
        as interrupts replace earlier ones of the same index, others do not).

        Args:
            config: The checkpoint the writes belong to.
            writes: ``(channel, value)`` pairs.
            task_id: The task that wrote them.
            task_path: The task's path in the graph.
        """
        self._run(self._put_writes_op(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Deletes every checkpoint, write and blob of a thread, in every namespace.

        Args:
            thread_id: The thread.
        """
        self._run(self._delete_thread_op(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Deletes every checkpoint (and its writes) whose metadata names one of ``run_ids``."""
        self._run(self._delete_for_runs_op(run_ids))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: only the newest checkpoint per namespace stays visible
        (DeltaChannel history it needs is kept hidden); ``delete``: the threads are deleted."""
        self._run(self._prune_op(thread_ids, strategy))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copies every checkpoint, write and blob (hidden ancestors included)."""
        self._run(self._copy_thread_op(source_thread_id, target_thread_id))

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The version after ``current``, as upstream's SQL savers write it:
        ``"<counter:032>.<random:016>"``."""
        return next_version(current)

    # -- async twins: the same work on a worker thread (stores release the GIL) ----------
    # (aput / aput_writes run on the event loop when the saver has an async store).
    # Each takes and returns what its sync twin above does.

    async def _astore(self) -> AsyncStore | None:
        """A store ``aput`` / ``aput_writes`` run on, encoding on the event loop
        (as upstream's async savers do); None: on a worker thread."""
        return None

    async def _aready(self) -> None:
        # Only setting up blocks; once set up the store is at hand.
        if not self.is_setup:
            await asyncio.to_thread(self._ready)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async ``get_tuple`` (same arguments and result)."""
        await self._aready()
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async ``list`` (same arguments and result)."""
        await self._aready()
        pages = self._iter(self._list_op(config, filter, before, limit))
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for item in page:
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async ``put`` (same arguments and result)."""
        if (store := await self._astore()) is not None:
            return await arun_op(self._put_op(config, checkpoint, metadata, new_versions), store)
        await self._aready()
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Async ``put_writes`` (same arguments and result)."""
        if (store := await self._astore()) is not None:
            await arun_op(self._put_writes_op(config, writes, task_id, task_path), store)
            return
        await self._aready()
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread`` (same arguments and result)."""
        await self._aready()
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async ``delete_for_runs`` (same arguments and result)."""
        await self._aready()
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread`` (same arguments and result)."""
        await self._aready()
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async ``prune`` (same arguments and result)."""
        await self._aready()
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async ``get_delta_channel_history`` (same arguments and result)."""
        await self._aready()
        return await asyncio.to_thread(self.get_delta_channel_history, config=config, channels=channels)

    async def asweep(self) -> int:
        """Async ``sweep`` (same arguments and result)."""
        await self._aready()
        return await asyncio.to_thread(self.sweep)
