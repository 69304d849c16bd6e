"""Tables written by ``langgraph-checkpoint-postgres``.

Upstream keeps a checkpoint in ``checkpoints`` (JSONB, primitive channel values
inline), its other channel values in ``checkpoint_blobs`` and pending writes in
``checkpoint_writes``. ``UpstreamPostgres`` reads them as records
(``fastcheckpoint._copy``): ``setup()`` re-stores every upstream checkpoint not
yet in ours through our put path (so history gets the same delta storage),
and ``fastcheckpoint migrate`` copies them to any of our databases. Idempotent
and resumable; upstream rows are left in place.

A checkpoint of format v < 4 kept the ``Send``s pending for it as writes of
its parent to ``__pregel_tasks``; upstream's reader moves them into the
checkpoint's ``channel_values`` (at the newest version it has), and so does
ours, before the checkpoint is stored again.
"""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS

from fastcheckpoint._copy import Key, Record, pending
from fastcheckpoint._ops import Op, Read
from fastcheckpoint._storage import move_pending_sends

_COLUMNS = """SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name IN ('checkpoints', 'checkpoint_blobs', 'checkpoint_writes')"""
_CHECKPOINTS = """SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint::text, metadata::text
    FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_ns, checkpoint_id COLLATE "C" """
_BLOBS = "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = ?"
_WRITES = """SELECT checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, blob
    FROM checkpoint_writes WHERE thread_id = ?"""


class UpstreamPostgres:
    """Upstream's tables as a source of records."""

    def __init__(self, serde: SerializerProtocol, cols: dict[str, set[str]]) -> None:
        self.serde = serde
        self.has_blobs = {"channel", "version", "type", "blob"} <= cols.get("checkpoint_blobs", set())
        writes = cols.get("checkpoint_writes", set())
        self.writes_query = None
        if {"task_id", "idx", "channel", "type", "blob"} <= writes:
            self.writes_query = _WRITES.format(task_path="task_path" if "task_path" in writes else "''")

    @classmethod
    def detect_op(cls, serde: SerializerProtocol) -> Op[UpstreamPostgres | None]:
        """The source, or None when there are no upstream tables (or someone
        else's tables with those names)."""
        (columns,) = yield Read([(_COLUMNS, ())])
        cols: dict[str, set[str]] = {}
        for table, column in columns:
            cols.setdefault(table, set()).add(column)
        if not {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint"} <= cols.get("checkpoints", set()):
            return None
        return cls(serde, cols)

    def pending_op(self, done: set[Key]) -> Op[list[tuple[str, int]]]:
        (rows,) = yield Read([("SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints", ())])
        return pending((tuple(r) for r in rows), done)  # type: ignore[misc]

    def records_op(self, thread_id: str) -> Op[list[Record]]:
        queries = [(_CHECKPOINTS, (thread_id,))]
        if self.has_blobs:
            queries.append((_BLOBS, (thread_id,)))
        if self.writes_query:
            queries.append((self.writes_query, (thread_id,)))
        results = yield Read(queries)
        rows = results[0]
        blobs = {(b[0], b[1], b[2]): (b[3], b[4]) for b in (results[1] if self.has_blobs else ())}
        writes: dict[tuple[str, str], list[Any]] = {}
        for w in results[-1] if self.writes_query else ():
            writes.setdefault((w[0], w[1]), []).append((w[2], w[3], w[4], w[5], w[6], bytes(w[7])))
        out = []
        for ns, checkpoint_id, parent_id, checkpoint_json, metadata in rows:
            checkpoint: dict[str, Any] = json.loads(checkpoint_json)
            values: dict[str, Any] = dict(checkpoint.get("channel_values") or {})
            for channel, version in (checkpoint.get("channel_versions") or {}).items():
                blob = blobs.get((ns, channel, str(version)))
                if blob is None:
                    continue
                if blob[0] == "empty":
                    values.pop(channel, None)
                else:
                    values[channel] = self.serde.loads_typed((blob[0], bytes(blob[1])))
            if checkpoint.get("v", 4) < 4 and parent_id:
                sends = ((w[1], w[0], w[2], (w[4], w[5])) for w in writes.get((ns, parent_id), []) if w[3] == TASKS)
                move_pending_sends(checkpoint, values, sends, self.serde.loads_typed)
            checkpoint["channel_values"] = values
            out.append(
                Record(
                    key=(thread_id, ns, checkpoint_id),
                    parent_id=parent_id,
                    checkpoint=checkpoint,
                    metadata=metadata or "{}",
                    writes=writes.get((ns, checkpoint_id), []),
                )
            )
        return out
