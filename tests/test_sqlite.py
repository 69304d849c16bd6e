"""SqliteSaver specifics: upstream take-over, one SQLite library, corruption,
filters, several processes on one file (crashes: test_reliability.py)."""

from __future__ import annotations

import ctypes
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqliteSaver
from langgraph.types import Command

from fastcheckpoint._native import sqlite_binding
from fastcheckpoint.errors import ConfigError, CorruptDataError, DatabaseLockedError
from fastcheckpoint.sqlite import SqliteSaver, _schema
from fastcheckpoint.sqlite._pystore import PythonSqliteStore
from tests import THREAD_IS, THREAD_NAME, graphs
from tests.worker import check_hammered, expected_steps, hammer_all, loop_graph, spawn

ROOT = Path(__file__).resolve().parent.parent


def cfg(thread: str, **extra) -> dict:
    return {"configurable": {"thread_id": thread, **extra}}


def comparable(t) -> tuple:
    """Everything a CheckpointTuple carries, in a form that compares by value."""
    return (
        t.config["configurable"],
        {k: v for k, v in t.checkpoint.items() if k != "channel_values"},
        t.checkpoint["channel_values"],
        t.metadata,
        t.parent_config,
        t.pending_writes,
    )


def test_upstream_database_is_taken_over(tmp_path) -> None:
    db = str(tmp_path / "upstream.db")
    with UpstreamSqliteSaver.from_conn_string(db) as up:
        chat = graphs.chat_graph().compile(checkpointer=up)
        for i in range(3):
            chat.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
        approval = graphs.approval_graph().compile(checkpointer=up)
        approval.invoke({"request": "deploy", "log": []}, cfg("approval"))  # pending interrupt write
        before = {t: [comparable(x) for x in up.list(cfg(t))] for t in ("chat", "approval")}
    with SqliteSaver.from_conn_string(db) as ours:
        after = {t: [comparable(x) for x in ours.list(cfg(t))] for t in ("chat", "approval")}
        assert after == before
        assert len(after["chat"]) == 9
        assert comparable(ours.get_tuple(cfg("chat"))) == before["chat"][0]
        # The taken-over threads go on under our saver.
        out = graphs.approval_graph().compile(checkpointer=ours).invoke(Command(resume="yes"), cfg("approval"))
        assert out["status"] == "approved"
        out = graphs.chat_graph().compile(checkpointer=ours).invoke({"messages": [HumanMessage("more")]}, cfg("chat"))
        assert len(out["messages"]) == 8
    # Opening again migrates nothing twice.
    with SqliteSaver.from_conn_string(db) as again:
        assert len(list(again.list(cfg("chat")))) == 9 + 3


def test_one_sqlite_library_in_the_process() -> None:
    """Our store and Python's sqlite3 module must use the same SQLite copy, or
    closing a file in one silently drops the other's POSIX locks. Here
    (``_sqlite3`` links the shared libsqlite3) the store calls that library's
    own functions, and no second copy is mapped."""
    from fastcheckpoint.sqlite import _library

    route = _library.bind()
    assert sqlite_binding() == (sqlite3.sqlite_version, route)
    linked = [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libsqlite3" in line]
    if linked and route == "symbols":
        version = ctypes.CDLL(linked[0]).sqlite3_libversion
        version.restype = ctypes.c_char_p
        assert version().decode() == sqlite3.sqlite_version
    assert len(set(linked)) <= 1


def test_a_put_waits_while_pythons_sqlite3_holds_the_write_lock(tmp_path) -> None:
    """With one SQLite library, a write transaction held through Python's
    sqlite3 blocks our put; with two copies our put would commit under it."""
    db = str(tmp_path / "held.db")
    with SqliteSaver.from_conn_string(db, busy_timeout=0.3) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage("before")]}, cfg("t"))
        theirs = sqlite3.connect(db, isolation_level=None)
        theirs.execute("BEGIN IMMEDIATE")
        theirs.execute("CREATE TABLE held (x)")
        before = saver.get_tuple(cfg("t"))
        with pytest.raises(DatabaseLockedError):
            app.invoke({"messages": [HumanMessage("during")]}, cfg("t"))
        assert saver.get_tuple(cfg("t")).config == before.config
        theirs.execute("ROLLBACK")
        theirs.close()
        out = app.invoke({"messages": [HumanMessage("after")]}, cfg("t"))
        assert [m.content for m in out["messages"] if m.type == "human"][-1] == "after"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_lock_probe_finds_one_library_here() -> None:
    """The probe every saver runs before opening a file: it passes on this
    interpreter, and its verdict is what a refusal would report."""
    from fastcheckpoint.sqlite import _library

    assert _library._probe(":memory:") == ""
    _library.check_one_sqlite(":memory:")


def test_user_connection_and_saver_share_the_file(tmp_path) -> None:
    db = str(tmp_path / "shared.db")
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    app = graphs.chat_graph().compile(checkpointer=saver)
    for i in range(5):
        app.invoke({"messages": [HumanMessage(f"m{i}")]}, cfg("t"))
        # The caller's own connection sees our rows and can keep using the file.
        n = conn.execute("SELECT count(*) FROM fc_checkpoints WHERE {}".format(THREAD_IS.format("'t'"))).fetchone()[0]
        assert n == 3 * (i + 1)
        conn.execute("CREATE TABLE IF NOT EXISTS app_data (x)")
        conn.execute("INSERT INTO app_data VALUES (?)", (i,))
        conn.commit()
    saver.close()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_corrupt_rows_raise_typed_errors_naming_the_row(tmp_path) -> None:
    db = str(tmp_path / "c.db")
    with SqliteSaver.from_conn_string(db) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(6):
            app.invoke({"messages": [HumanMessage(f"message number {i} " * 30)]}, cfg("t"))
        latest = saver.get_tuple(cfg("t")).config["configurable"]["checkpoint_id"]
    raw = sqlite3.connect(db)
    rows = raw.execute("SELECT version, blob FROM fc_blobs WHERE channel = 'messages' AND type = 'fc1'").fetchall()
    assert rows
    for version, blob in rows:
        b = bytearray(blob)
        b[len(b) // 2] ^= 0x40
        raw.execute("UPDATE fc_blobs SET blob = ? WHERE channel = 'messages' AND version = ?", (bytes(b), version))
    raw.commit()
    raw.close()
    with SqliteSaver.from_conn_string(db) as saver:
        with pytest.raises(CorruptDataError) as e:
            saver.get_tuple(cfg("t"))
        assert "thread 't'" in str(e.value) and latest in str(e.value) and "messages" in str(e.value)
        with pytest.raises(CorruptDataError):
            list(saver.list(cfg("t")))


def test_bad_config_and_hostile_filters(tmp_path) -> None:
    with SqliteSaver.from_conn_string(str(tmp_path / "c.db")) as saver:
        with pytest.raises(ConfigError, match="thread_id"):
            saver.get_tuple({"configurable": {}})
        graphs.pipeline_graph().compile(checkpointer=saver).invoke({"steps": []}, cfg("t"))
        for key in ["source') OR 1=1 --", "a b", "x;DROP TABLE fc_checkpoints", "$.y"]:
            with pytest.raises(ValueError, match="Invalid filter key"):
                list(saver.list(None, filter={key: "loop"}))
        # Values are bound, never spliced into SQL.
        assert list(saver.list(None, filter={"source": "x' OR '1'='1"})) == []
        assert [t.metadata["step"] for t in saver.list(None, filter={"source": "loop"})] == [3, 2, 1, 0]
        with pytest.raises(ConfigError, match="synchronous"):
            SqliteSaver(sqlite3.connect(":memory:"), synchronous="sometimes")
    with pytest.raises(ConfigError, match="closed"):
        saver.get_tuple(cfg("t"))


def test_a_delta_base_removed_by_another_saver_is_not_referenced(tmp_path) -> None:
    db = str(tmp_path / "c.db")
    with SqliteSaver.from_conn_string(db) as a, SqliteSaver.from_conn_string(db) as b:
        graphs.continue_after_another_saver_deleted_the_thread(a, b)


def test_memory_survives_a_process_restart(tmp_path) -> None:
    db = str(tmp_path / "c.db")
    for steps in (3, 6):  # the second process resumes the first one's thread
        p = spawn("run", db, "t", str(steps))
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with SqliteSaver.from_conn_string(db) as saver:
        assert loop_graph().compile(checkpointer=saver).get_state(cfg("t")).values["steps"] == expected_steps(3)


def test_processes_and_threads_share_one_file(tmp_path) -> None:
    db = str(tmp_path / "c.db")
    puts = 60
    acked = hammer_all(db, 4, puts)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with SqliteSaver.from_conn_string(db) as saver:
        check_hammered(lambda sql: raw.execute(sql).fetchall(), saver, acked, "p0", puts)


def _native_store(*args, **kwargs):
    from fastcheckpoint._native import SqliteStore

    return SqliteStore(*args, **kwargs)


# The Rust store, and its twin over Python's sqlite3 (the "python" route to the SQLite library).
both_stores = pytest.mark.parametrize("SqliteStore", [_native_store, PythonSqliteStore], ids=["rust", "python"])


@both_stores
def test_a_failing_batch_of_a_group_commit_is_undone_alone(tmp_path, SqliteStore) -> None:
    from fastcheckpoint.errors import DatabaseLockedError, MissingRowError, StorageError

    store = SqliteStore(str(tmp_path / "g.db"))
    store.execute_script("CREATE TABLE t (k TEXT PRIMARY KEY)")
    add = "INSERT INTO t (k) VALUES (?)"
    results = store.write_group(
        [
            [(add, ["a"], False)],
            [(add, ["b"], False), ("INSERT INTO no_such_table VALUES (1)", [], False)],
            [(add, ["c"], False), ("SELECT 1 FROM t WHERE k = 'zz'", [], True)],  # a required row is missing
            [(add, ["d"], False), (add, ["e"], False)],
        ]
    )
    assert results[0] == [1] and results[3] == [1, 1]
    assert isinstance(results[1], StorageError) and "no_such_table" in str(results[1])
    assert isinstance(results[2], MissingRowError)
    assert [r[0] for r in store.read([("SELECT k FROM t ORDER BY k", [])])[0]] == ["a", "d", "e"]
    # The transaction as a whole failing (here: the lock held by another
    # connection past the busy timeout) is every batch's error, and stores nothing.
    store.close()
    store = SqliteStore(str(tmp_path / "g.db"), busy_timeout=0.2)
    other = sqlite3.connect(str(tmp_path / "g.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(DatabaseLockedError):
        store.write_group([[(add, ["f"], False)], [(add, ["g"], False)]])
    other.execute("ROLLBACK")
    assert [r[0] for r in store.read([("SELECT k FROM t ORDER BY k", [])])[0]] == ["a", "d", "e"]
    assert store.write_group([[(add, ["f"], False)], [(add, ["g"], False)]]) == [[1], [1]]


def test_the_store_seals_bodies_byte_for_byte_as_the_caller_would(tmp_path) -> None:
    """The SQLite savers hand their store unsealed envelopes (``Body``), which
    it checksums and compresses on the thread that commits: through ``write``,
    ``write_group`` and the commit queue alike, what is stored is exactly what
    sealing before the hand-off stores (keyframes, deltas, small and large)."""
    import select

    from fastcheckpoint._native import Body, DeltaWriter, SqliteStore, blob_info, seal

    store = SqliteStore(str(tmp_path / "b.db"))
    store.execute_script("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    now, later = DeltaWriter(ratio=4), DeltaWriter(ratio=4)  # deltas until the last turn
    msgs = [HumanMessage(content=f"message {i} " * (1 + i % 7), id=str(i)) for i in range(12)]
    expected: list[bytes] = []
    bodies: list[Body] = []
    for turn in range(4):
        values = {"messages": msgs[: 6 + 2 * turn], "step": turn, "note": "x" * (30 * turn)}
        versions = {ch: f"{turn + 1:032}" for ch in values}
        sealed = now.encode_blobs("t", "", values, versions)
        deferred = later.encode_blobs("t", "", values, versions, seal=False)
        assert [(b[0], b[1], b[2], b[4]) for b in deferred] == [(b[0], b[1], b[2], b[4]) for b in sealed]
        assert all(isinstance(b[3], Body) for b in deferred)
        expected += [b[3] for b in sealed]
        bodies += [b[3] for b in deferred]
    assert blob_info(expected[-3])[0] == f"{3:032}", "the last messages blob is a delta"
    row = bytes(range(256)) * 40  # large and repetitive: stored zstd-compressed
    expected += [seal(row), seal(b"\x90")]
    bodies += [Body(row), Body(b"\x90")]
    assert blob_info(expected[-2])[4] and not blob_info(expected[-1])[4], "one compressed, one not"
    assert [b.seal() for b in bodies] == expected

    add = "INSERT INTO t (k, v) VALUES (?, ?)"
    stmts = [(add, (i, b), False) for i, b in enumerate(bodies)]
    store.write(stmts[:5])
    assert store.write_group([stmts[5:8], stmts[8:10]]) == [[1] * 3, [1] * 2]
    queue = store.commit_queue()
    queue.submit([stmts[10:]])
    assert select.select([queue.fileno()], [], [], 10)[0], "no answer came"
    ((_, answer, failed),) = queue.completions()
    assert not failed and answer == [[1] * (len(stmts) - 10)]
    queue.close()
    assert [r[0] for r in store.read([("SELECT v FROM t ORDER BY k", [])])[0]] == expected
    store.close()


def test_the_commit_queue_answers_groups_in_order_with_write_groups_answers(tmp_path) -> None:
    """The async savers' commit thread: each group is answered as
    ``write_group`` would answer it, through a socket the event loop watches."""
    import select

    from fastcheckpoint._native import SqliteStore
    from fastcheckpoint.errors import ConfigError, DatabaseLockedError, MissingRowError

    store = SqliteStore(str(tmp_path / "q.db"), busy_timeout=0.2)
    store.execute_script("CREATE TABLE t (k TEXT PRIMARY KEY)")
    add = "INSERT INTO t (k) VALUES (?)"
    queue = store.commit_queue()

    def answers(n: int) -> list:
        got: list = []
        while len(got) < n:
            assert select.select([queue.fileno()], [], [], 10)[0], "no answer came"
            got += queue.completions()
        return got

    tickets = [
        queue.submit([[(add, ["a"], False)], [(add, ["b"], False), ("SELECT 1 FROM t WHERE k = 'zz'", [], True)]]),
        queue.submit([[(add, ["c"], False)]]),
    ]
    (t0, a0, failed0), (t1, a1, failed1) = answers(2)
    assert [t0, t1] == tickets and not failed0 and not failed1
    assert a0[0] == [1] and isinstance(a0[1], MissingRowError) and a1 == [[1]]
    # The transaction as a whole failing is the group's answer, flagged: nothing stored.
    other = sqlite3.connect(str(tmp_path / "q.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    queue.submit([[(add, ["d"], False)]])
    ((_, error, failed),) = answers(1)
    assert failed and isinstance(error, DatabaseLockedError)
    other.execute("ROLLBACK")
    assert [r[0] for r in store.read([("SELECT k FROM t ORDER BY k", [])])[0]] == ["a", "c"]
    # Groups queued when the store closes are answered (closed), and a closed queue refuses more.
    store.close()
    queue.submit([[(add, ["e"], False)]])
    queue.close()
    ((_, error, failed),) = queue.completions()
    assert failed and isinstance(error, ConfigError)
    with pytest.raises(ConfigError):
        queue.submit([[(add, ["f"], False)]])


def test_a_saver_per_turn_stores_deltas(tmp_path) -> None:
    db = str(tmp_path / "c.db")
    raw = sqlite3.connect(db)

    def blobs(thread: str) -> list[tuple[str, str | None]]:
        # Versions as stored are shortened (_schema.stored_version): ordered by their counters.
        q = f"SELECT version, base FROM fc_blobs WHERE {THREAD_IS.format('?')} AND channel = 'messages'"
        return sorted(raw.execute(q, (thread,)).fetchall(), key=lambda r: _schema.version_of(r[0]))

    graphs.a_saver_per_turn_stores_deltas(lambda: SqliteSaver.from_conn_string(db), blobs)


def test_the_writer_remembers_the_channels_used_most_recently(tmp_path) -> None:
    """A long-lived saver meets ever more threads: its writer keeps the stored
    element hashes of the ``remember`` list channels used most recently. A
    forgotten thread's next put is a keyframe, unless a run reads the thread
    first (as every LangGraph run does), which teaches the writer again."""
    from langgraph.checkpoint.base import empty_checkpoint

    from fastcheckpoint._native import DeltaWriter

    db = str(tmp_path / "c.db")
    raw = sqlite3.connect(db)
    with SqliteSaver.from_conn_string(db) as saver:
        saver._writer = DeltaWriter(remember=8, ratio=1)  # deltas for every put below
        heads: dict[str, str | None] = {}

        def put(thread: str, n: int) -> str | None:
            """Stores the thread's first ``n`` messages; returns the blob's delta base."""
            cp = empty_checkpoint()
            version = f"{n:032}"
            cp["channel_values"] = {"messages": [HumanMessage(f"{thread} says {i}", id=str(i)) for i in range(n)]}
            cp["channel_versions"] = {"messages": version}
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": heads.get(thread)}}
            heads[thread] = saver.put(config, cp, {}, {"messages": version})["configurable"]["checkpoint_id"]
            q = f"SELECT base FROM fc_blobs WHERE {THREAD_IS.format('?')} AND version = ?"
            return raw.execute(q, (thread, version)).fetchone()[0]

        for t in range(12):
            assert put(f"t{t}", 6) is None and put(f"t{t}", 7) == f"{6:032}"
        assert put("t11", 8) == f"{7:032}", "a recent thread is remembered"
        assert put("t0", 8) is None, "the oldest threads were forgotten"
        saver.get_tuple(cfg("t1"))
        assert put("t1", 8) == f"{7:032}", "reading the thread taught the writer again"
        for t in ("t0", "t1", "t11"):
            assert [m.content for m in saver.get_tuple(cfg(t)).checkpoint["channel_values"]["messages"]] == [
                f"{t} says {i}" for i in range(8)
            ]
        saver._writer = DeltaWriter(remember=1, ratio=1)  # the smallest memory still works
        assert put("u0", 6) is None and put("u1", 6) is None and put("u1", 7) == f"{6:032}"
        assert put("u0", 7) is None


def as_released(made: Path, old: Path, schema: int) -> None:
    """Writes ``old``: the rows of ``made`` (a file of this release) as a
    release at ``schema`` (2 or 3) stored them, whole versions and whole
    checkpoint records, each row naming its thread."""
    from fastcheckpoint._native import ENVELOPE_TYPE, seal
    from fastcheckpoint._storage import full_record, loads
    from fastcheckpoint.serde import RustSerializer

    serde, long = RustSerializer(), _schema.version_of
    raw, src = sqlite3.connect(old), sqlite3.connect(made)
    for stmt in [_schema.CREATE_VERSION_TABLE, *(s for m in _schema.MIGRATIONS[:schema] for s in m)]:
        raw.execute(stmt)
    raw.executemany(_schema.SET_VERSION, [(v,) for v in range(1, schema + 1)])
    columns = "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, {}, metadata, channels"
    for *key, parent, type_, data, metadata, stored, hidden, created in src.execute(
        f"SELECT {columns.format('record').replace('thread_id', THREAD_NAME)}, hidden, created_at FROM fc_checkpoints"
    ):
        channels = {ch: long(v) if isinstance(v, str) else v for ch, v in json.loads(stored).items()}
        record = full_record(
            loads(serde, (type_, data), ("checkpoint", *key), str), key[2], lambda channels=channels: channels
        )
        data = seal(serde.dumps_typed(record)[1])
        row = (*key, parent, ENVELOPE_TYPE, data, metadata, json.dumps(channels), hidden, created)
        into = f"INSERT INTO fc_checkpoints ({columns.format('checkpoint')}, hidden, created_at)"
        raw.execute(f"{into} VALUES ({', '.join('?' * 10)})", row)
    blobs = src.execute(f"SELECT {THREAD_NAME}, checkpoint_ns, channel, version, type, blob, base FROM fc_blobs")
    for *key, ver, type_, blob, base in blobs:
        row = (*key, long(ver), type_, blob, base and long(base))
        raw.execute("INSERT INTO fc_blobs VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    writes = src.execute(
        f"SELECT {THREAD_NAME}, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value"
        " FROM fc_writes"
    )
    raw.executemany("INSERT INTO fc_writes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", writes)
    raw.commit()
    raw.close()
    src.close()


def made_chat(path: Path) -> list[tuple]:
    """A chat thread of six turns stored in ``path``; its checkpoints as read."""
    with SqliteSaver.from_conn_string(str(path)) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(6):
            app.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
        return [comparable(t) for t in saver.list(cfg("chat"))]


def goes_on_with_deltas(saver: SqliteSaver, checkpoints: int) -> None:
    app = graphs.chat_graph().compile(checkpointer=saver)
    app.invoke({"messages": [HumanMessage("one more")]}, cfg("chat"))
    bases = saver.conn.execute("SELECT base FROM fc_blobs WHERE channel = 'messages'").fetchall()
    assert sum(b is not None for (b,) in bases) > len(bases) // 2, "the thread goes on with deltas"
    assert len(list(saver.list(cfg("chat")))) == checkpoints + 3


def test_a_schema_2_file_is_rebuilt_without_rowid_and_reads_the_same(tmp_path) -> None:
    """A file made by a release at schema 2 (rowid tables) has its checkpoint
    and blob tables rebuilt WITHOUT ROWID when opened: every checkpoint reads
    back as before, and the thread goes on with deltas."""
    made, old = tmp_path / "made.db", tmp_path / "old.db"
    before = made_chat(made)
    as_released(made, old, 2)
    with SqliteSaver.from_conn_string(str(old)) as saver:
        assert [comparable(t) for t in saver.list(cfg("chat"))] == before
        tables = dict(saver.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        assert all(tables[t].endswith("WITHOUT ROWID") for t in ("fc_checkpoints", "fc_blobs"))
        assert not tables["fc_writes"].endswith("WITHOUT ROWID")
        goes_on_with_deltas(saver, len(before))


def test_a_schema_3_file_has_its_versions_shortened_and_reads_the_same(tmp_path) -> None:
    """A file made by a release at schema 3 (whole version strings) has them
    shortened where the tables name them when opened: every checkpoint reads
    back as before, with the same versions, and the thread goes on."""
    made, old = tmp_path / "made.db", tmp_path / "old.db"
    before = made_chat(made)
    as_released(made, old, 3)
    raw = sqlite3.connect(old)
    assert all(v.startswith("0000") for (v,) in raw.execute("SELECT version FROM fc_blobs"))
    raw.close()
    with SqliteSaver.from_conn_string(str(old)) as saver:
        assert [comparable(t) for t in saver.list(cfg("chat"))] == before
        versions = saver.conn.execute("SELECT version, base FROM fc_blobs").fetchall()
        assert all(v.startswith("~") and (b is None or b.startswith("~")) for v, b in versions)
        named = [json.loads(c) for (c,) in saver.conn.execute("SELECT channels FROM fc_checkpoints")]
        assert all(v.startswith("~") for c in named for v in c.values())
        assert sum(len(v) for v, _ in versions) < 0.6 * sum(len(_schema.version_of(v)) for v, _ in versions)
        goes_on_with_deltas(saver, len(before))


def test_a_schema_4_file_has_its_rows_keyed_by_thread_number_and_reads_the_same(tmp_path) -> None:
    """A file at schema 4 (each row keyed by its thread's name) has its
    tables rebuilt keyed by the thread's number when opened: every checkpoint
    reads back as before, every thread keeps its name, and the thread goes on."""
    made, old = tmp_path / "made.db", tmp_path / "old.db"
    before = made_chat(made)
    with SqliteSaver.from_conn_string(str(made)) as saver:
        saver.copy_thread("chat", "chat-copy")
    as_released(made, old, 3)
    raw = sqlite3.connect(old)
    for stmt in _schema.MIGRATIONS[3]:
        raw.execute(stmt)
    raw.execute(_schema.SET_VERSION, (4,))
    raw.commit()
    names = {t for (t,) in raw.execute("SELECT thread_id FROM fc_blobs UNION SELECT thread_id FROM fc_writes")}
    assert names == {"chat", "chat-copy"}
    raw.close()
    with SqliteSaver.from_conn_string(str(old)) as saver:
        assert [comparable(t) for t in saver.list(cfg("chat"))] == before
        copied = [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(cfg("chat-copy"))]
        assert copied == [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(cfg("chat"))]
        rows = {
            table: saver.conn.execute(f"SELECT DISTINCT typeof(thread) FROM {table}").fetchall()
            for table in ("fc_checkpoints", "fc_blobs", "fc_writes")
        }
        assert all(r == [("integer",)] for r in rows.values()), rows
        assert sorted(n for (n,) in saver.conn.execute("SELECT name FROM fc_threads")) == ["chat", "chat-copy"]
        goes_on_with_deltas(saver, len(before))


def test_int_and_float_versions_keep_their_own_names(tmp_path) -> None:
    """Versions 1 and 1.0 are distinct (LangGraph allows int, float and str
    versions): each blob is found under its own, whichever was named first."""
    from langgraph.checkpoint.base import empty_checkpoint

    assert [_schema.stored_version(v) for v in (1, 1.0, "1", 1, 1.0)] == ["1", "1.0", "1", "1", "1.0"]
    with SqliteSaver.from_conn_string(str(tmp_path / "v.db")) as saver:
        for thread, version in (("int", 1), ("float", 1.0), ("str", "1")):
            c = empty_checkpoint()
            c["channel_values"] = {"v": [thread] * 5}
            c["channel_versions"] = {"v": version}
            saver.put(cfg(thread), c, {}, {"v": version})
        for thread, version in (("int", 1), ("float", 1.0), ("str", "1")):
            got = saver.get_tuple(cfg(thread)).checkpoint
            assert got["channel_values"] == {"v": [thread] * 5}
            assert got["channel_versions"] == {"v": version} and type(got["channel_versions"]["v"]) is type(version)


@given(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00")),
        st.builds(
            lambda n, rest, prefix: f"{prefix}{n:032}.{rest}",
            st.integers(0, 10**32 - 1),
            st.text(st.characters(codec="utf-8", exclude_characters="\x00")),
            st.sampled_from(["", "~", "~~", "1"]),
        ),
    )
)
@settings(max_examples=300, deadline=None)
def test_versions_are_shortened_reversibly_and_the_migration_agrees(version: str) -> None:
    """``stored_version`` is undone by ``version_of`` (so distinct versions
    stay distinct), and the SQL that shortens a file's versions at its
    upgrade computes the same text."""
    stored = _schema.stored_version(version)
    assert _schema.version_of(stored) == version
    if version.startswith("0" * 30):
        assert len(stored) < len(version)
    raw = sqlite3.connect(":memory:")
    migrated = raw.execute(f"WITH t(v) AS (SELECT ?) SELECT {_schema._short_version('v')} FROM t", (version,))
    assert migrated.fetchone()[0] == stored
    raw.close()


def test_records_are_stored_slim_and_whole_records_read_the_same(tmp_path) -> None:
    """A checkpoint record is stored without its id (the row's key) and,
    when no value is inline, without its channel_versions (the row's
    ``channels``); records stored whole, as before, read back the same."""
    from fastcheckpoint._native import seal
    from fastcheckpoint._storage import INLINE, full_record

    db = str(tmp_path / "slim.db")
    with SqliteSaver.from_conn_string(db) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(3):
            app.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
        latest = saver.get_tuple(cfg("chat"))
        # A re-put stores its values inline: its record keeps the versions.
        parent = saver.get_tuple(latest.parent_config)
        saver.put(parent.parent_config, parent.checkpoint, {**parent.metadata, "step": 99}, {})
        before = [comparable(t) for t in saver.list(cfg("chat"))]
        codec = saver.serde.codec
        rows = saver.conn.execute("SELECT checkpoint_id, record, channels FROM fc_checkpoints").fetchall()
        slim = {cid: (codec.loads_chain([data]), saver._channels(channels)) for cid, data, channels in rows}
        assert all("id" not in record for record, _ in slim.values())
        whole = [cid for cid, (record, channels) in slim.items() if "channel_versions" in record]
        assert whole == [latest.parent_config["configurable"]["checkpoint_id"]]
        assert INLINE in slim[whole[0]][1].values()
        # Store every record whole, as releases before did.
        for cid, (record, channels) in slim.items():
            data = seal(saver.serde.dumps_typed(full_record(record, cid, lambda channels=channels: channels))[1])
            saver.conn.execute("UPDATE fc_checkpoints SET record = ? WHERE checkpoint_id = ?", (data, cid))
        saver.conn.commit()
    with SqliteSaver.from_conn_string(db) as saver:
        assert [comparable(t) for t in saver.list(cfg("chat"))] == before
        assert comparable(saver.get_tuple(cfg("chat"))) == before[0]


def test_an_earlier_release_cannot_read_or_write_an_upgraded_file(tmp_path) -> None:
    """A process of an earlier release that had the file open before another
    upgraded it would name versions whole (names the shortened ones never
    meet) and read slim records as checkpoints without versions: its
    statements fail instead, and the file reads the same afterwards."""
    db = tmp_path / "f.db"
    before = made_chat(db)
    raw = sqlite3.connect(db)
    earlier = [  # the schema-3 release's own statements
        """SELECT checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM fc_checkpoints
            WHERE thread_id = 'chat' AND checkpoint_ns = ''""",
        """INSERT OR REPLACE INTO fc_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
            type, checkpoint, metadata, channels, created_at, hidden) VALUES ('chat', '', 'z', NULL, 'fc1', x'',
            '{}', '{"messages": "00000000000000000000000000000042.0.123"}', 0, 0)""",
        # the schema-4 release's, which keyed rows by the thread's name
        """SELECT checkpoint_id, parent_checkpoint_id, type, record, metadata, channels FROM fc_checkpoints
            WHERE thread_id = 'chat' AND checkpoint_ns = ''""",
        """INSERT OR IGNORE INTO fc_blobs (thread_id, checkpoint_ns, channel, version, type, blob, base)
            VALUES ('chat', '', 'messages', '~42.0.123', 'fc1', x'', NULL)""",
        """INSERT OR IGNORE INTO fc_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx,
            channel, type, value) VALUES ('chat', '', 'z', 't', '', 0, 'messages', 'fc1', x'')""",
    ]
    for stmt in earlier:
        with pytest.raises(sqlite3.OperationalError, match="column"):
            raw.execute(stmt)
    raw.close()
    with SqliteSaver.from_conn_string(str(db)) as saver:
        assert [comparable(t) for t in saver.list(cfg("chat"))] == before
