"""The Postgres savers behind a real PgBouncer in transaction pooling mode,
shared with other clients that use prepared statements, as in production
(tests/pgserver.py starts both servers; a missing pgbouncer fails, never skips)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import psycopg
import pytest
from langchain_core.messages import HumanMessage

from fastcheckpoint.errors import PreparedStatementError
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from tests import graphs
from tests.pgserver import pgbouncer

TURNS = 20


def via(bouncer_uri: str, db_uri: str) -> str:
    """``db_uri``'s database, reached through the pooler."""
    return bouncer_uri.rsplit("/", 1)[0] + "/" + db_uri.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def bouncer(pg_server) -> Iterator[str]:
    with pgbouncer(pg_server, pool_size=3) as uri:
        yield uri


class OtherClients:
    """Clients of the same pooler that prepare their statements (psycopg with
    ``prepare_threshold=0``): their ``_pg3_N`` statements live on the server
    connections our transactions are handed. Errors they meet are theirs."""

    def __init__(self, uri: str, n: int = 2) -> None:
        self.uri, self.stop, self.queries = uri, threading.Event(), 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.uri, autocommit=True, prepare_threshold=0) as conn:
                    for k in range(50):
                        conn.execute("SELECT %s::int + %s", (i, k)).fetchone()
                        self.queries += 1
            except psycopg.Error:
                pass

    def __enter__(self) -> OtherClients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def check_chat(saver, thread: str, turns: int) -> None:
    state = graphs.chat_graph().compile(checkpointer=saver).get_state({"configurable": {"thread_id": thread}})
    assert [m.content for m in state.values["messages"] if m.type == "human"] == [f"{thread} {i}" for i in range(turns)]
    assert len(list(saver.list({"configurable": {"thread_id": thread}}))) == 3 * turns


@pytest.mark.parametrize("pool", [False, True], ids=["connection", "pool"])
def test_sync_saver_through_transaction_pooling(bouncer, pg_uri, pool) -> None:
    uri = via(bouncer, pg_uri)
    with OtherClients(uri) as others:
        config = {"pool_config": {"min_size": 2, "max_size": 4}} if pool else {}
        with PostgresSaver.from_conn_string(uri, **config) as saver:
            saver.setup()
            app = graphs.chat_graph().compile(checkpointer=saver)
            threads = ["a", "b", "c"] if pool else ["a"]

            def run(thread: str) -> None:
                for i in range(TURNS):
                    app.invoke({"messages": [HumanMessage(f"{thread} {i}")]}, {"configurable": {"thread_id": thread}})

            workers = [threading.Thread(target=run, args=(t,)) for t in threads]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            for t in threads:
                check_chat(saver, t, TURNS)
    assert others.queries > 0
    # What the pooler stored is what a direct connection reads.
    with PostgresSaver.from_conn_string(pg_uri) as direct:
        for t in threads:
            check_chat(direct, t, TURNS)


@pytest.mark.parametrize("pipeline", [False, True], ids=["plain", "pipeline"])
def test_async_saver_through_transaction_pooling(bouncer, pg_uri, pipeline) -> None:
    uri = via(bouncer, pg_uri)

    async def main() -> None:
        async with AsyncPostgresSaver.from_conn_string(uri, pipeline=pipeline) as saver:
            await saver.setup()
            app = graphs.chat_graph().compile(checkpointer=saver)

            async def run(thread: str) -> None:
                config = {"configurable": {"thread_id": thread}}
                for i in range(TURNS):
                    await app.ainvoke({"messages": [HumanMessage(f"{thread} {i}")]}, config)

            await asyncio.gather(run("x"), run("y"))
        async with AsyncPostgresSaver.from_conn_string(uri, pool_config={"min_size": 1, "max_size": 3}) as pooled:
            app = graphs.chat_graph().compile(checkpointer=pooled)
            state = await app.aget_state({"configurable": {"thread_id": "x"}})
            assert len(state.values["messages"]) == 2 * TURNS

    with OtherClients(uri):
        asyncio.run(main())
    with PostgresSaver.from_conn_string(pg_uri) as direct:
        for t in ("x", "y"):
            check_chat(direct, t, TURNS)


def test_a_prepared_statement_clash_is_a_typed_error_with_the_fix(pg_server, pg_uri) -> None:
    # One server connection: another client's "_pg3_0" is certain to be there.
    with pgbouncer(pg_server, pool_size=1) as single:
        uri = via(single, pg_uri)
        with psycopg.connect(uri, autocommit=True, prepare_threshold=0) as other:
            other.execute("SELECT %s::int", (1,)).fetchone()
            with PostgresSaver.from_conn_string(uri, prepare_threshold=0) as saver:
                with pytest.raises(PreparedStatementError, match="prepare_threshold=None"):
                    saver.setup()
            # Our default prepares nothing, so the same pooler works.
            with PostgresSaver.from_conn_string(uri) as saver:
                saver.setup()
                graphs.chat_graph().compile(checkpointer=saver).invoke(
                    {"messages": [HumanMessage("t 0")]}, {"configurable": {"thread_id": "t"}}
                )
                check_chat(saver, "t", 1)
