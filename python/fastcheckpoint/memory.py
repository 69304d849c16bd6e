"""``InMemorySaver`` (alias ``MemorySaver``): drop-in for LangGraph's, on the Rust codec.

Same constructor, attributes (``storage``, ``writes``, ``blobs``, ``serde``) and
behaviour as ``langgraph.checkpoint.memory.InMemorySaver`` (it subclasses it), but:

* blobs are written through the shared storage model (``_storage``): only changed
  channels, element deltas for growing lists, checksummed envelopes;
* ``delete_for_runs``, ``copy_thread`` and ``prune`` are implemented and keep
  ``DeltaChannel`` history intact: ancestors a surviving checkpoint still needs
  are kept out of sight in ``retained`` instead of being dropped;
* a missing ``thread_id`` is a ``ConfigError`` (a ``KeyError``) with a clear message.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver as _UpstreamInMemorySaver

from fastcheckpoint._native import ENVELOPE_TYPE, DeltaWriter, delta_base
from fastcheckpoint._retention import prune_strategy
from fastcheckpoint._storage import (
    INLINE,
    blob_channels,
    blob_closure,
    channels_of,
    checkpoint_ns_of,
    encode_channels,
    inline_values,
    load_channel,
    needed_ancestors,
    thread_id_of,
)
from fastcheckpoint.serde import RustSerializer

# (checkpoint typed, metadata typed, parent checkpoint id)
Entry = tuple[tuple[str, bytes], tuple[str, bytes], str | None]


class InMemorySaver(_UpstreamInMemorySaver):
    """An in-memory checkpoint saver whose encoding and deltas run in Rust."""

    serde: SerializerProtocol = RustSerializer()

    def __init__(self, *, serde: SerializerProtocol | None = None, factory: type[defaultdict] = defaultdict) -> None:
        super().__init__(serde=serde, factory=factory)
        self._writer = DeltaWriter()
        # thread ID -> checkpoint NS -> checkpoint ID -> entry, for checkpoints that
        # were deleted or pruned but whose writes a surviving checkpoint's
        # DeltaChannel history still needs. Never listed, never returned.
        self.retained: defaultdict[str, dict[str, dict[str, Entry]]] = defaultdict(lambda: defaultdict(dict))

    # -- reading -----------------------------------------------------------------

    def _entry(self, thread_id: str, ns: str, checkpoint_id: str) -> Entry | None:
        found = self.storage.get(thread_id, {}).get(ns, {}).get(checkpoint_id)
        if found is None:
            found = self.retained.get(thread_id, {}).get(ns, {}).get(checkpoint_id)
        return found

    def _stores_value(self, thread_id: str, ns: str, channel: str, version: Any) -> bool:
        """False for a missing or "empty" blob (how DeltaChannel stores non-snapshot steps)."""
        typed = self.blobs.get((thread_id, ns, channel, version))
        return typed is not None and typed[0] != "empty"

    def _fetch(self, key: tuple[Any, ...]) -> tuple[str, bytes, str | None] | None:
        typed = self.blobs.get(key)
        if typed is None:
            return None
        type_, data = typed
        return type_, data, delta_base(data) if type_ == ENVELOPE_TYPE else None

    def _load_blob(self, thread_id: str, ns: str, channel: str, version: Any) -> tuple[bool, Any]:
        """(found, value) of one stored channel blob; "empty" blobs are not found."""
        if not self._stores_value(thread_id, ns, channel, version):
            return False, None
        return True, load_channel(
            self.serde,
            (thread_id, ns, channel, version),
            self._fetch,
            None,
            lambda: f"thread {thread_id!r} checkpoint_ns {ns!r} channel {channel!r} version {version}",
            at_rest=False,
        )

    def _values(self, thread_id: str, checkpoint_ns: str, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """A stored checkpoint record's channel values: from blobs, and those it holds inline."""
        result: dict[str, Any] = {}
        for k, ver in blob_channels(checkpoint):
            found, value = self._load_blob(thread_id, checkpoint_ns, k, ver)
            if found:
                result[k] = value
        result.update(checkpoint.get("channel_values") or {})
        return result

    def _tuple(
        self, thread_id: str, ns: str, checkpoint_id: str, saved: Entry, metadata: CheckpointMetadata | None = None
    ) -> CheckpointTuple:
        checkpoint_b, metadata_b, parent_id = saved
        checkpoint: Checkpoint = self.serde.loads_typed(checkpoint_b)
        writes = self._ordered_writes(thread_id, ns, checkpoint_id)
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}},
            checkpoint={
                **checkpoint,
                "channel_values": self._values(thread_id, ns, checkpoint),
            },
            metadata=self.serde.loads_typed(metadata_b) if metadata is None else metadata,
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent_id}}
                if parent_id
                else None
            ),
            pending_writes=[(tid, c, self.serde.loads_typed(v)) for tid, c, v, _ in writes],
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetches a checkpoint with its pending writes (see ``SqliteSaver.get_tuple``).

        Args:
            config: ``thread_id``, optional ``checkpoint_ns`` and ``checkpoint_id``.

        Returns:
            The checkpoint tuple, or None.
        """
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoints = self.storage.get(thread_id, {}).get(ns)
        if not checkpoints:
            return None
        checkpoint_id = get_checkpoint_id(config) or max(checkpoints)
        saved = checkpoints.get(checkpoint_id)
        if saved is None:
            return None
        tup = self._tuple(thread_id, ns, checkpoint_id, saved)
        if get_checkpoint_id(config):
            # As upstream: the caller's config is returned as given.
            tup = tup._replace(config=config)
        return tup

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Lists checkpoints newest first (see ``SqliteSaver.list``).

        Args:
            config: ``thread_id`` (None: every thread), optional ``checkpoint_ns``, ``checkpoint_id``.
            filter: Metadata every listed checkpoint must contain.
            before: Only checkpoints with an id below this config's.
            limit: At most this many.

        Returns:
            An iterator of checkpoint tuples.
        """
        thread_ids = (thread_id_of(config),) if config else tuple(self.storage)
        config_ns = config["configurable"].get("checkpoint_ns") if config else None
        config_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        for thread_id in thread_ids:
            for ns, checkpoints in tuple(self.storage.get(thread_id, {}).items()):
                if config_ns is not None and ns != config_ns:
                    continue
                for checkpoint_id in sorted(checkpoints, reverse=True):
                    if config_id and checkpoint_id != config_id:
                        continue
                    if before_id and checkpoint_id >= before_id:
                        continue
                    saved = checkpoints[checkpoint_id]
                    metadata = self.serde.loads_typed(saved[1]) if filter else None
                    if filter and not all(v == metadata.get(k) for k, v in filter.items()):
                        continue
                    if limit is not None:
                        if limit <= 0:
                            return
                        limit -= 1
                    yield self._tuple(thread_id, ns, checkpoint_id, saved, metadata)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Walks the parent chain once for all channels (retained ancestors included)."""
        if not channels:
            return {}
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        checkpoint_id = get_checkpoint_id(config) or max(self.storage.get(thread_id, {}).get(ns, {}), default="")
        target = self._entry(thread_id, ns, checkpoint_id)
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        current = target[2] if target is not None else None
        while current is not None and remaining:
            entry = self._entry(thread_id, ns, current)
            if entry is None:
                break
            record = self.serde.loads_typed(entry[0])
            versions = channels_of(record)
            terminated: dict[str, Any] = {}
            for ch in remaining:
                if (ver := versions.get(ch)) == INLINE:
                    terminated[ch] = record["channel_values"][ch]
                elif ver is not None:
                    found, value = self._load_blob(thread_id, ns, ch, ver)
                    if found:
                        terminated[ch] = value
            for tid, ch, serialized, _ in reversed(self._ordered_writes(thread_id, ns, current)):
                if ch in remaining:
                    collected[ch].append((tid, ch, self.serde.loads_typed(serialized)))
            for ch, value in terminated.items():
                seeds[ch] = value
                remaining.discard(ch)
            current = entry[2]
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            h: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
            if ch in seeds:
                h["seed"] = seeds[ch]
            result[ch] = h
        return result

    # -- writing -----------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Stores a checkpoint: the channels named in ``new_versions`` (a growing
        list as the elements it adds).

        Args:
            config: ``thread_id``, ``checkpoint_ns`` and the parent's ``checkpoint_id``.
            checkpoint: The checkpoint.
            metadata: Its metadata.
            new_versions: The channel versions this checkpoint changed.

        Returns:
            The config of the stored checkpoint.
        """
        thread_id = thread_id_of(config)
        ns = checkpoint_ns_of(config)
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        # A re-put stores its values inline and keeps every stored blob: a
        # later version may be a delta of one.
        reput = checkpoint["id"] in self.storage.get(thread_id, {}).get(ns, {})
        inline_values(c, values, reput)  # type: ignore[arg-type]
        kept = False
        for ch, ver, type_, data, _, rewrite in encode_channels(
            self.serde, self._writer, thread_id, ns, values, new_versions, reput=reput, at_rest=False
        ):
            if rewrite:
                # A version the segment just stored covers: the same value, as a pointer into it.
                if (thread_id, ns, ch, ver) in self.blobs:
                    self.blobs[(thread_id, ns, ch, ver)] = (type_, data)
                continue
            if reput and (thread_id, ns, ch, ver) in self.blobs:
                kept = True
            else:
                self.blobs[(thread_id, ns, ch, ver)] = (type_, data)
        if kept:
            # What the writer encoded for a kept version is not what is stored.
            self._writer.forget(thread_id)
        self.storage[thread_id][ns][checkpoint["id"]] = (
            self.serde.dumps_typed(c),
            self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            config["configurable"].get("checkpoint_id"),
        )
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Stores a task's pending writes for a checkpoint.

        Args:
            config: The checkpoint the writes belong to.
            writes: ``(channel, value)`` pairs.
            task_id: The task that wrote them.
            task_path: The task's path in the graph.
        """
        thread_id_of(config)
        super().put_writes(config, writes, task_id, task_path)

    # -- deleting, copying, pruning ---------------------------------------------------

    def _drop_blobs(self, thread_id: str) -> None:
        """Frees blobs no visible or retained checkpoint of the thread refers to."""
        referenced: set[tuple[Any, ...]] = set()
        for tree in (self.storage.get(thread_id, {}), self.retained.get(thread_id, {})):
            for ns, checkpoints in tree.items():
                for saved in checkpoints.values():
                    record = self.serde.loads_typed(saved[0])
                    referenced.update((thread_id, ns, ch, ver) for ch, ver in blob_channels(record))
        keep = blob_closure(referenced, self.blobs)
        for k in [k for k in self.blobs if k[0] == thread_id and k not in keep]:
            del self.blobs[k]
        self._writer.forget(thread_id)

    def _needed_ancestors(self, thread_id: str, ns: str, survivors: Sequence[str]) -> set[str]:
        def entry(cid: str) -> tuple[Mapping[str, Any], str | None] | None:
            found = self._entry(thread_id, ns, cid)
            if found is None:
                return None
            return channels_of(self.serde.loads_typed(found[0])), found[2]

        return needed_ancestors(survivors, entry, lambda ch, ver: self._stores_value(thread_id, ns, ch, ver))

    def _remove(self, thread_id: str, ns: str, doomed: set[str]) -> None:
        """Removes checkpoints from sight, retaining those survivors still need."""
        checkpoints = self.storage.get(thread_id, {}).get(ns, {})
        survivors = [cid for cid in checkpoints if cid not in doomed]
        needed = self._needed_ancestors(thread_id, ns, survivors)
        retained_ns = self.retained[thread_id][ns]
        for cid in doomed:
            entry = checkpoints.pop(cid, None)
            if entry is None:
                continue
            if cid in needed:
                retained_ns[cid] = entry
            else:
                self.writes.pop((thread_id, ns, cid), None)
        # Retained ancestors nothing needs any more are freed.
        for cid in [cid for cid in retained_ns if cid not in needed]:
            del retained_ns[cid]
            self.writes.pop((thread_id, ns, cid), None)
        if not checkpoints:
            self.storage.get(thread_id, {}).pop(ns, None)

    def delete_thread(self, thread_id: str) -> None:
        """Deletes every checkpoint, write and blob of a thread.

        Args:
            thread_id: The thread.
        """
        super().delete_thread(thread_id)
        self.retained.pop(thread_id, None)
        self._writer.forget(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Deletes every checkpoint (and its writes) whose metadata names one of ``run_ids``."""
        wanted = set(run_ids)
        if not wanted:
            return
        for thread_id in list(self.storage):
            touched = False
            for ns, checkpoints in list(self.storage[thread_id].items()):
                doomed = {
                    cid
                    for cid, saved in checkpoints.items()
                    if self.serde.loads_typed(saved[1]).get("run_id") in wanted
                }
                if doomed:
                    self._remove(thread_id, ns, doomed)
                    touched = True
            if touched:
                self._drop_blobs(thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: only the newest checkpoint per namespace stays visible;
        ``delete``: the threads are deleted."""
        strategy = prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            for ns, checkpoints in list(self.storage.get(thread_id, {}).items()):
                if checkpoints:
                    latest = max(checkpoints)
                    self._remove(thread_id, ns, {cid for cid in checkpoints if cid != latest})
            if thread_id in self.storage:
                self._drop_blobs(thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copies every checkpoint, write and blob (retained ancestors included)."""
        for src, dst in ((self.storage, self.storage), (self.retained, self.retained)):
            for ns, checkpoints in src.get(source_thread_id, {}).items():
                dst[target_thread_id][ns].update(checkpoints)
        for k, v in list(self.writes.items()):
            if k[0] == source_thread_id:
                self.writes[(target_thread_id, *k[1:])] = dict(v)
        for k, v in list(self.blobs.items()):
            if k[0] == source_thread_id:
                self.blobs[(target_thread_id, *k[1:])] = v
        self._writer.forget(target_thread_id)

    # -- async twins (in-memory work never blocks: run inline) ---------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async ``get_tuple`` (same arguments and result)."""
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async ``list`` (same arguments and result)."""
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item
            await asyncio.sleep(0)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async ``put`` (same arguments and result)."""
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Async ``put_writes`` (same arguments and result)."""
        return self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread`` (same arguments and result)."""
        return self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async ``delete_for_runs`` (same arguments and result)."""
        return self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread`` (same arguments and result)."""
        return self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async ``prune`` (same arguments and result)."""
        return self.prune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async ``get_delta_channel_history`` (same arguments and result)."""
        return self.get_delta_channel_history(config=config, channels=channels)


MemorySaver = InMemorySaver

__all__ = ["InMemorySaver", "MemorySaver"]
