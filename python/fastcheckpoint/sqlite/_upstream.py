"""Databases written by ``langgraph-checkpoint-sqlite``.

Upstream keeps each checkpoint whole (all channel values inline) in
``checkpoints`` and pending writes in ``writes``. ``UpstreamSqlite`` reads
them as records (``fastcheckpoint._copy``): the first time one of our savers
opens such a file it re-stores every upstream checkpoint not yet in ours
through our put path (so history gets the same delta storage), and
``fastcheckpoint migrate`` copies them to any of our databases. Idempotent and
resumable; upstream rows are left in place.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import SerializerProtocol

from fastcheckpoint._copy import Key, Record, pending
from fastcheckpoint._ops import Op, Read

_CHECKPOINT_COLUMNS = {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "type", "checkpoint"}
_WRITE_COLUMNS = {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel", "type", "value"}


class UpstreamSqlite:
    """Upstream's tables as a source of records."""

    def __init__(self, serde: SerializerProtocol, has_writes: bool, has_task_path: bool) -> None:
        self.serde = serde
        self.writes_query = (
            f"""SELECT checkpoint_ns, checkpoint_id, task_id, {"task_path" if has_task_path else "''"}, idx, channel,
                type, value FROM writes WHERE thread_id = ?"""
            if has_writes
            else None
        )

    @classmethod
    def detect_op(cls, serde: SerializerProtocol) -> Op[UpstreamSqlite | None]:
        """The source, or None when there are no upstream tables (or someone
        else's tables with those names)."""
        checkpoints, writes = yield Read([("PRAGMA table_info(checkpoints)", ()), ("PRAGMA table_info(writes)", ())])
        if not _CHECKPOINT_COLUMNS <= {r[1] for r in checkpoints}:
            return None
        write_columns = {r[1] for r in writes}
        return cls(serde, _WRITE_COLUMNS <= write_columns, "task_path" in write_columns)

    def pending_op(self, done: set[Key]) -> Op[list[tuple[str, int]]]:
        (rows,) = yield Read([("SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints", ())])
        return pending((tuple(r) for r in rows), done)  # type: ignore[misc]

    def records_op(self, thread_id: str) -> Op[list[Record]]:
        queries: list[tuple[str, Any]] = [
            (
                """SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
                FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_ns, checkpoint_id""",
                (thread_id,),
            )
        ]
        if self.writes_query:
            queries.append((self.writes_query, (thread_id,)))
        rows, *write_rows = yield Read(queries)
        writes: dict[tuple[str, str], list[Any]] = {}
        for w in write_rows[0] if write_rows else ():
            writes.setdefault((w[0], w[1]), []).append((w[2], w[3], w[4], w[5], w[6], bytes(w[7])))
        out = []
        for ns, checkpoint_id, parent_id, type_, data, metadata in rows:
            if isinstance(metadata, bytes):
                metadata = metadata.decode("utf-8", "replace")
            out.append(
                Record(
                    key=(thread_id, ns, checkpoint_id),
                    parent_id=parent_id,
                    checkpoint=self.serde.loads_typed((type_, bytes(data))),
                    metadata=metadata or "{}",
                    writes=writes.get((ns, checkpoint_id), []),
                )
            )
        return out
