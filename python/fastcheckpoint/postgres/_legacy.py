"""Taking over tables written by ``langgraph-checkpoint-postgres``.

Upstream keeps a checkpoint in ``checkpoints`` (JSONB, primitive channel values
inline), its other channel values in ``checkpoint_blobs`` and pending writes in
``checkpoint_writes``. ``setup()`` re-stores every upstream checkpoint not yet
in ``fc_checkpoints`` through our normal put path (so history gets the same
delta storage), oldest first per thread, one transaction per checkpoint with
its writes. Idempotent and resumable; upstream rows are left in place.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastcheckpoint._saver import Op, Read

if TYPE_CHECKING:
    from fastcheckpoint._saver import StoreSaver

_COLUMNS = """SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name IN ('checkpoints', 'checkpoint_blobs', 'checkpoint_writes')"""
_NOT_YET_COPIED = """SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints c WHERE NOT EXISTS (
    SELECT 1 FROM fc_checkpoints f WHERE f.thread_id = c.thread_id AND f.checkpoint_ns = c.checkpoint_ns
    AND f.checkpoint_id = c.checkpoint_id) ORDER BY thread_id, checkpoint_ns, checkpoint_id COLLATE "C" """
_ROW = """SELECT parent_checkpoint_id, checkpoint::text, metadata::text FROM checkpoints
    WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3"""
_BLOBS = """SELECT bl.channel, bl.type, bl.blob FROM checkpoints c
    CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') v
    JOIN checkpoint_blobs bl ON bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns
        AND bl.channel = v.key AND bl.version = v.value
    WHERE c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = ?3"""
_COPY_WRITES = """INSERT INTO fc_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)
    SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, blob
    FROM checkpoint_writes WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3
    ON CONFLICT DO NOTHING"""


def migrate_upstream_op(saver: StoreSaver) -> Op[int]:
    """Copies upstream checkpoints (and their writes) into our tables; returns how many."""
    (columns,) = yield Read([(_COLUMNS, ())])
    cols: dict[str, set[str]] = {}
    for table, column in columns:
        cols.setdefault(table, set()).add(column)
    if not {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint"} <= cols.get("checkpoints", set()):
        return 0  # no upstream tables (or someone else's of that name): leave them alone
    has_blobs = {"channel", "version", "type", "blob"} <= cols.get("checkpoint_blobs", set())
    writes_cols = cols.get("checkpoint_writes", set())
    copy_writes = None
    if {"task_id", "idx", "channel", "type", "blob"} <= writes_cols:
        copy_writes = _COPY_WRITES.format(task_path="task_path" if "task_path" in writes_cols else "''")
    (todo,) = yield Read([(_NOT_YET_COPIED, ())])
    if not todo:
        return 0
    from tqdm import tqdm

    serde = saver.serde
    stored: set[tuple[str, ...]] = set()
    for thread_id, ns, checkpoint_id in tqdm(todo, desc="fastcheckpoint: migrating upstream checkpoints", disable=None):
        key = (thread_id, ns, checkpoint_id)
        queries = [(_ROW, key)] + ([(_BLOBS, key)] if has_blobs else [])
        rows, *blob_rows = yield Read(queries)
        if not rows:
            continue  # deleted meanwhile
        parent_id, checkpoint_json, metadata = rows[0]
        checkpoint: dict[str, Any] = json.loads(checkpoint_json)
        values: dict[str, Any] = dict(checkpoint.get("channel_values") or {})
        for channel, type_, blob in blob_rows[0] if blob_rows else ():
            if type_ == "empty":
                values.pop(channel, None)
            else:
                values[channel] = serde.loads_typed((type_, bytes(blob)))
        checkpoint["channel_values"] = values
        extra = [(copy_writes, key, False)] if copy_writes else []
        yield from saver._restore_op(key, parent_id, checkpoint, metadata, stored, extra)
    return len(todo)
