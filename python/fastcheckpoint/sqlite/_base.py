"""The one implementation behind ``SqliteSaver`` and ``AsyncSqliteSaver``.

Encoding and deltas go through the shared storage model (``_storage``); every
statement runs in the Rust store (``_native.SqliteStore``): one ``BEGIN
IMMEDIATE`` transaction per put, per put_writes, per delete; reads in one
snapshot. The savers differ only in how they learn the database path from the
connection they are given and in how ``setup`` is awaited.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
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
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fastcheckpoint._native import DeltaWriter, SqliteStore
from fastcheckpoint._storage import (
    Stored,
    checkpoint_ns_of,
    encode_channels,
    load_channel,
    needed_ancestors,
    thread_id_of,
)
from fastcheckpoint.errors import ConfigError, MissingRowError
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import _schema as sql
from fastcheckpoint.sqlite._legacy import migrate_upstream

# Checkpoints fetched per round trip when listing.
LIST_PAGE = 64


def _metadata_json(config: RunnableConfig, metadata: CheckpointMetadata) -> str:
    # As upstream: JSON, unencodable code points dropped.
    text = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False)
    return text.encode("utf-8", "ignore").decode("utf-8")


# Filter keys become part of a JSON path in SQL: only these characters (CVE-2025-67644).
_FILTER_KEY = re.compile(r"^[a-zA-Z0-9_.-]+$")


def _metadata_predicate(key: str, value: Any) -> tuple[str, Any]:
    """``json_extract`` predicate for one metadata filter entry, as upstream
    SqliteSaver builds it; the key is validated, the value always bound."""
    if not isinstance(key, str) or not _FILTER_KEY.match(key):
        raise ConfigError(
            f"Invalid filter key: {key!r}. Filter keys must contain only alphanumeric characters, "
            "underscores, dots, and hyphens."
        )
    column = f"json_extract(metadata, '$.{key}')"
    if value is None:
        return f"{column} IS ?", None
    if isinstance(value, bool):
        return f"{column} = ?", int(value)
    if isinstance(value, (str, int, float)):
        return f"{column} = ?", value
    if isinstance(value, (dict, list)):
        # json_extract returns nested JSON minified.
        return f"{column} = ?", json.dumps(value, separators=(",", ":"))
    return f"{column} = ?", str(value)


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


class SqliteSaverBase(BaseCheckpointSaver[str]):
    """Shared logic; subclasses provide ``setup`` / ``_ready`` for their connection type."""

    serde: SerializerProtocol = RustSerializer()
    is_setup: bool
    _has_task_path: bool = True

    def __init__(
        self,
        conn: Any,
        *,
        serde: SerializerProtocol | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(serde=serde)
        self.conn = conn
        if str(synchronous).upper() not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.jsonplus_serde = JsonPlusSerializer()
        self.synchronous = str(synchronous).upper()
        self.busy_timeout = float(busy_timeout)
        self.is_setup = False
        self._store: SqliteStore | None = None
        self._writer = DeltaWriter()
        self._setup_lock = threading.Lock()

    def _open(self, path: str) -> None:
        """Opens the store at ``path``, applies pending migrations and takes
        over an upstream-written database (once)."""
        with self._setup_lock:
            if self.is_setup:
                return
            store = SqliteStore(path, synchronous=self.synchronous, busy_timeout=self.busy_timeout)
            try:
                migrate_schema(store)
                migrate_upstream(self, store)
            except BaseException:
                store.close()
                raise
            self._store = store
            self.is_setup = True

    def _ready(self) -> SqliteStore:
        """The store, set up on first use (how depends on the connection type)."""
        raise NotImplementedError("subclasses open the store")

    async def _aready(self) -> SqliteStore:
        return self._ready()

    def close(self) -> None:
        """Closes the saver's own connection (the one passed in stays the caller's)."""
        if self._store is not None:
            self._store.close()

    # -- reading -------------------------------------------------------------------

    def _tuple(
        self,
        row: Sequence[Any],
        blobs: Mapping[tuple[Any, ...], Stored],
        writes: Sequence[Sequence[Any]],
        cache: dict[tuple[Any, ...], Any],
        config: RunnableConfig | None = None,
    ) -> CheckpointTuple:
        thread_id, ns, checkpoint_id, parent_id, type_, data, metadata = row[:7]
        serde = self.serde
        checkpoint: Checkpoint = serde.loads_typed((type_, data))
        values: dict[str, Any] = {}
        for ch, ver in checkpoint["channel_versions"].items():
            key = (thread_id, ns, ch, str(ver))
            typed = blobs.get(key)
            if typed is None or typed[0] == "empty":
                continue
            values[ch] = load_channel(
                serde,
                key,
                blobs.get,
                cache,
                lambda ch=ch: f"thread {thread_id!r} checkpoint_ns {ns!r} checkpoint {checkpoint_id!r} channel {ch!r}",
            )
        pending: list[PendingWrite] = [
            (w[0], w[1], serde.loads_typed((w[2], w[3])))
            for w in sorted(writes, key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        ]
        return CheckpointTuple(
            config=config or _config(thread_id, ns, checkpoint_id),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=json.loads(metadata) if metadata else {},
            parent_config=_config(thread_id, ns, parent_id) if parent_id else None,
            pending_writes=pending,
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoint_id = get_checkpoint_id(config)
        params = (thread_id, ns, checkpoint_id)
        rows, blob_rows, write_rows = self._ready().read(
            [(sql.GET_CHECKPOINT, params), (sql.GET_BLOBS, params), (sql.GET_WRITES, params)]
        )
        if not rows:
            return None
        blobs = {tuple(b[:4]): b[4:] for b in blob_rows}
        writes = [w[1:] for w in write_rows]
        return self._tuple((thread_id, ns, *rows[0]), blobs, writes, {}, config if checkpoint_id else None)

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
        for key, value in (filter or {}).items():
            predicate, param = _metadata_predicate(key, value)
            wheres.append(predicate)
            params.append(param)
        if before is not None:
            wheres.append("checkpoint_id < ?")
            params.append(get_checkpoint_id(before))
        return wheres, params

    def _list_pages(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Iterator[list[CheckpointTuple]]:
        """Newest first, a page per round trip (each page one consistent read).

        Versions decoded for one checkpoint are reused for the others: list
        elements unchanged between checkpoints are decoded once and the
        returned checkpoints share those objects (as a graph's own channel
        values share them from one step to the next)."""
        wheres, params = self._where(config, filter, before)
        cache: dict[tuple[Any, ...], Any] = {}
        store = self._ready()
        remaining = limit
        after: tuple[str, str, str] | None = None
        while remaining is None or remaining > 0:
            n = LIST_PAGE if remaining is None else min(LIST_PAGE, remaining)
            page_wheres, page_params = list(wheres), list(params)
            if after is not None:
                page_wheres.append("(checkpoint_id, thread_id, checkpoint_ns) < (?, ?, ?)")
                page_params.extend(after)
            args = (*page_params, n)
            page, blobs_q, writes_q = sql.list_queries("WHERE " + " AND ".join(page_wheres))
            rows, blob_rows, write_rows = store.read([(page, args), (blobs_q, args), (writes_q, args)])
            blobs = {tuple(b[:4]): b[4:] for b in blob_rows}
            writes: dict[tuple[str, str, str], list[Sequence[Any]]] = {}
            for w in write_rows:
                writes.setdefault(tuple(w[:3]), []).append(w[3:])
            yield [self._tuple(r, blobs, writes.get(tuple(r[:3]), []), cache) for r in rows]
            if len(rows) < n:
                return
            last = rows[-1]
            after = (last[2], last[0], last[1])
            if remaining is not None:
                remaining -= len(rows)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        for page in self._list_pages(config, filter, before, limit):
            yield from page

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Walks the target's parent chain in one query, then fetches the
        chain's writes and the seeds in a second."""
        if not channels:
            return {}
        channels = list(channels)
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        store = self._ready()
        ancestors, blob_types = store.read(
            [
                (sql.ANCESTORS, (thread_id, ns, get_checkpoint_id(config))),
                (sql.BLOB_TYPES, (thread_id, ns, json.dumps(channels))),
            ]
        )
        stored = {(ch, ver) for ch, ver, t in blob_types if t != "empty"}
        chain: dict[str, list[str]] = {ch: [] for ch in channels}  # nearest first
        seeds: dict[str, str] = {}  # channel -> version of its seed
        remaining = set(channels)
        for cid, channels_json in ancestors:
            if not remaining:
                break
            versions = json.loads(channels_json)
            for ch in list(remaining):
                chain[ch].append(cid)
                ver = versions.get(ch)
                if ver is not None and (ch, str(ver)) in stored:
                    seeds[ch] = str(ver)
                    remaining.discard(ch)
        cids = sorted({cid for lst in chain.values() for cid in lst})
        write_rows, seed_rows = store.read(
            [
                (sql.WRITES_FOR, (thread_id, ns, json.dumps(cids), json.dumps(channels))),
                (sql.GET_BLOBS_FOR, (thread_id, ns, json.dumps([[ch, v] for ch, v in seeds.items()]))),
            ]
        )
        by_cid: dict[str, list[Sequence[Any]]] = {}
        for w in write_rows:
            by_cid.setdefault(w[0], []).append(w[1:])
        for lst in by_cid.values():
            lst.sort(key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        blobs = {tuple(b[:4]): b[4:] for b in seed_rows}
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            writes: list[PendingWrite] = [
                (w[0], w[1], self.serde.loads_typed((w[2], w[3])))
                for cid in reversed(chain[ch])
                for w in by_cid.get(cid, ())
                if w[1] == ch
            ]
            h: DeltaChannelHistory = {"writes": writes}
            if ch in seeds:
                h["seed"] = load_channel(
                    self.serde,
                    (thread_id, ns, ch, seeds[ch]),
                    blobs.get,
                    {},
                    lambda ch=ch: f"thread {thread_id!r} checkpoint_ns {ns!r} channel {ch!r} version {seeds[ch]}",
                )
            result[ch] = h
        return result

    # -- writing ---------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        store = self._ready()
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        serde = self.serde
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        row = (
            thread_id,
            ns,
            checkpoint["id"],
            config["configurable"].get("checkpoint_id"),
            *serde.dumps_typed(c),
            _metadata_json(config, metadata),
            json.dumps(c["channel_versions"]),
        )
        self._put_rows(store, serde, row, values, new_versions)
        return _config(thread_id, ns, checkpoint["id"])

    def _put_rows(
        self,
        store: SqliteStore,
        serde: SerializerProtocol,
        row: tuple[Any, ...],
        values: Mapping[str, Any],
        new_versions: ChannelVersions,
        extra: Sequence[tuple[str, Sequence[Any], bool]] = (),
    ) -> None:
        """One transaction: the checkpoint row, its changed channels' blobs (and
        ``extra`` statements)."""
        thread_id, ns = row[0], row[1]
        for attempt in range(2):
            batch: list[tuple[str, Sequence[Any], bool]] = [(sql.INSERT_CHECKPOINT, row, False), *extra]
            blob_at: list[int] = []
            for ch, ver, type_, data, base in encode_channels(serde, self._writer, thread_id, ns, values, new_versions):
                if base is not None:
                    batch.append((sql.BASE_EXISTS, (thread_id, ns, ch, base), True))
                blob_at.append(len(batch))
                batch.append((sql.INSERT_BLOB, (thread_id, ns, ch, str(ver), type_, data, base), False))
            try:
                counts = store.write(batch)
            except MissingRowError:
                # A delta's base was removed by another saver or process since
                # we wrote it: start this thread's lists over from keyframes.
                self._writer.forget(thread_id)
                if attempt:
                    raise
                continue
            except BaseException:
                # Nothing was stored: what the writer remembers is not on disk.
                self._writer.forget(thread_id)
                raise
            if any(counts[i] == 0 for i in blob_at):
                # A (channel, version) was already stored (a repeated put): the
                # stored row, not ours, is the base future deltas must use.
                self._writer.forget(thread_id)
            return

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        store = self._ready()
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoint_id = str(config["configurable"]["checkpoint_id"])
        query = sql.UPSERT_WRITE if all(w[0] in WRITES_IDX_MAP for w in writes) else sql.INSERT_WRITE
        serde = self.serde
        key = (thread_id, ns, checkpoint_id, task_id, task_path)
        batch = [
            (query, (*key, WRITES_IDX_MAP.get(ch, idx), ch, *serde.dumps_typed(value)), False)
            for idx, (ch, value) in enumerate(writes)
        ]
        if batch:
            store.write(batch)

    # -- deleting, copying, pruning -------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        store = self._ready()
        store.write([(q, (str(thread_id),), False) for q in sql.DELETE_THREAD])
        self._writer.forget(str(thread_id))

    def _remove(self, thread_id: str, doomed_in: Any) -> None:
        """Removes the checkpoints ``doomed_in(ns, ids, rows)`` names from sight.

        Those a surviving checkpoint's DeltaChannel history still walks through
        are hidden instead of deleted; blobs nothing needs any more are freed.
        """
        store = self._ready()
        rows, blob_rows = store.read([(sql.THREAD_CHECKPOINTS, (thread_id,)), (sql.THREAD_BLOB_TYPES, (thread_id,))])
        stored = {(ns, ch, ver) for ns, ch, ver, t in blob_rows if t != "empty"}
        by_ns: dict[str, dict[str, tuple[Any, ...]]] = {}
        for r in rows:
            by_ns.setdefault(r[0], {})[r[1]] = r
        batch: list[tuple[str, Sequence[Any], bool]] = []
        for ns, entries in by_ns.items():
            visible = {cid: r for cid, r in entries.items() if not r[4]}
            doomed = set(doomed_in(ns, visible))
            if not doomed:
                continue
            survivors = [cid for cid in visible if cid not in doomed]

            def entry(cid: str, entries: Mapping[str, tuple[Any, ...]] = entries) -> Any:
                r = entries.get(cid)
                return None if r is None else (json.loads(r[3]), r[2])

            needed = needed_ancestors(survivors, entry, lambda ch, ver, ns=ns: (ns, ch, str(ver)) in stored)
            for cid, r in entries.items():
                if cid in needed:
                    if not r[4]:
                        batch.append((sql.HIDE_CHECKPOINT, (thread_id, ns, cid), False))
                elif cid in doomed or r[4]:
                    batch.extend((q, (thread_id, ns, cid), False) for q in sql.DELETE_CHECKPOINT)
        if batch:
            batch.append((sql.GC_BLOBS, (thread_id,), False))
            store.write(batch)
            self._writer.forget(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Deletes every checkpoint (and its writes) whose metadata names one of ``run_ids``."""
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        (threads,) = self._ready().read([(sql.THREADS_WITH_RUNS, (json.dumps(sorted(wanted)),))])
        for (thread_id,) in threads:
            self._remove(
                thread_id,
                lambda ns, visible: [cid for cid, r in visible.items() if json.loads(r[5]).get("run_id") in wanted],
            )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: only the newest checkpoint per namespace stays visible;
        ``delete``: the threads are deleted."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
            else:
                self._remove(str(thread_id), lambda ns, visible: sorted(visible)[:-1])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copies every checkpoint, write and blob (hidden ancestors included)."""
        store = self._ready()
        store.write([(q, (str(source_thread_id), str(target_thread_id)), False) for q in sql.COPY_THREAD])
        self._writer.forget(str(target_thread_id))

    # -- async twins: the same work on a worker thread (the store releases the GIL) ----------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
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
        await self._aready()
        pages = self._list_pages(config, filter, before, limit)
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
        await self._aready()
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._aready()
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._aready()
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._aready()
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._aready()
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._aready()
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        await self._aready()
        return await asyncio.to_thread(self.get_delta_channel_history, config=config, channels=channels)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # As upstream SqliteSaver: "<counter:032>.<random:016>".
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"


def migrate_schema(store: SqliteStore) -> None:
    """Applies pending migrations, each in its own transaction; safe when
    several processes open the same file at once."""
    store.execute_script(sql.CREATE_VERSION_TABLE)
    for _ in range(10 * len(sql.MIGRATIONS) + 10):
        ((version,),) = store.read([(sql.GET_VERSION, ())])[0]
        version = version or 0
        if version >= sql.SCHEMA_VERSION:
            if version > sql.SCHEMA_VERSION:
                raise ConfigError(
                    f"this database has fastcheckpoint schema version {version}, newer than this "
                    f"release understands ({sql.SCHEMA_VERSION}): upgrade fastcheckpoint"
                )
            return
        step = [(sql.CHECK_VERSION, (version,), True)]
        step += [(stmt, (), False) for stmt in sql.MIGRATIONS[version]]
        step.append((sql.SET_VERSION, (version + 1,), False))
        try:
            store.write(step)
        except MissingRowError:
            continue  # another process applied this step first
    raise ConfigError("could not bring the fastcheckpoint schema up to date")
