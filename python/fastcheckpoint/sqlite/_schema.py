"""Our SQLite tables, their versioned migrations, and every query the savers run.

Our tables are prefixed ``fc_`` so they can live in the same file as
upstream's ``checkpoints`` / ``writes`` (which ``_upstream`` migrates from).

* ``fc_checkpoints``: one row per checkpoint, the checkpoint without its
  channel values, metadata as JSON text (filterable with ``json_extract``),
  ``channels`` = the checkpoint's ``channel_versions`` as JSON (so one query can
  join to the blobs; versions named as ``fc_blobs`` names them), ``hidden`` =
  kept only because a surviving checkpoint's ``DeltaChannel`` history walks
  through it (never listed or returned).
* ``fc_blobs``: one row per (channel, version), LangGraph's
  "<counter:032>.<random>" versions shortened to "~<counter>.<random>"
  (``stored_version``, undone by ``version_of``); ``base`` names the version a
  list delta applies to (NULL for self-contained blobs), so a recursive query
  fetches whole delta chains in one round trip. A delta a later segment covers
  is rewritten to point into it (same value; ``rewrite_blobs``).
* ``fc_writes``: pending writes, as upstream.
* ``fc_threads``: each thread's name and the number its rows are keyed by
  (``thread``): every row's key holds it, and a thread name is typically a
  36-character UUID. Statements take and return names: ``_THREAD`` turns
  the name bound for ``?`` into its number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import get_checkpoint_metadata as checkpoint_metadata

from fastcheckpoint._sql import (  # noqa: F401 - statements the shared saver finds here by name
    CREATE_VERSION_TABLE,
    GET_VERSION,
    SET_VERSION,
    Rewrite,
    ancestors,
    chain_query,
    page_writes,
    target_writes,
)
from fastcheckpoint._storage import long_version as version_of  # noqa: F401 - how these tables name versions
from fastcheckpoint._storage import short_version as stored_version  # noqa: F401 - (see _sql.stored_version)
from fastcheckpoint.errors import ConfigError

__all__ = ["checkpoint_metadata"]  # metadata as upstream SqliteSaver stores it


def _rebuilt_without_rowid(table: str, definition: str, columns: str) -> list[str]:
    """Statements that rebuild ``table`` as a WITHOUT ROWID table with the same
    columns in the same order (some statements copy rows positionally)."""
    return [
        f"CREATE TABLE {table}_rebuilt ({definition}) WITHOUT ROWID",
        f"INSERT INTO {table}_rebuilt ({columns}) SELECT {columns} FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_rebuilt RENAME TO {table}",
    ]


def _keyed_by_number(table: str, definition: str, columns: str, options: str) -> list[str]:
    """Statements that rebuild ``table`` with ``thread`` (its number in
    ``fc_threads``) in place of ``thread_id``, the other ``columns`` as they were."""
    copied = ", ".join(f"r.{c.strip()}" for c in columns.split(","))
    return [
        f"CREATE TABLE {table}_rebuilt (thread INTEGER NOT NULL, {definition}) {options}",
        f"""INSERT INTO {table}_rebuilt (thread, {columns}) SELECT t.id, {copied}
            FROM {table} r JOIN fc_threads t ON t.name = r.thread_id""",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_rebuilt RENAME TO {table}",
    ]


_WHOLE_VERSION = "'" + "[0-9]" * 32 + ".*'"  # a GLOB pattern: what stored_version shortens


def _short_version(column: str) -> str:
    """``stored_version`` (``_storage.short_version``) as an SQL expression."""
    return f"""CASE WHEN {column} GLOB {_WHOLE_VERSION}
            THEN '~' || coalesce(nullif(ltrim(substr({column}, 1, 32), '0'), ''), '0') || substr({column}, 33)
        WHEN {column} GLOB '~*' THEN '~' || {column}
        ELSE {column} END"""


# Each entry moves the schema from version i to i + 1. Never edit a released
# entry: append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS fc_checkpoints (
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            parent_checkpoint_id TEXT,
            type TEXT NOT NULL,
            checkpoint BLOB NOT NULL,
            metadata TEXT NOT NULL,
            channels TEXT NOT NULL,
            hidden INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
        )""",
        """CREATE TABLE IF NOT EXISTS fc_blobs (
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            channel TEXT NOT NULL,
            version TEXT NOT NULL,
            type TEXT NOT NULL,
            blob BLOB,
            base TEXT,
            PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
        )""",
        """CREATE TABLE IF NOT EXISTS fc_writes (
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task_path TEXT NOT NULL DEFAULT '',
            idx INTEGER NOT NULL,
            channel TEXT NOT NULL,
            type TEXT,
            value BLOB,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        )""",
    ],
    # 2: when each checkpoint was stored (seconds since the epoch), for
    # retention and inspection; rows stored earlier count from the upgrade.
    [
        "ALTER TABLE fc_checkpoints ADD COLUMN created_at REAL",
        "UPDATE fc_checkpoints SET created_at = (julianday('now') - 2440587.5) * 86400.0",
    ],
    # 3: checkpoints and blobs WITHOUT ROWID. A rowid table stores its text
    # primary key twice (in the row and in an index of the key, ~0.2x the
    # message text of a long thread) and reads a row by two B-tree searches;
    # clustered on the key, each row is stored once and found by one. Columns
    # keep their order. Pending writes stay a rowid table: their keys hold
    # random task ids, and inserts between keys left a clustered table's pages
    # half empty (a recorded graph run's writes took 1.31 MB against 0.76 MB).
    [
        *_rebuilt_without_rowid(
            "fc_checkpoints",
            """thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            parent_checkpoint_id TEXT,
            type TEXT NOT NULL,
            checkpoint BLOB NOT NULL,
            metadata TEXT NOT NULL,
            channels TEXT NOT NULL,
            hidden INTEGER NOT NULL DEFAULT 0,
            created_at REAL,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)""",
            "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channels, "
            "hidden, created_at",
        ),
        *_rebuilt_without_rowid(
            "fc_blobs",
            """thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            channel TEXT NOT NULL,
            version TEXT NOT NULL,
            type TEXT NOT NULL,
            blob BLOB,
            base TEXT,
            PRIMARY KEY (thread_id, checkpoint_ns, channel, version)""",
            "thread_id, checkpoint_ns, channel, version, type, blob, base",
        ),
    ],
    # 4: versions shortened where the tables name them (``stored_version``):
    # LangGraph's 32-digit counters are mostly zeros, and a list version is
    # named up to three times (its key, the next delta's base, ``channels``).
    # Checkpoint records are stored slim from here on (``SLIM_RECORDS``). A
    # process of an earlier release that still has the file open would name
    # versions whole, and read slim records as checkpoints without versions:
    # the record column is renamed, so that its every read and write of a
    # checkpoint fails instead.
    [
        f"UPDATE fc_blobs SET version = {_short_version('version')}, base = {_short_version('base')}",
        f"""UPDATE fc_checkpoints SET channels = (
            SELECT json_group_object(j.key, CASE WHEN j.type = 'text' THEN {_short_version("j.value")} ELSE j.value END)
            FROM json_each(fc_checkpoints.channels) j)""",
        # Renamed, so that an earlier release's statements fail on this file.
        "ALTER TABLE fc_checkpoints RENAME COLUMN checkpoint TO record",
    ],
    # 5: rows keyed by a number per thread (``fc_threads``) instead of its name,
    # which every key repeats (a UUID of the Agent Server: 36 bytes, ~0.13x the
    # text of a long thread, ~15% of a recorded graph's file). The column
    # ``thread_id`` is gone, so an earlier release's statements fail here.
    [
        "CREATE TABLE fc_threads (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """INSERT INTO fc_threads (name) SELECT thread_id FROM fc_checkpoints
            UNION SELECT thread_id FROM fc_blobs UNION SELECT thread_id FROM fc_writes""",
        *_keyed_by_number(
            "fc_checkpoints",
            """checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            parent_checkpoint_id TEXT,
            type TEXT NOT NULL,
            record BLOB NOT NULL,
            metadata TEXT NOT NULL,
            channels TEXT NOT NULL,
            hidden INTEGER NOT NULL DEFAULT 0,
            created_at REAL,
            PRIMARY KEY (thread, checkpoint_ns, checkpoint_id)""",
            "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, record, metadata, channels, hidden, created_at",
            "WITHOUT ROWID",
        ),
        *_keyed_by_number(
            "fc_blobs",
            """checkpoint_ns TEXT NOT NULL DEFAULT '',
            channel TEXT NOT NULL,
            version TEXT NOT NULL,
            type TEXT NOT NULL,
            blob BLOB,
            base TEXT,
            PRIMARY KEY (thread, checkpoint_ns, channel, version)""",
            "checkpoint_ns, channel, version, type, blob, base",
            "WITHOUT ROWID",
        ),
        *_keyed_by_number(
            "fc_writes",
            """checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task_path TEXT NOT NULL DEFAULT '',
            idx INTEGER NOT NULL,
            channel TEXT NOT NULL,
            type TEXT,
            value BLOB,
            PRIMARY KEY (thread, checkpoint_ns, checkpoint_id, task_id, idx)""",
            "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value",
            "",
        ),
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
# Checkpoint records are stored slim (``_storage.dump_record``): from schema 4
# on, no earlier release reads this file.
SLIM_RECORDS = True
# The number of the thread whose name is bound for the next ``?`` (``_THREAD1``: for ?1, ``_THREAD2``: ?2).
_THREAD = "(SELECT id FROM fc_threads WHERE name = ?)"
_THREAD1 = "(SELECT id FROM fc_threads WHERE name = ?1)"
_THREAD2 = "(SELECT id FROM fc_threads WHERE name = ?2)"
# Every statement that stores rows of a thread runs this first in its transaction.
ENSURE_THREAD = "INSERT OR IGNORE INTO fc_threads (name) VALUES (?)"

# A checkpoint record, for the values it holds inline (a DeltaChannel seed).
CHECKPOINT_RECORD = (
    f"SELECT type, record FROM fc_checkpoints WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ?"
)

# Guards a migration step: if another process got there first this finds no
# row and the whole step is rolled back.
CHECK_VERSION = "SELECT 1 WHERE ? = (SELECT coalesce(max(version), 0) FROM fc_schema)"

# -- writing -------------------------------------------------------------------

INSERT_CHECKPOINT = f"""INSERT OR REPLACE INTO fc_checkpoints (thread, checkpoint_ns, checkpoint_id,
    parent_checkpoint_id, type, record, metadata, channels, created_at, hidden)
    VALUES ({_THREAD}, ?, ?, ?, ?, ?, ?, ?, ?, 0)"""
# A (channel, version) names one value: an existing row is kept, never replaced
# (replacing could turn a delta's base into a delta of its own successor).
INSERT_BLOB = f"""INSERT OR IGNORE INTO fc_blobs
    (thread, checkpoint_ns, channel, version, type, blob, base) VALUES ({_THREAD}, ?, ?, ?, ?, ?, ?)"""
# Run before a delta is stored: its base must still be there (another process
# may have pruned it since this one wrote it).
BASE_EXISTS = f"SELECT 1 FROM fc_blobs WHERE thread = {_THREAD} AND checkpoint_ns = ? AND channel = ? AND version = ?"
# ?1 thread, ?2 namespace, ?3 channel, ?4 JSON array of versions.
DELETE_BLOBS = f"""DELETE FROM fc_blobs WHERE thread = {_THREAD1} AND checkpoint_ns = ?2 AND channel = ?3
    AND version IN (SELECT value FROM json_each(?4))"""


def rewrite_blobs(rows: Sequence[Rewrite]) -> list[tuple[str, tuple[Any, ...], bool]]:
    """Statements turning stored rows into pointers to a segment. A B-tree
    page whose rows shrink in place keeps its size (SQLite merges pages only
    once under a third full), so the rows are deleted together, which frees
    their pages, then inserted anew, packed densely."""
    by_channel: dict[tuple[str, str, str], list[str]] = {}
    for t, ns, ch, v, *_ in rows:
        by_channel.setdefault((t, ns, ch), []).append(v)
    deletes = [(DELETE_BLOBS, (*key, json.dumps(vs)), False) for key, vs in by_channel.items()]
    return [*deletes, *((INSERT_BLOB, row, False) for row in rows)]


# As _sql's: a body encrypted anew, only if it is still the bytes read.
REBODY_CHECKPOINT = f"""UPDATE fc_checkpoints SET type = ?, record = ?
    WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ? AND record = ?"""
REBODY_BLOB = f"""UPDATE fc_blobs SET type = ?, blob = ?
    WHERE thread = {_THREAD} AND checkpoint_ns = ? AND channel = ? AND version = ? AND blob = ?"""
REBODY_WRITE = f"""UPDATE fc_writes SET type = ?, value = ?
    WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ? AND value = ?"""

WRITE_COLUMNS = "(thread, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)"
UPSERT_WRITE = f"INSERT OR REPLACE INTO fc_writes {WRITE_COLUMNS} VALUES ({_THREAD}, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_WRITE = f"INSERT OR IGNORE INTO fc_writes {WRITE_COLUMNS} VALUES ({_THREAD}, ?, ?, ?, ?, ?, ?, ?, ?)"
CHECKPOINT_STORED = f"SELECT 1 FROM fc_checkpoints WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ?"

# -- reading one checkpoint (?1 thread, ?2 namespace, ?3 checkpoint id or NULL) -----

_TARGET = f"""coalesce(?3, (SELECT max(checkpoint_id) FROM fc_checkpoints
    WHERE thread = {_THREAD1} AND checkpoint_ns = ?2 AND hidden = 0))"""
GET_CHECKPOINT = f"""SELECT checkpoint_id, parent_checkpoint_id, type, record, metadata, channels
    FROM fc_checkpoints WHERE thread = {_THREAD1} AND checkpoint_ns = ?2 AND checkpoint_id = {_TARGET} AND hidden = 0"""
GET_WRITES = target_writes(_TARGET, "thread", _THREAD1)
# Upstream SqliteSaver leaves pre-v4 pending sends where they are (see postgres._schema).
PARENT_SENDS = None

# Blob rows as the saver reads them: (thread name, ns, channel, version, type, blob, base),
# of the thread named ?1 or of any thread.
_BLOB_COLUMNS_1 = "?1, b.checkpoint_ns, b.channel, b.version, b.type, b.blob, b.base"
_BLOB_COLUMNS = (
    "(SELECT name FROM fc_threads WHERE id = b.thread), b.checkpoint_ns, b.channel, b.version, b.type, b.blob, b.base"
)
GET_BLOBS = chain_query(
    f"""SELECT c.thread, c.checkpoint_ns, j.key, CAST(j.value AS TEXT)
        FROM fc_checkpoints c, json_each(c.channels) j
        WHERE c.thread = {_THREAD1} AND c.checkpoint_ns = ?2 AND c.checkpoint_id = {_TARGET} AND c.hidden = 0""",
    columns=_BLOB_COLUMNS_1,
    thread="thread",
)
# ?1 thread, ?2 namespace, ?3 JSON array of [channel, version] pairs.
GET_BLOBS_FOR = chain_query(
    f"""SELECT {_THREAD1}, ?2, json_extract(value, '$[0]'), CAST(json_extract(value, '$[1]') AS TEXT)
        FROM json_each(?3)""",
    columns=_BLOB_COLUMNS_1,
    thread="thread",
)

# Filter keys become part of a JSON path in SQL: only these characters (CVE-2025-67644).
_FILTER_KEY = re.compile(r"^[a-zA-Z0-9_.-]+$")


def metadata_filter(filter: dict[str, Any]) -> list[tuple[str, Any]]:
    """``json_extract`` predicates for ``list(filter=...)``, as upstream
    SqliteSaver builds them; keys are validated, values always bound."""
    out = []
    for key, value in filter.items():
        if not isinstance(key, str) or not _FILTER_KEY.match(key):
            raise ConfigError(
                f"Invalid filter key: {key!r}. Filter keys must contain only alphanumeric characters, "
                "underscores, dots, and hyphens."
            )
        column = f"json_extract(metadata, '$.{key}')"
        if value is None:
            out.append((f"{column} IS ?", None))
        elif isinstance(value, bool):
            out.append((f"{column} = ?", int(value)))
        elif isinstance(value, (str, int, float)):
            out.append((f"{column} = ?", value))
        elif isinstance(value, (dict, list)):
            # json_extract returns nested JSON minified.
            out.append((f"{column} = ?", json.dumps(value, separators=(",", ":"))))
        else:
            out.append((f"{column} = ?", str(value)))
    return out


# -- listing (a page of checkpoints selected by a WHERE clause built in _base) ----


def list_queries(where: str) -> tuple[str, str, str, None]:
    """Checkpoints, their blob chains and their writes for one page (no parents'
    sends: ``PARENT_SENDS``); the page
    is ``SELECT ... {where} ORDER BY checkpoint_id DESC ... LIMIT ?``. Its
    rows name their thread (``thread_id``, which ``where`` may filter on) and
    end with its number, which the blob and write queries join on."""
    page = f"""SELECT t.thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, record, metadata,
        channels, c.thread FROM fc_checkpoints c JOIN (SELECT id, name AS thread_id FROM fc_threads) t
        ON t.id = c.thread {where}
        ORDER BY checkpoint_id DESC, t.thread_id DESC, checkpoint_ns DESC LIMIT ?"""
    blobs = chain_query(
        "SELECT p.thread, p.checkpoint_ns, j.key, CAST(j.value AS TEXT) FROM page p, json_each(p.channels) j",
        ctes=f"page AS ({page}), ",
        columns=_BLOB_COLUMNS,
        thread="thread",
    )
    return page, blobs, page_writes(page, "thread"), None


# -- DeltaChannel history ---------------------------------------------------------

ANCESTORS = ancestors(_TARGET, "c.channels", "thread", _THREAD1)
# Blob types that end no DeltaChannel history walk: "empty" is how DeltaChannel
# stores a step without a snapshot. A stored None is a seed, as upstream SqliteSaver has it.
NO_SEED_TYPES = ("empty",)
# ?1 thread, ?2 namespace, ?3 JSON array of channels.
BLOB_TYPES = f"""SELECT channel, version, type FROM fc_blobs
    WHERE thread = {_THREAD1} AND checkpoint_ns = ?2 AND channel IN (SELECT value FROM json_each(?3))"""
# ?1 thread, ?2 namespace, ?3 JSON array of checkpoint ids, ?4 JSON array of channels.
WRITES_FOR = f"""SELECT checkpoint_id, task_id, channel, type, value, task_path, idx FROM fc_writes
    WHERE thread = {_THREAD1} AND checkpoint_ns = ?2 AND checkpoint_id IN (SELECT value FROM json_each(?3))
    AND channel IN (SELECT value FROM json_each(?4))"""

# -- deleting, hiding, copying ----------------------------------------------------------

THREAD_BLOB_TYPES = f"SELECT checkpoint_ns, channel, version, type FROM fc_blobs WHERE thread = {_THREAD}"
DELETE_THREAD = [
    f"DELETE FROM fc_checkpoints WHERE thread = {_THREAD}",
    f"DELETE FROM fc_blobs WHERE thread = {_THREAD}",
    f"DELETE FROM fc_writes WHERE thread = {_THREAD}",
    "DELETE FROM fc_threads WHERE name = ?",
]
HIDE_CHECKPOINT = (
    f"UPDATE fc_checkpoints SET hidden = 1 WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ?"
)
DELETE_CHECKPOINT = [
    f"DELETE FROM fc_checkpoints WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ?",
    f"DELETE FROM fc_writes WHERE thread = {_THREAD} AND checkpoint_ns = ? AND checkpoint_id = ?",
]
THREAD_CHECKPOINTS = f"""SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, channels, hidden, metadata,
    created_at FROM fc_checkpoints WHERE thread = {_THREAD}"""
# Frees the blobs of a thread that no checkpoint (visible or hidden) needs,
# directly or as a delta base.
GC_BLOBS = (
    f"DELETE FROM fc_blobs WHERE thread = {_THREAD1} AND (thread, checkpoint_ns, channel, version) NOT IN ("
    + chain_query(
        f"""SELECT c.thread, c.checkpoint_ns, j.key, CAST(j.value AS TEXT)
            FROM fc_checkpoints c, json_each(c.channels) j WHERE c.thread = {_THREAD1}""",
        columns="b.thread, b.checkpoint_ns, b.channel, b.version",
        thread="thread",
    )
    + ")"
)
# ?1 source, ?2 target, ?3 now (a copy is a write to the new thread, whose
# ENSURE_THREAD runs first).
COPY_CHECKPOINTS = f"""INSERT OR REPLACE INTO fc_checkpoints (thread, checkpoint_ns, checkpoint_id,
        parent_checkpoint_id, type, record, metadata, channels, hidden, created_at)
    SELECT {_THREAD2}, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, record, metadata, channels, hidden, ?3
    FROM fc_checkpoints WHERE thread = {_THREAD1}"""
COPY_THREAD_ROWS = [
    f"""INSERT OR REPLACE INTO fc_blobs (thread, checkpoint_ns, channel, version, type, blob, base)
        SELECT {_THREAD2}, checkpoint_ns, channel, version, type, blob, base FROM fc_blobs WHERE thread = {_THREAD1}""",
    f"""INSERT OR REPLACE INTO fc_writes {WRITE_COLUMNS}
        SELECT {_THREAD2}, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value
        FROM fc_writes WHERE thread = {_THREAD1}""",
]
THREADS_WITH_RUNS = """SELECT DISTINCT t.name FROM fc_checkpoints c JOIN fc_threads t ON t.id = c.thread
    WHERE json_extract(c.metadata, '$.run_id') IN (SELECT value FROM json_each(?))"""

# -- retention and inspection -------------------------------------------------------

# Threads whose last checkpoint was stored at or before ?1 and that have more
# than ?2 visible checkpoints in some namespace.
EXPIRED_THREADS = """SELECT t.name FROM (
        SELECT thread, checkpoint_ns, count(*) AS n, max(coalesce(created_at, 0)) AS last
        FROM fc_checkpoints WHERE hidden = 0 GROUP BY thread, checkpoint_ns) g JOIN fc_threads t ON t.id = g.thread
    GROUP BY g.thread HAVING max(g.last) <= ?1 AND max(g.n) > ?2 ORDER BY t.name"""
# Per thread: visible checkpoints, last write, bytes stored (checkpoint rows, blobs, writes).
THREAD_STATS = """SELECT t.name, c.n, c.updated, c.bytes + coalesce(b.bytes, 0) + coalesce(w.bytes, 0)
    FROM (SELECT thread, sum(1 - hidden) AS n, max(created_at) AS updated,
            sum(length(record) + length(metadata) + length(channels)) AS bytes
          FROM fc_checkpoints GROUP BY thread) c
    JOIN fc_threads t ON t.id = c.thread
    LEFT JOIN (SELECT thread, sum(length(blob)) AS bytes FROM fc_blobs GROUP BY thread) b ON b.thread = c.thread
    LEFT JOIN (SELECT thread, sum(length(value)) AS bytes FROM fc_writes GROUP BY thread) w ON w.thread = c.thread"""
# Everything stored for one thread (hidden checkpoints included), for
# inspection, verification and copying between databases.
THREAD_ROWS = f"""SELECT ?1, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, record, metadata,
    channels, hidden, created_at FROM fc_checkpoints WHERE thread = {_THREAD1} ORDER BY checkpoint_ns, checkpoint_id"""
THREAD_BLOBS = f"SELECT {_BLOB_COLUMNS_1} FROM fc_blobs b WHERE b.thread = {_THREAD1}"
THREAD_WRITES = f"""SELECT ?1, checkpoint_ns, checkpoint_id, task_id, channel, type, value, task_path, idx
    FROM fc_writes WHERE thread = {_THREAD1}"""
ALL_KEYS = "SELECT t.name, c.checkpoint_ns, c.checkpoint_id FROM fc_checkpoints c JOIN fc_threads t ON t.id = c.thread"
# Is any upstream checkpoint (``checkpoints``, beside ours) not in our tables yet?
UPSTREAM_NOT_COPIED = """SELECT 1 FROM checkpoints c WHERE NOT EXISTS (SELECT 1 FROM fc_checkpoints f
    WHERE f.thread = (SELECT id FROM fc_threads WHERE name = c.thread_id) AND f.checkpoint_ns = c.checkpoint_ns
    AND f.checkpoint_id = c.checkpoint_id) LIMIT 1"""
TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
