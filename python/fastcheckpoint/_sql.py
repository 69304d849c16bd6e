"""Statements both SQL dialects write the same way (``sqlite._schema`` and
``postgres._schema`` re-export them, so the shared saver finds every
statement by name on its backend's module)."""

from __future__ import annotations

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS fc_schema (version INTEGER NOT NULL)"
GET_VERSION = "SELECT max(version) FROM fc_schema"
SET_VERSION = "INSERT INTO fc_schema (version) VALUES (?)"

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
# A thread's blob rows and write rows (THREAD_ROWS, per dialect, has its checkpoints).
THREAD_BLOBS = f"SELECT {BLOB_COLUMNS} FROM fc_blobs b WHERE b.thread_id = ?"
THREAD_WRITES = """SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, channel, type, value, task_path, idx
    FROM fc_writes WHERE thread_id = ?"""
ALL_KEYS = "SELECT thread_id, checkpoint_ns, checkpoint_id FROM fc_checkpoints"
