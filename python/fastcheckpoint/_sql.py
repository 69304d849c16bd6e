"""Statements both SQL dialects write the same way (``sqlite._schema`` and
``postgres._schema`` re-export them, so the shared saver finds every
statement by name on its backend's module), and builders for the ones that
differ only in an expression the dialect passes in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS fc_schema (version INTEGER NOT NULL)"
GET_VERSION = "SELECT max(version) FROM fc_schema"
SET_VERSION = "INSERT INTO fc_schema (version) VALUES (?)"

# Whether a put is a re-put (``StoreSaver._stored_op``).
CHECKPOINT_STORED = "SELECT 1 FROM fc_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"

# A stored list version that a segment now covers becomes a pointer into it
# (the same value): its bytes and base change, never its key or what it rebuilds.
REWRITE_BLOB = """UPDATE fc_blobs SET blob = ?, base = ?
    WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?"""
# A rewrite: (thread, namespace, channel, version, type, bytes, base).
Rewrite = tuple[str, str, str, str, str, Any, str]


def rewrite_in_place(rows: Sequence[Rewrite]) -> list[tuple[str, tuple[Any, ...], bool]]:
    """Statements turning stored rows into pointers: one UPDATE each."""
    return [(REWRITE_BLOB, (data, base, t, ns, ch, v), False) for t, ns, ch, v, _, data, base in rows]


def stored_version(version: str | int | float) -> str:
    """How the tables name ``version`` (a dialect may shorten it: ``version_of`` undoes it)."""
    return str(version)


def version_of(stored: str) -> str:
    """The version the tables name ``stored``."""
    return stored


# A body encrypted anew (``_rekey``), only if it is still the bytes read: a row
# a saver rewrote meanwhile is left for the next pass.
REBODY_CHECKPOINT = """UPDATE fc_checkpoints SET type = ?, checkpoint = ?
    WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND checkpoint = ?"""
REBODY_BLOB = """UPDATE fc_blobs SET type = ?, blob = ?
    WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ? AND blob = ?"""
REBODY_WRITE = """UPDATE fc_writes SET type = ?, value = ?
    WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ? AND value = ?"""

WRITE_COLUMNS = "(thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)"
BLOB_COLUMNS = "b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob, b.base"

# -- deleting, hiding ---------------------------------------------------------------

THREAD_BLOB_TYPES = "SELECT checkpoint_ns, channel, version, type FROM fc_blobs WHERE thread_id = ?"
DELETE_THREAD = [
    "DELETE FROM fc_checkpoints WHERE thread_id = ?",
    "DELETE FROM fc_blobs WHERE thread_id = ?",
    "DELETE FROM fc_writes WHERE thread_id = ?",
]
HIDE_CHECKPOINT = "UPDATE fc_checkpoints SET hidden = 1 WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
DELETE_CHECKPOINT = [
    "DELETE FROM fc_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
    "DELETE FROM fc_writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
]

# -- retention and inspection -------------------------------------------------------

# Threads whose last checkpoint was stored at or before ?1 and that have more
# than ?2 visible checkpoints in some namespace.
EXPIRED_THREADS = """SELECT thread_id FROM (
        SELECT thread_id, checkpoint_ns, count(*) AS n, max(coalesce(created_at, 0)) AS t
        FROM fc_checkpoints WHERE hidden = 0 GROUP BY thread_id, checkpoint_ns) g
    GROUP BY thread_id HAVING max(t) <= ?1 AND max(n) > ?2 ORDER BY thread_id"""


class ThreadCheckpoint(NamedTuple):
    """A row of each dialect's ``THREAD_CHECKPOINTS`` (what removal needs to know)."""

    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    channels: Any  # channel_versions as JSON (text, or parsed by the backend)
    hidden: int
    metadata: Any  # JSON, as ``channels``
    created_at: float | None


class CheckpointRow(NamedTuple):
    """A row of each dialect's ``THREAD_ROWS`` (whole checkpoints, for copies and the CLI)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    type: str
    checkpoint: bytes
    metadata: Any
    channels: Any
    hidden: int
    created_at: float | None


# A thread's blob rows and write rows (THREAD_ROWS, per dialect, has its checkpoints).
THREAD_BLOBS = f"SELECT {BLOB_COLUMNS} FROM fc_blobs b WHERE b.thread_id = ?"
THREAD_WRITES = """SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, channel, type, value, task_path, idx
    FROM fc_writes WHERE thread_id = ?"""
ALL_KEYS = "SELECT thread_id, checkpoint_ns, checkpoint_id FROM fc_checkpoints"
# Is any upstream checkpoint (``checkpoints``, beside ours) not in our tables yet?
UPSTREAM_NOT_COPIED = """SELECT 1 FROM checkpoints c WHERE NOT EXISTS (SELECT 1 FROM fc_checkpoints f
    WHERE f.thread_id = c.thread_id AND f.checkpoint_ns = c.checkpoint_ns AND f.checkpoint_id = c.checkpoint_id)
    LIMIT 1"""
# Run first in a transaction that stores rows of the thread it is given, where
# a dialect keys threads by a number (None: rows hold the thread's name).
ENSURE_THREAD: str | None = None


# -- builders (?1 thread, ?2 namespace, ?3 checkpoint id or NULL) --------------------
# ``thread`` names the column that keys rows by thread, ``thread_key`` what it
# holds for the thread named ?1 (a dialect may key threads by a number).


def chain_query(
    wanted: str, *, ctes: str = "", columns: str = BLOB_COLUMNS, lateral: bool = False, thread: str = "thread_id"
) -> str:
    """Blob rows of the ``wanted`` (thread key, ns, channel, version) tuples plus
    every delta base they need, in one query (``ctes``: extra common table
    expressions ``wanted`` may use). Versions are compared as text: that is
    how ``fc_blobs`` stores them and how delta headers name them.

    ``lateral`` (Postgres): each step probes the primary key on its own. The
    planner cannot estimate how few rows a recursive term yields, and as a
    plain join it hashes a scan of the whole blob table instead, which costs
    the read time in proportion to every thread's rows. ``OFFSET 0`` keeps
    the probe from being flattened back into such a join."""
    key = f"b.{thread} = n.{thread} AND b.checkpoint_ns = n.checkpoint_ns AND b.channel = n.channel"
    if lateral:

        def probe(cols: str, extra: str = "") -> str:
            where = f"{key} AND b.version = n.version{extra}"
            return f"CROSS JOIN LATERAL (SELECT {cols} FROM fc_blobs b WHERE {where} OFFSET 0) b"

        bases = probe("b.base", " AND b.base IS NOT NULL")
        base = f"SELECT n.{thread}, n.checkpoint_ns, n.channel, b.base FROM need n {bases}"
        rows = f"SELECT {columns} FROM need n {probe(columns)}"
    else:
        base = f"""SELECT b.{thread}, b.checkpoint_ns, b.channel, b.base FROM fc_blobs b JOIN need n
            ON {key} AND b.version = n.version
        WHERE b.base IS NOT NULL"""
        rows = f"SELECT {columns} FROM need n JOIN fc_blobs b ON {key} AND b.version = n.version"
    return f"""WITH RECURSIVE {ctes}need({thread}, checkpoint_ns, channel, version) AS (
        {wanted}
        UNION
        {base}
    )
    {rows}"""


def target_writes(target: str, thread: str = "thread_id", thread_key: str = "?1") -> str:
    """The pending writes of the checkpoint ``target`` selects."""
    return f"""SELECT checkpoint_id, task_id, channel, type, value, task_path, idx FROM fc_writes
    WHERE {thread} = {thread_key} AND checkpoint_ns = ?2 AND checkpoint_id = {target}"""


def page_writes(page: str, thread: str = "thread_id") -> str:
    """The pending writes of every checkpoint of a ``list`` page (whose rows
    name their thread ``thread_id`` and key it by ``thread``)."""
    return f"""WITH page AS ({page})
        SELECT p.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.type, w.value, w.task_path, w.idx
        FROM fc_writes w JOIN page p ON w.{thread} = p.{thread} AND w.checkpoint_ns = p.checkpoint_ns
            AND w.checkpoint_id = p.checkpoint_id"""


def ancestors(target: str, channels: str, thread: str = "thread_id", thread_key: str = "?1") -> str:
    """The target's ancestors, nearest first, with ``channels`` (their channel
    versions as JSON text). Hidden ones are included: they are kept exactly so
    this walk can pass through them. Depth bounds a corrupt cycle."""
    return f"""WITH RECURSIVE anc(depth, cid) AS (
        SELECT 1, parent_checkpoint_id FROM fc_checkpoints
        WHERE {thread} = {thread_key} AND checkpoint_ns = ?2 AND checkpoint_id = {target} AND hidden = 0
        UNION ALL
        SELECT a.depth + 1, c.parent_checkpoint_id FROM anc a JOIN fc_checkpoints c
            ON c.{thread} = {thread_key} AND c.checkpoint_ns = ?2 AND c.checkpoint_id = a.cid
        WHERE a.depth < 1000000
    )
    SELECT c.checkpoint_id, {channels} FROM anc a JOIN fc_checkpoints c
        ON c.{thread} = {thread_key} AND c.checkpoint_ns = ?2 AND c.checkpoint_id = a.cid
    ORDER BY a.depth"""
