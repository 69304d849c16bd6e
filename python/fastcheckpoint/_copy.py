"""Checkpoints as whole records, read from our tables or from upstream
LangGraph's, and stored again through our put path.

One code path serves the take-over of upstream tables by a saver (same
database) and ``fastcheckpoint migrate`` (any of our backends or upstream's to
any of ours). A source is a pair of operations: ``pending_op(done)`` (threads
and how many of their checkpoints are not in ``done``) and ``records_op(thread)``
(the thread's checkpoints, oldest first, values and pending writes included).
Restoring is idempotent, one transaction per checkpoint (with its writes), so
an interrupted copy resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastcheckpoint._ops import Op, Read
from fastcheckpoint._sql import CheckpointRow

if TYPE_CHECKING:
    from fastcheckpoint._saver import StoreSaver

Key = tuple[str, str, str]  # thread_id, checkpoint_ns, checkpoint_id
# A pending write as stored: task_id, task_path, idx, channel, type, value.
RawWrite = tuple[str, str, int, str, str, bytes]


@dataclass
class Record:
    """One checkpoint with everything needed to store it again."""

    key: Key
    parent_id: str | None
    checkpoint: dict[str, Any]  # channel_values included
    metadata: str  # JSON text
    writes: list[RawWrite] = field(default_factory=list)
    created_at: float | None = None
    hidden: bool = False


class Source(Protocol):
    def pending_op(self, done: set[Key]) -> Op[list[tuple[str, int]]]: ...
    def records_op(self, thread_id: str) -> Op[list[Record]]: ...


class UpstreamTables(Protocol):
    """A backend's reader of upstream LangGraph's tables (``_upstream``)."""

    @classmethod
    def detect_op(cls, serde: Any) -> Op[Source | None]: ...


def migrate_upstream_op(saver: StoreSaver, upstream: type[UpstreamTables]) -> Op[int]:
    """Copies upstream's checkpoints (and their writes) found in the saver's own
    database into our tables, once; returns how many."""
    source = yield from upstream.detect_op(saver.serde)
    if source is None:
        return 0
    return (yield from take_over_op(saver, source))


def keys_op(saver: StoreSaver) -> Op[set[Key]]:
    """Every checkpoint key in our tables."""
    (rows,) = yield Read([(saver.sql.ALL_KEYS, ())])
    return {(r[0], r[1], r[2]) for r in rows}


def pending(keys: Iterable[Key], done: set[Key]) -> list[tuple[str, int]]:
    """(thread, checkpoints not in ``done``) for every thread with any, sorted."""
    counts: dict[str, int] = {}
    for key in keys:
        if key not in done:
            counts[key[0]] = counts.get(key[0], 0) + 1
    return sorted(counts.items())


def restore_op(saver: StoreSaver, record: Record, stored: set[tuple[str, ...]]) -> Op[None]:
    """Stores ``record`` in ``saver``'s tables, its writes (and hidden flag) in
    the same transaction; ``stored`` tracks blobs this copy already wrote."""
    sql = saver.sql
    extra: list[tuple[str, Sequence[Any], bool]] = [(sql.INSERT_WRITE, (*record.key, *w), False) for w in record.writes]
    if record.hidden:
        extra.append((sql.HIDE_CHECKPOINT, record.key, False))
    yield from saver._restore_op(
        record.key, record.parent_id, record.checkpoint, record.metadata, stored, extra, record.created_at
    )


def copy_op(source: Source, saver: StoreSaver, done: set[Key], desc: str, via: Any = None) -> Op[int]:
    """Copies every checkpoint of ``source`` not in ``done`` into ``saver``
    (a progress bar titled ``desc`` on a terminal); returns how many.

    ``via(op)`` runs a source operation where the source lives (default: the
    same database as ``saver``, e.g. upstream tables beside ours)."""
    from tqdm import tqdm

    via = via or (lambda op: op)
    todo = yield from via(source.pending_op(done))
    copied = 0
    with tqdm(total=sum(n for _, n in todo), desc=desc, disable=None, unit="checkpoint") as bar:
        for thread_id, _ in todo:
            stored: set[tuple[str, ...]] = set()
            for record in (yield from via(source.records_op(thread_id))):
                if record.key in done:
                    continue
                yield from restore_op(saver, record, stored)
                done.add(record.key)
                copied += 1
                bar.update(1)
    return copied


def take_over_op(saver: StoreSaver, source: Source) -> Op[int]:
    """A saver's take-over of upstream tables in its own database: copies the
    checkpoints not in ours yet; returns how many. Once everything is copied
    (every later start) this is one indexed query, no key sets loaded."""
    (missing,) = yield Read([(saver.sql.UPSTREAM_NOT_COPIED, ())])
    if not missing:
        return 0
    done = yield from keys_op(saver)
    return (yield from copy_op(source, saver, done, "fastcheckpoint: migrating upstream checkpoints"))


def run_elsewhere(run: Any, op: Op[Any]) -> Op[Any]:
    """An operation run to completion by ``run`` (another database's driver),
    for ``copy_op(via=...)``."""
    return run(op)
    yield  # pragma: no cover - makes this a generator


class OurTables:
    """Our own tables as a source (also what ``verify`` and ``stats`` read)."""

    def __init__(self, saver: StoreSaver) -> None:
        self.saver = saver

    def pending_op(self, done: set[Key]) -> Op[list[tuple[str, int]]]:
        return pending((yield from keys_op(self.saver)), done)

    def rows_op(self, thread_id: str) -> Op[tuple[list[CheckpointRow], list[Any], list[Any]]]:
        """A thread's checkpoint rows (hidden ones too), blob rows and write rows, from one snapshot."""
        sql = self.saver.sql
        rows, blobs, writes = yield Read(
            [(sql.THREAD_ROWS, (thread_id,)), (sql.THREAD_BLOBS, (thread_id,)), (sql.THREAD_WRITES, (thread_id,))]
        )
        return [CheckpointRow(*r) for r in rows], blobs, writes

    def records_op(self, thread_id: str) -> Op[list[Record]]:
        rows, blob_rows, write_rows = yield from self.rows_op(thread_id)
        return [r for r in decode_thread(self.saver, rows, blob_rows, write_rows) if isinstance(r, Record)]


def decode_thread(
    saver: StoreSaver, rows: Sequence[CheckpointRow], blob_rows: Sequence[Any], write_rows: Sequence[Any]
) -> list[Record | tuple[Key, Exception]]:
    """Every checkpoint of a thread rebuilt from its rows, or the error that
    stopped it (per checkpoint: one damaged row does not hide the others)."""
    blobs = saver._blobs(blob_rows)
    by_key: dict[Key, list[Any]] = {}
    for w in write_rows:
        by_key.setdefault((w[0], w[1], w[2]), []).append(w)
    cache: dict[tuple[Any, ...], Any] = {}
    out: list[Record | tuple[Key, Exception]] = []
    for r in rows:
        key: Key = (r.thread_id, r.checkpoint_ns, r.checkpoint_id)
        writes = by_key.get(key, [])
        try:
            t = saver._tuple(r[:8], blobs, [w[3:] for w in writes], cache)
            out.append(
                Record(
                    key=key,
                    parent_id=r.parent_checkpoint_id,
                    checkpoint=t.checkpoint,  # type: ignore[arg-type]
                    metadata=json.dumps(t.metadata),
                    writes=[(w[3], w[7], w[8], w[4], w[5], bytes(w[6])) for w in writes],
                    created_at=r.created_at,
                    hidden=bool(r.hidden),
                )
            )
        except Exception as e:  # reported per checkpoint by the callers
            out.append((key, e))
    return out
