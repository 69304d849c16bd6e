"""The seed features in real async StateGraph runs on AsyncSqliteSaver and
AsyncPostgresSaver (and on the sync savers' async methods, which upstream's
sync savers refuse)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import HumanMessage
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests import graphs


def cfg(thread: str, **extra) -> dict:
    return {"configurable": {"thread_id": thread, **extra}}


@pytest.fixture(params=["aio", "sync-saver", "aio-memory", "pg-aio", "pg-aio-pool", "pg-sync-saver"])
async def saver(request, tmp_path) -> AsyncIterator:
    path = str(tmp_path / "c.db")
    if request.param == "sync-saver":
        with SqliteSaver.from_conn_string(path) as s:
            yield s
        return
    if request.param.startswith("pg-"):
        uri = request.getfixturevalue("pg_uri")
        if request.param == "pg-sync-saver":
            with PostgresSaver.from_conn_string(uri) as s:
                yield s
        elif request.param == "pg-aio-pool":
            kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
            async with AsyncConnectionPool(uri, max_size=4, kwargs=kwargs, open=False) as pool:
                yield AsyncPostgresSaver(pool)
        else:
            async with AsyncPostgresSaver.from_conn_string(uri) as s:
                yield s
        return
    async with AsyncSqliteSaver.from_conn_string(":memory:" if request.param == "aio-memory" else path) as s:
        yield s


@graphs.needs_async_context
async def test_threads_memory_and_interrupts(saver) -> None:
    chat = graphs.chat_graph().compile(checkpointer=saver)
    await chat.ainvoke({"messages": [HumanMessage("a1")]}, cfg("a"))
    await chat.ainvoke({"messages": [HumanMessage("b1")]}, cfg("b"))
    out = await chat.ainvoke({"messages": [HumanMessage("a2")]}, cfg("a"))
    assert [m.content for m in out["messages"]][-1] == "you said 2 things, last: a2"
    approval = graphs.approval_graph().compile(checkpointer=saver)
    out = await approval.ainvoke({"request": "x", "log": []}, cfg("ap"))
    assert out["__interrupt__"][0].value["action"] == "x"
    out = await approval.ainvoke(Command(resume="yes"), cfg("ap"))
    assert out["status"] == "approved"
    pipe = graphs.pipeline_graph().compile(checkpointer=saver, interrupt_before=["b"], interrupt_after=["c"])
    await pipe.ainvoke({"steps": []}, cfg("p"))
    assert (await pipe.aget_state(cfg("p"))).next == ("b",)
    await pipe.aupdate_state(cfg("p"), {"steps": ["edited"]}, as_node="a")
    await pipe.ainvoke(None, cfg("p"))
    assert (await pipe.aget_state(cfg("p"))).values["steps"] == ["a", "edited", "b", "c"]


async def test_history_fork_and_crash_resume(saver) -> None:
    app = graphs.pipeline_graph().compile(checkpointer=saver)
    await app.ainvoke({"steps": []}, cfg("t"))
    history = [h async for h in app.aget_state_history(cfg("t"))]
    assert [h.metadata["step"] for h in history] == [3, 2, 1, 0, -1]
    after_a = next(h for h in history if h.values.get("steps") == ["a"])
    fork = await app.aupdate_state(after_a.config, {"steps": ["forked"]})
    assert (await app.ainvoke(None, fork))["steps"] == ["a", "forked", "b", "c"]
    crashing = graphs.pipeline_graph(fail_at="c").compile(checkpointer=saver)
    with pytest.raises(RuntimeError):
        await crashing.ainvoke({"steps": []}, cfg("crash"))
    fixed = graphs.pipeline_graph().compile(checkpointer=saver)
    assert (await fixed.ainvoke(None, cfg("crash")))["steps"] == ["a", "b", "c"]


@graphs.needs_async_context
async def test_subgraphs_delta_channel_store_and_durability(saver) -> None:
    sub = graphs.subgraph_parent().compile(checkpointer=saver)
    await sub.ainvoke({"steps": []}, cfg("s"))
    assert (await sub.ainvoke(Command(resume="ok"), cfg("s")))["steps"][-1] == "inner:ok"
    delta = graphs.delta_graph().compile(checkpointer=saver)
    for _ in range(5):
        await delta.ainvoke({}, cfg("d"))
    await saver.aprune(["d"], strategy="keep_latest")
    assert (await delta.ainvoke({}, cfg("d")))["items"] == [f"item{i}" for i in range(6)]
    app = graphs.pipeline_graph().compile(checkpointer=saver, store=InMemoryStore())
    for durability in ("sync", "async", "exit"):
        out = await app.ainvoke({"steps": []}, cfg(f"dur-{durability}"), durability=durability)
        assert out["steps"] == ["a", "b", "c"]
        assert (await app.aget_state(cfg(f"dur-{durability}"))).next == ()


async def test_sync_calls_on_the_async_saver_from_another_thread(tmp_path) -> None:
    import asyncio

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.db")) as saver:
        app = graphs.pipeline_graph().compile(checkpointer=saver)
        await app.ainvoke({"steps": []}, cfg("t"))
        tup = await asyncio.to_thread(saver.get_tuple, cfg("t"))
        assert tup.checkpoint["channel_values"]["steps"] == ["a", "b", "c"]


def _texts(t) -> list[tuple[str, str]]:
    return [(m.type, m.content) for m in t.checkpoint["channel_values"].get("messages", [])]


def _write(w: tuple) -> tuple:
    _, channel, value = w
    return channel, [m.content for m in value] if isinstance(value, list) else value


async def test_concurrent_runs_share_commits_and_each_is_stored(saver, tmp_path) -> None:
    """Eight threads at once: their puts and writes are committed in groups
    (one transaction for whatever is waiting); every thread's history must be
    exactly a run of its own on the sync path."""
    import asyncio

    app = graphs.chat_graph().compile(checkpointer=saver)

    async def talk(thread: str) -> None:
        for i in range(6):
            await app.ainvoke({"messages": [HumanMessage(f"{thread} turn {i}")]}, cfg(thread))

    await asyncio.gather(*(talk(f"t{n}") for n in range(8)))
    with SqliteSaver.from_conn_string(str(tmp_path / "alone.db")) as alone:
        solo = graphs.chat_graph().compile(checkpointer=alone)
        for n in range(8):
            for i in range(6):
                solo.invoke({"messages": [HumanMessage(f"t{n} turn {i}")]}, cfg(f"t{n}"))
        for n in range(8):
            ours = [t async for t in saver.alist(cfg(f"t{n}"))]
            theirs = list(alone.list(cfg(f"t{n}")))
            assert len(ours) == len(theirs) == 6 * 3  # input, loop and assistant step per turn
            for a, b in zip(ours, theirs, strict=True):  # message ids are random
                assert _texts(a) == _texts(b)
                assert a.metadata["step"] == b.metadata["step"]
                # (writes are encoded when the async task runs, after the reducer
                # may have given the messages ids: upstream's async saver too)
                assert [_write(w) for w in a.pending_writes] == [_write(w) for w in b.pending_writes]


async def test_a_cancelled_put_leaves_its_thread_consistent(saver) -> None:
    import asyncio

    from benches.test_bench_sqlite import chat_checkpoints

    streams = {f"t{n}": chat_checkpoints(saver, 6, f"t{n}") for n in range(8)}
    for round_ in range(21):
        batch = {t: next(s) for t, s in streams.items()}
        tasks = {t: asyncio.create_task(saver.aput(*args)) for t, args in batch.items()}
        await asyncio.sleep(0)
        victim = f"t{round_ % 8}" if round_ < 20 else None  # the last round runs clean
        if victim:
            tasks[victim].cancel()
        for t, task in tasks.items():
            try:
                await task
            except asyncio.CancelledError:
                assert t == victim
    for t, args in batch.items():
        assert (await saver.aget_tuple(cfg(t))).checkpoint["channel_values"]["messages"] == args[1]["channel_values"][
            "messages"
        ]


async def test_a_cancelled_group_commit_leaves_no_caller_waiting(tmp_path) -> None:
    import asyncio

    from benches.test_bench_sqlite import chat_checkpoints

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.db")) as saver:
        await saver.setup()
        for n in range(8):  # as a graph run starts: then a put needs no read first
            assert await saver.aget_tuple(cfg(f"t{n}")) is None
        streams = [chat_checkpoints(saver, 3, f"t{n}") for n in range(8)]
        first = [asyncio.create_task(saver.aput(*next(s))) for s in streams]
        await asyncio.sleep(0)  # the callers add their statements
        await asyncio.sleep(0)  # their groups are taken
        group = await saver._astore()
        second = [asyncio.create_task(saver.aput(*next(s))) for s in streams]
        await asyncio.sleep(0)  # these wait for the groups in flight
        assert group.in_flight and group.pending
        for answer in list(group.in_flight):
            answer.cancel()  # as a loop shutting down cancels a commit task
        _, pending = await asyncio.wait(first + second, timeout=10)
        assert not pending, "a caller was left waiting"
        # Each put either went through or was cancelled with its group; the saver goes on.
        for n, s in enumerate(streams):
            args = next(s)
            await saver.aput(*args)
            t = await saver.aget_tuple(cfg(f"t{n}"))
            assert t.checkpoint["channel_values"]["messages"] == args[1]["channel_values"]["messages"]


def _commit_threads() -> int:
    import os

    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            pass
    return names.count("fc-commit")


@pytest.mark.parametrize("kind", ["aio", "sync-saver"])
async def test_closing_answers_every_put_and_stops_the_commit_thread(tmp_path, kind) -> None:
    """Puts in flight when the saver closes each end (stored, or a ConfigError),
    none is left waiting; the commit thread stops and the loop stops watching
    its socket, also when ``close`` is called from another thread."""
    import asyncio

    from benches.test_bench_sqlite import chat_checkpoints
    from fastcheckpoint.errors import ConfigError

    loop = asyncio.get_running_loop()
    before = _commit_threads()
    for round_ in range(6):
        path = str(tmp_path / f"c{round_}.db")
        opened = (AsyncSqliteSaver if kind == "aio" else SqliteSaver).from_conn_string(path)
        saver = await opened.__aenter__() if kind == "aio" else opened.__enter__()
        streams = [chat_checkpoints(saver, 2, f"t{n}") for n in range(8)]
        await asyncio.gather(*(saver.aput(*next(s)) for s in streams))
        assert _commit_threads() == before + 1
        socket = saver._groups[loop].commit.queue.fileno()
        puts = [asyncio.create_task(saver.aput(*next(s))) for s in streams]
        await asyncio.sleep(0)  # the puts are encoded and queued
        if round_ % 2:
            await asyncio.to_thread(saver.close)
        else:
            saver.close()
        done, waiting = await asyncio.wait(puts, timeout=10)
        assert not waiting, "a put was left waiting"
        for put in done:
            assert put.exception() is None or isinstance(put.exception(), ConfigError)
        with pytest.raises(ConfigError):
            await saver.aput(*next(streams[0]))
        if kind == "aio":
            await opened.__aexit__(None, None, None)
        else:
            opened.__exit__(None, None, None)
        for _ in range(100):  # the close scheduled from another thread runs on the loop
            if _commit_threads() == before:
                break
            await asyncio.sleep(0.01)
        assert _commit_threads() == before
        assert not loop.remove_reader(socket), "the loop still watches the commit thread's socket"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="the limitation is CPython 3.10's")
async def test_async_interrupts_need_cpython_311(saver) -> None:
    """On 3.10, an async run that interrupts fails inside LangGraph, with
    upstream's InMemorySaver exactly as with ours: not a saver matter."""
    from langgraph.checkpoint.memory import InMemorySaver as UpstreamMemory

    errors = []
    for s in (UpstreamMemory(), saver):
        app = graphs.approval_graph().compile(checkpointer=s)
        with pytest.raises(RuntimeError) as e:
            await app.ainvoke({"request": "x", "log": []}, cfg("t"))
        errors.append(str(e.value))
    assert errors[0] == errors[1] == "Called get_config outside of a runnable context"
