"""PostgresSaver specifics on a real server: upstream take-over, lost
connections, many worker processes, a SIGKILLed client, corruption, filters."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgresSaver
from langgraph.types import Command
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from fastcheckpoint.errors import ConnectionLostError, CorruptDataError, StorageError
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres import _schema as pg_schema
from fastcheckpoint.postgres._store import _args
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from tests import graphs
from tests.test_sqlite import comparable
from tests.worker import (
    acks,
    check_hammered,
    check_thread,
    finish_and_compare,
    hammer_all,
    run_and_kill,
)

KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
# Client kills per crash test; raise for a longer run: FC_KILL_LOOPS=500 make test
KILL_LOOPS = int(os.environ.get("FC_KILL_LOOPS", "20"))


def cfg(thread: str, **extra) -> dict:
    return {"configurable": {"thread_id": thread, **extra}}


def test_upstream_tables_are_taken_over(pg_uri) -> None:
    with UpstreamPostgresSaver.from_conn_string(pg_uri) as up:
        up.setup()
        chat = graphs.chat_graph().compile(checkpointer=up)
        for i in range(5):
            chat.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
        approval = graphs.approval_graph().compile(checkpointer=up)
        approval.invoke({"request": "deploy", "log": []}, cfg("approval"))  # interrupted: pending writes
        sub = graphs.subgraph_parent().compile(checkpointer=up)
        sub.invoke({"log": []}, cfg("sub"))
        expected = [comparable(t) for t in up.list(None)]
    assert len(expected) > 20
    with PostgresSaver.from_conn_string(pg_uri) as ours:
        ours.setup()
        assert [comparable(t) for t in ours.list(None)] == expected
        ours.setup()  # idempotent: nothing copied twice
        assert len(list(ours.list(None))) == len(expected)
        # The threads go on, on our tables.
        chat = graphs.chat_graph().compile(checkpointer=ours)
        out = chat.invoke({"messages": [HumanMessage("turn 5")]}, cfg("chat"))
        assert out["messages"][-1].content == "you said 6 things, last: turn 5"
        approval = graphs.approval_graph().compile(checkpointer=ours)
        assert approval.invoke(Command(resume="yes"), cfg("approval"))["status"] == "approved"


def _terminate_others(uri: str) -> int:
    with psycopg.connect(uri, autocommit=True) as admin:
        return admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_a_dropped_connection_is_replaced_by_the_pool_or_reported(pg_uri) -> None:
    with ConnectionPool(pg_uri, min_size=2, max_size=2, kwargs=KWARGS) as pool:
        saver = PostgresSaver(pool)
        app = graphs.chat_graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage("one")]}, cfg("t"))
        assert _terminate_others(pg_uri) >= 1  # as a server restart or a pooler timeout would
        out = app.invoke({"messages": [HumanMessage("two")]}, cfg("t"))
        assert out["messages"][-1].content == "you said 2 things, last: two"
    with psycopg.connect(pg_uri, **KWARGS) as conn:
        saver = PostgresSaver(conn)
        app = graphs.chat_graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage("one")]}, cfg("single"))
        _terminate_others(pg_uri)
        with pytest.raises(ConnectionLostError):
            app.invoke({"messages": [HumanMessage("two")]}, cfg("single"))
    # Nothing half-written: a fresh connection sees the first turn complete.
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        values = graphs.chat_graph().compile(checkpointer=saver).get_state(cfg("single")).values
        assert [m.content for m in values["messages"]] == ["one", "you said 1 things, last: one"]


def test_pool_threads_do_not_wait_on_each_other(pg_uri) -> None:
    """Two threads on one pooled saver: while one thread's put waits on the
    server (its delta's base row is locked by another client), the other
    thread's puts go through (no instance-wide lock)."""
    with ConnectionPool(pg_uri, min_size=2, max_size=4, kwargs=KWARGS) as pool:
        saver = PostgresSaver(pool)
        saver.setup()
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(3):  # long enough for its next put to be a delta
            app.invoke({"messages": [HumanMessage(f"a{i}")]}, cfg("a"))
        blocker = psycopg.connect(pg_uri)
        blocker.execute("SELECT * FROM fc_blobs WHERE thread_id = 'a' FOR UPDATE")
        slow = threading.Thread(target=app.invoke, args=({"messages": [HumanMessage("a3")]}, cfg("a")))
        slow.start()  # waits for the blocker's row lock, holding a pooled connection
        time.sleep(0.3)
        start = time.monotonic()
        app.invoke({"messages": [HumanMessage("b")]}, cfg("b"))
        assert time.monotonic() - start < 5 and slow.is_alive()
        blocker.rollback()
        blocker.close()
        slow.join(30)
        assert not slow.is_alive()
        assert app.get_state(cfg("a")).values["messages"][-1].content == "you said 4 things, last: a3"


def test_workers_on_one_server(pg_uri) -> None:
    puts = 40
    acked = hammer_all(pg_uri, 4, puts)
    with psycopg.connect(pg_uri) as raw, PostgresSaver.from_conn_string(pg_uri) as saver:
        check_hammered(lambda sql: raw.execute(sql).fetchall(), saver, acked, "p1", puts)


def test_sigkilled_client_resumes_in_a_fresh_process(pg_uri) -> None:
    loops = max(2, KILL_LOOPS // 4)  # a Postgres client start costs more than a SQLite one
    steps = 60 * loops
    rng = random.Random(99)
    acked: list[tuple[str, str]] = []
    for _ in range(loops):
        out, _ = run_and_kill(pg_uri, steps, rng.uniform(0, 0.3))
        acked += acks(out)
        check_thread(pg_uri, "t", acked)
    finish_and_compare(pg_uri, steps)


def test_corrupt_rows_and_hostile_filters(pg_uri) -> None:
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(3):
            app.invoke({"messages": [HumanMessage("x" * 500 + str(i))]}, cfg("t"))
        # Keys are data (JSON containment), never SQL text.
        assert list(saver.list(None, filter={"source') OR 1=1 --": "x"})) == []
        assert len(list(saver.list(None, filter={"source": "input"}))) == 3
        with psycopg.connect(pg_uri, autocommit=True) as raw:
            raw.execute(
                "UPDATE fc_blobs SET blob = set_byte(blob, length(blob) - 1, get_byte(blob, length(blob) - 1) # 1) "
                "WHERE channel = 'messages'"
            )
        with pytest.raises(CorruptDataError, match="thread 't'"):
            saver.get_tuple(cfg("t"))


def test_a_delta_base_removed_by_another_worker_is_not_referenced(pg_uri) -> None:
    with PostgresSaver.from_conn_string(pg_uri) as a, PostgresSaver.from_conn_string(pg_uri) as b:
        graphs.continue_after_another_saver_deleted_the_thread(a, b)


def test_a_saver_per_turn_stores_deltas(pg_uri) -> None:
    def blobs(thread: str) -> list[tuple[str, str | None]]:
        q = "SELECT version, base FROM fc_blobs WHERE thread_id = %s AND channel = 'messages' ORDER BY version"
        with psycopg.connect(pg_uri, autocommit=True) as raw:
            return raw.execute(q, (thread,)).fetchall()

    graphs.a_saver_per_turn_stores_deltas(lambda: PostgresSaver.from_conn_string(pg_uri), blobs)


async def test_sync_calls_on_the_async_saver_from_another_thread(pg_uri) -> None:
    async with AsyncPostgresSaver.from_conn_string(pg_uri) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        await app.ainvoke({"messages": [HumanMessage("hi")]}, cfg("t"))
        with pytest.raises(asyncio.InvalidStateError):
            saver.get_tuple(cfg("t"))
        t = await asyncio.to_thread(saver.get_tuple, cfg("t"))
        assert t.checkpoint["channel_values"]["messages"][0].content == "hi"


def test_a_version_1_database_upgrades_in_place(pg_uri) -> None:
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        chat = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(3):
            chat.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
        expected = [comparable(t) for t in saver.list(None)]
    with psycopg.connect(pg_uri, autocommit=True) as raw:  # back to the tables release 1 made
        raw.execute("ALTER TABLE fc_checkpoints DROP COLUMN created_at")
        raw.execute("DROP INDEX fc_blobs_base_ref")
        raw.execute("CREATE INDEX fc_blobs_base ON fc_blobs (thread_id, checkpoint_ns, channel, base)")
        raw.execute("UPDATE fc_schema SET version = 1")
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        assert [comparable(t) for t in saver.list(None)] == expected
        chat = graphs.chat_graph().compile(checkpointer=saver)
        out = chat.invoke({"messages": [HumanMessage("turn 3")]}, cfg("chat"))
        assert out["messages"][-1].content == "you said 4 things, last: turn 3"
    with psycopg.connect(pg_uri, autocommit=True) as raw:
        assert raw.execute("SELECT max(version) FROM fc_schema").fetchone()[0] == pg_schema.SCHEMA_VERSION
        indexes = {r[0] for r in raw.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'fc_blobs'")}
        assert indexes == {"fc_blobs_pkey", "fc_blobs_base_ref"}


def test_reading_a_checkpoint_probes_keys_however_many_rows_other_threads_have(pg_uri) -> None:
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        chat = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(3):
            chat.invoke({"messages": [HumanMessage(f"turn {i}")]}, cfg("chat"))
    with psycopg.connect(pg_uri, autocommit=True) as raw:
        raw.execute(
            "INSERT INTO fc_blobs SELECT 'other' || g, '', 'messages', lpad(g::text, 10, '0'), 'x', "
            "'\\x00'::bytea, NULL FROM generate_series(1, 50000) g"
        )
        raw.execute("ANALYZE")
        raw.execute("SET jit = off")  # as our reads run
        for query, params in (
            (pg_schema.GET_BLOBS, ("chat", "", None)),
            (pg_schema.list_queries("WHERE thread_id = ?")[1], ("chat", 10)),
        ):
            plan = "\n".join(r[0] for r in raw.execute("EXPLAIN " + _args(query, params)[0], _args(query, params)[1]))
            assert "Seq Scan on fc_blobs" not in plan, plan
            assert "fc_blobs_pkey" in plan, plan


async def test_a_failed_transaction_is_rolled_back_and_the_connection_goes_on(pg_uri) -> None:
    # Our transactions are BEGIN ... COMMIT in one pipeline: a statement that
    # fails must leave neither an open transaction nor a half-written one.
    bad = [
        ("INSERT INTO fc_schema (version) VALUES (?)", (99,), False),
        ("INSERT INTO no_such_table VALUES (1)", (), False),
    ]
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage("one")]}, cfg("t"))
        with pytest.raises(StorageError, match="no_such_table"):
            saver._ready().write(bad)
        assert saver.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        out = app.invoke({"messages": [HumanMessage("two")]}, cfg("t"))
        assert out["messages"][-1].content == "you said 2 things, last: two"
    async with AsyncPostgresSaver.from_conn_string(pg_uri) as saver:
        with pytest.raises(StorageError, match="no_such_table"):
            await (await saver._aready()).write(bad)
        assert saver.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        app = graphs.chat_graph().compile(checkpointer=saver)
        out = await app.ainvoke({"messages": [HumanMessage("three")]}, cfg("t"))
        assert out["messages"][-1].content == "you said 3 things, last: three"
    with psycopg.connect(pg_uri, autocommit=True) as raw:
        assert raw.execute("SELECT count(*) FROM fc_schema WHERE version = 99").fetchone()[0] == 0


async def test_a_group_commit_isolates_a_failing_batch_and_merges_inserts(pg_uri) -> None:
    from fastcheckpoint.errors import MissingRowError
    from fastcheckpoint.postgres._store import AsyncPgStore

    with psycopg.connect(pg_uri, autocommit=True) as raw:
        raw.execute("CREATE TABLE g (k TEXT PRIMARY KEY, ref TEXT REFERENCES g (k))")
    add = "INSERT INTO g (k, ref) VALUES (?, ?) ON CONFLICT DO NOTHING"
    async with await psycopg.AsyncConnection.connect(pg_uri, **KWARGS) as conn:
        store = AsyncPgStore(conn, asyncio.Lock())
        # Merged into one executemany per statement text, counts given back per row.
        assert await store.write_group(
            [[(add, ("a", None), False), (add, ("b", "a"), False)], [(add, ("c", "b"), False)]]
        ) == [
            [1, 1],
            [1],
        ]
        # One batch fails (its row's reference is missing): it alone gets the error.
        results = await store.write_group(
            [[(add, ("d", None), False)], [(add, ("e", "nope"), False)], [(add, ("f", "d"), False)]]
        )
        assert results[0] == [1] and results[2] == [1]
        assert isinstance(results[1], MissingRowError)
        # A row already there: the merged run reports zeros, never a count too high.
        results = await store.write_group([[(add, ("a", None), False)], [(add, ("g", None), False)]])
        assert results == [[0], [0]]
        rows = await store.read([("SELECT k FROM g ORDER BY k", ())])
        assert [r[0] for r in rows[0]] == ["a", "b", "c", "d", "f", "g"]


def test_reads_run_repeatable_read_without_jit(pg_uri) -> None:
    with PostgresSaver.from_conn_string(pg_uri) as saver:
        (jit,), (isolation,) = (
            rows[0] for rows in saver._ready().read([("SHOW jit", ()), ("SHOW transaction_isolation", ())])
        )
        assert (jit, isolation) == ("off", "repeatable read")
        # ...in our transaction only: the session keeps its own settings.
        assert saver.conn.execute("SHOW jit").fetchone()["jit"] == "on"
