"""Taking over a database written by ``langgraph-checkpoint-sqlite``.

Upstream keeps each checkpoint whole (all channel values inline) in
``checkpoints`` and pending writes in ``writes``. The first time one of our
savers opens such a file, every upstream checkpoint not yet in ``fc_checkpoints``
is re-stored through our normal put path (so history gets the same delta
storage), oldest first per thread, one transaction per checkpoint together with
its writes. It is idempotent and resumable: an interrupted migration continues
where it stopped; upstream rows are left in place (nothing is deleted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcheckpoint._native import SqliteStore

if TYPE_CHECKING:
    from fastcheckpoint.sqlite._base import SqliteSaverBase

_UPSTREAM_COLUMNS = {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "type", "checkpoint"}
_NOT_YET_COPIED = """SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints c WHERE NOT EXISTS (
    SELECT 1 FROM fc_checkpoints f WHERE f.thread_id = c.thread_id AND f.checkpoint_ns = c.checkpoint_ns
    AND f.checkpoint_id = c.checkpoint_id) ORDER BY thread_id, checkpoint_ns, checkpoint_id"""
_ROW = """SELECT parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints
    WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"""
_COPY_WRITES = """INSERT OR IGNORE INTO fc_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)
    SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, value FROM writes
    WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"""


def _columns(store: SqliteStore, table: str) -> set[str]:
    return {r[1] for r in store.read([(f"PRAGMA table_info({table})", ())])[0]}


def migrate_upstream(saver: SqliteSaverBase, store: SqliteStore) -> int:
    """Copies upstream checkpoints (and their writes) into our tables; returns how many."""
    cols = _columns(store, "checkpoints")
    if not _UPSTREAM_COLUMNS <= cols:
        return 0  # no upstream table (or someone else's table of that name): leave it alone
    (todo,) = store.read([(_NOT_YET_COPIED, ())])
    if not todo:
        return 0
    write_cols = _columns(store, "writes")
    copy_writes = None
    if {"task_id", "idx", "channel", "type", "value"} <= write_cols:
        copy_writes = _COPY_WRITES.format(task_path="task_path" if "task_path" in write_cols else "''")
    from tqdm import tqdm

    serde = saver.serde
    # (thread, ns, channel, version) already stored by this migration.
    stored: set[tuple[str, ...]] = set()
    for thread_id, ns, checkpoint_id in tqdm(todo, desc="fastcheckpoint: migrating upstream checkpoints", disable=None):
        (rows,) = store.read([(_ROW, (thread_id, ns, checkpoint_id))])
        if not rows:
            continue  # deleted meanwhile
        parent_id, type_, data, metadata = rows[0]
        if isinstance(metadata, bytes):
            metadata = metadata.decode("utf-8", "replace")
        key = (thread_id, ns, checkpoint_id)
        extra = [(copy_writes, key, False)] if copy_writes else []
        op = saver._restore_op(key, parent_id, serde.loads_typed((type_, data)), metadata, stored, extra)
        saver._run(op, store)
    return len(todo)
