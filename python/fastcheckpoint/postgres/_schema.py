"""Our PostgreSQL tables, their versioned migrations, and every query the savers
run: the same statement names as ``fastcheckpoint.sqlite._schema`` (the shared
saver picks them by name), written with the same ``?``/``?N`` placeholders
(``_store`` rewrites them for psycopg).

Tables are prefixed ``fc_`` so they can live beside upstream's ``checkpoints``
/ ``checkpoint_blobs`` / ``checkpoint_writes`` (which ``_upstream`` takes over).
Keys are ``COLLATE "C"``: checkpoint ids and versions order bytewise whatever
the database's locale. JSON columns are ``jsonb`` and are read back as text so
rows look the same on both backends.

A delta names its base with a foreign key to the base row, so the server
itself refuses a delta whose base is gone (another worker pruned it) and a
removal of a base some delta still needs.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from langgraph.checkpoint.base import get_serializable_checkpoint_metadata as checkpoint_metadata
from langgraph.checkpoint.serde.types import TASKS

from fastcheckpoint import _sql
from fastcheckpoint._sql import (  # noqa: F401 - statements the shared saver finds here by name
    ALL_KEYS,
    BLOB_COLUMNS,
    CHECKPOINT_STORED,
    CREATE_VERSION_TABLE,
    DELETE_CHECKPOINT,
    DELETE_THREAD,
    ENSURE_THREAD,
    EXPIRED_THREADS,
    GET_VERSION,
    HIDE_CHECKPOINT,
    REBODY_BLOB,
    REBODY_CHECKPOINT,
    REBODY_WRITE,
    SET_VERSION,
    THREAD_BLOB_TYPES,
    THREAD_BLOBS,
    THREAD_WRITES,
    UPSTREAM_NOT_COPIED,
    WRITE_COLUMNS,
    ancestors,
    page_writes,
    stored_version,
    target_writes,
    version_of,
)
from fastcheckpoint._sql import rewrite_in_place as rewrite_blobs  # noqa: F401 - rows are rewritten by UPDATE

# Every chain probes the blob table by key, whatever its size (see chain_query).
chain_query = partial(_sql.chain_query, lateral=True)

__all__ = ["checkpoint_metadata"]  # metadata as upstream PostgresSaver stores it (without "writes")

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS fc_checkpoints (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_ns TEXT COLLATE "C" NOT NULL DEFAULT '',
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            parent_checkpoint_id TEXT COLLATE "C",
            type TEXT NOT NULL,
            checkpoint BYTEA NOT NULL,
            metadata JSONB NOT NULL,
            channels JSONB NOT NULL,
            hidden SMALLINT NOT NULL DEFAULT 0,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
        )""",
        """CREATE TABLE IF NOT EXISTS fc_blobs (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_ns TEXT COLLATE "C" NOT NULL DEFAULT '',
            channel TEXT COLLATE "C" NOT NULL,
            version TEXT COLLATE "C" NOT NULL,
            type TEXT NOT NULL,
            blob BYTEA,
            base TEXT COLLATE "C",
            PRIMARY KEY (thread_id, checkpoint_ns, channel, version),
            FOREIGN KEY (thread_id, checkpoint_ns, channel, base)
                REFERENCES fc_blobs (thread_id, checkpoint_ns, channel, version)
        )""",
        "CREATE INDEX IF NOT EXISTS fc_blobs_base ON fc_blobs (thread_id, checkpoint_ns, channel, base)",
        """CREATE TABLE IF NOT EXISTS fc_writes (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_ns TEXT COLLATE "C" NOT NULL DEFAULT '',
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            task_id TEXT COLLATE "C" NOT NULL,
            task_path TEXT COLLATE "C" NOT NULL DEFAULT '',
            idx INTEGER NOT NULL,
            channel TEXT NOT NULL,
            type TEXT,
            value BYTEA,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        )""",
        "CREATE INDEX IF NOT EXISTS fc_checkpoints_run_id ON fc_checkpoints ((metadata->>'run_id'))",
    ],
    # 2: when each checkpoint was stored (seconds since the epoch), for
    # retention and inspection; rows stored earlier count from the upgrade.
    # (ALTER inside DO: a bare ALTER makes psycopg deallocate every prepared
    # statement mid-pipeline; our statements name their columns, so the
    # server simply re-plans them.)
    [
        "DO $$ BEGIN ALTER TABLE fc_checkpoints ADD COLUMN IF NOT EXISTS created_at DOUBLE PRECISION; END $$",
        "UPDATE fc_checkpoints SET created_at = extract(epoch FROM now()) WHERE created_at IS NULL",
    ],
    # 3: the index the delta-base foreign key checks (on removing a base) leads
    # with the base, and leaves out keyframes (no base). Led by (thread, ns,
    # channel) it looked as good to the planner as the primary key for a
    # lookup by version, and such reads then scanned the channel's every row.
    [
        """DO $$ BEGIN
            DROP INDEX IF EXISTS fc_blobs_base;
            CREATE INDEX IF NOT EXISTS fc_blobs_base_ref ON fc_blobs (base, thread_id, checkpoint_ns, channel)
                WHERE base IS NOT NULL;
        END $$""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
# Checkpoint records are stored whole, and versions as LangGraph names them
# (``stored_version``): workers of the previous release, still running
# during a rolling deploy, read every row this release writes.
SLIM_RECORDS = False
# A checkpoint record, for the values it holds inline (a DeltaChannel seed).
CHECKPOINT_RECORD = (
    "SELECT type, checkpoint FROM fc_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
)

# Whether our version table exists and whether upstream's checkpoints table does
# (never fails, so it may run inside a caller's transaction): when ours is
# current and there is nothing to take over, setting up writes nothing.
# (The catalog, not information_schema, whose views cost a new connection ms to plan.)
SET_UP = "SELECT to_regclass('fc_schema') IS NOT NULL, to_regclass('checkpoints') IS NOT NULL"
# Held while migrating so that workers starting together migrate once.
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7206474756217630033)"

# -- writing -------------------------------------------------------------------

INSERT_CHECKPOINT = """INSERT INTO fc_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
        type, checkpoint, metadata, channels, created_at, hidden)
    VALUES (?, ?, ?, ?, ?, ?, ?::text::jsonb, ?::text::jsonb, ?, 0)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
        parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, type = EXCLUDED.type,
        checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata, channels = EXCLUDED.channels,
        created_at = EXCLUDED.created_at, hidden = 0"""
# A (channel, version) names one value: an existing row is kept, never replaced.
INSERT_BLOB = """INSERT INTO fc_blobs (thread_id, checkpoint_ns, channel, version, type, blob, base)
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
# The foreign key checks a delta's base inside the put's transaction.
BASE_EXISTS = None
UPSERT_WRITE = f"""INSERT INTO fc_writes {WRITE_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
        task_path = EXCLUDED.task_path, channel = EXCLUDED.channel, type = EXCLUDED.type, value = EXCLUDED.value"""
INSERT_WRITE = f"INSERT INTO fc_writes {WRITE_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"

# -- reading one checkpoint (?1 thread, ?2 namespace, ?3 checkpoint id or NULL) -----

# The latest visible checkpoint by a backward walk of the key that stops at the
# first one (a max() aggregate over the thread reads all of its rows).
_TARGET = """coalesce(?3::text, (SELECT checkpoint_id FROM fc_checkpoints
    WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND hidden = 0 ORDER BY checkpoint_id DESC LIMIT 1))"""
GET_CHECKPOINT = f"""SELECT checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata::text, channels::text
    FROM fc_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = {_TARGET} AND hidden = 0"""
GET_WRITES = target_writes(_TARGET)
# A checkpoint of format v < 4 keeps its pending Sends as its parent's writes to
# TASKS; upstream PostgresSaver reads them into its channel values
# (``StoreSaver._tuple``), and so do we.
_SEND_COLUMNS = "w.task_path, w.task_id, w.idx, w.type, w.value"
PARENT_SENDS = f"""SELECT {_SEND_COLUMNS} FROM fc_checkpoints c JOIN fc_writes w
        ON w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.parent_checkpoint_id
    WHERE c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = {_TARGET} AND c.hidden = 0
        AND w.channel = '{TASKS}'"""


GET_BLOBS = chain_query(
    f"""SELECT c.thread_id, c.checkpoint_ns, j.key COLLATE "C", j.value COLLATE "C"
        FROM fc_checkpoints c, jsonb_each_text(c.channels) j
        WHERE c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = {_TARGET} AND c.hidden = 0"""
)
# ?1 thread, ?2 namespace, ?3 JSON array of [channel, version] pairs.
GET_BLOBS_FOR = chain_query(
    """SELECT ?1::text COLLATE "C", ?2::text COLLATE "C", (p->>0) COLLATE "C", (p->>1) COLLATE "C"
        FROM jsonb_array_elements(?3::text::jsonb) p"""
)


def metadata_filter(filter: dict[str, Any]) -> list[tuple[str, Any]]:
    """``list(filter=...)`` as upstream PostgresSaver does it: JSON containment,
    the whole filter one bound value (keys never reach the SQL text)."""
    return [("metadata @> ?::text::jsonb", json.dumps(filter))] if filter else []


# -- listing (a page of checkpoints selected by a WHERE clause built in _saver) ----


def list_queries(where: str) -> tuple[str, str, str, str]:
    """Checkpoints, their blob chains, their writes and their parents' sends for one page."""
    page = f"""SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
        metadata::text, channels FROM fc_checkpoints {where}
        ORDER BY checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC LIMIT ?"""
    blobs = chain_query(
        """SELECT p.thread_id, p.checkpoint_ns, j.key COLLATE "C", j.value COLLATE "C"
            FROM page p, jsonb_each_text(p.channels) j""",
        ctes=f"page AS ({page}), ",
    )
    sends = f"""WITH page AS ({page})
        SELECT p.thread_id, p.checkpoint_ns, p.checkpoint_id, {_SEND_COLUMNS} FROM page p JOIN fc_writes w
            ON w.thread_id = p.thread_id AND w.checkpoint_ns = p.checkpoint_ns
            AND w.checkpoint_id = p.parent_checkpoint_id
        WHERE w.channel = '{TASKS}'"""
    return page, blobs, page_writes(page), sends


# -- DeltaChannel history ---------------------------------------------------------

ANCESTORS = ancestors(_TARGET, "c.channels::text")
# Blob types that end no DeltaChannel history walk: "empty" (a step without a
# snapshot) and, as upstream PostgresSaver has it, a stored None (its JSON null
# cannot be told from no value, so the walk goes on and the channel replays from empty).
NO_SEED_TYPES = ("empty", "null")
BLOB_TYPES = """SELECT channel, version, type FROM fc_blobs
    WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel IN (SELECT jsonb_array_elements_text(?3::text::jsonb))"""
WRITES_FOR = """SELECT checkpoint_id, task_id, channel, type, value, task_path, idx FROM fc_writes
    WHERE thread_id = ?1 AND checkpoint_ns = ?2
    AND checkpoint_id IN (SELECT jsonb_array_elements_text(?3::text::jsonb))
    AND channel IN (SELECT jsonb_array_elements_text(?4::text::jsonb))"""

# -- deleting, hiding, copying ----------------------------------------------------------

THREAD_CHECKPOINTS = """SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, channels::text, hidden,
    metadata::text, created_at FROM fc_checkpoints WHERE thread_id = ?"""
GC_BLOBS = (
    "DELETE FROM fc_blobs WHERE thread_id = ?1 AND (thread_id, checkpoint_ns, channel, version) NOT IN ("
    + chain_query(
        """SELECT c.thread_id, c.checkpoint_ns, j.key COLLATE "C", j.value COLLATE "C"
            FROM fc_checkpoints c, jsonb_each_text(c.channels) j WHERE c.thread_id = ?1""",
        columns="b.thread_id, b.checkpoint_ns, b.channel, b.version",
    )
    + ")"
)
# ?1 source, ?2 target, ?3 now (a copy is a write to the new thread).
COPY_CHECKPOINTS = """INSERT INTO fc_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
        type, checkpoint, metadata, channels, hidden, created_at)
    SELECT ?2::text, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channels,
        hidden, ?3::double precision FROM fc_checkpoints WHERE thread_id = ?1
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
        parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, type = EXCLUDED.type,
        checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata, channels = EXCLUDED.channels,
        hidden = EXCLUDED.hidden, created_at = EXCLUDED.created_at"""
COPY_THREAD_ROWS = [
    """INSERT INTO fc_blobs SELECT ?2::text, checkpoint_ns, channel, version, type, blob, base
        FROM fc_blobs WHERE thread_id = ?1
        ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE SET
            type = EXCLUDED.type, blob = EXCLUDED.blob, base = EXCLUDED.base""",
    """INSERT INTO fc_writes SELECT ?2::text, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel,
        type, value FROM fc_writes WHERE thread_id = ?1
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
            task_path = EXCLUDED.task_path, channel = EXCLUDED.channel, type = EXCLUDED.type,
            value = EXCLUDED.value""",
]
THREADS_WITH_RUNS = """SELECT DISTINCT thread_id FROM fc_checkpoints
    WHERE metadata->>'run_id' IN (SELECT jsonb_array_elements_text(?::text::jsonb))"""

# -- retention and inspection -------------------------------------------------------

THREAD_STATS = """SELECT c.thread_id, c.n, c.updated, c.bytes + coalesce(b.bytes, 0) + coalesce(w.bytes, 0)
    FROM (SELECT thread_id, sum(1 - hidden) AS n, max(created_at) AS updated,
            sum(length(checkpoint) + octet_length(metadata::text) + octet_length(channels::text)) AS bytes
          FROM fc_checkpoints GROUP BY thread_id) c
    LEFT JOIN (SELECT thread_id, sum(length(blob)) AS bytes FROM fc_blobs GROUP BY thread_id) b
        ON b.thread_id = c.thread_id
    LEFT JOIN (SELECT thread_id, sum(length(value)) AS bytes FROM fc_writes GROUP BY thread_id) w
        ON w.thread_id = c.thread_id"""
THREAD_ROWS = """SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
    metadata::text, channels::text, hidden, created_at FROM fc_checkpoints WHERE thread_id = ?
    ORDER BY checkpoint_ns, checkpoint_id"""
TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
