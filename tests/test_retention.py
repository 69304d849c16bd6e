"""TTL retention in the savers, on SQLite files and a real PostgreSQL server,
with a controllable clock (``saver.clock``)."""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from fastcheckpoint import ConfigError
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests.graphs import chat_graph, delta_graph

MINUTE = 60.0
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def at(self, minutes: float) -> None:
        self.now = T0 + minutes * MINUTE


def cfg(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


@contextmanager
def open_saver(backend: str, tmp_path: Path, request: pytest.FixtureRequest, ttl: dict):
    if backend == "sqlite":
        cm = SqliteSaver.from_conn_string(str(tmp_path / "ttl.db"), ttl=ttl)
    else:
        cm = PostgresSaver.from_conn_string(request.getfixturevalue("pg_uri"), ttl=ttl)
    with cm as saver:
        clock = Clock()
        saver.clock = clock
        yield saver, clock


def say(graph, thread: str, text: str) -> None:
    graph.invoke({"messages": [HumanMessage(text)]}, cfg(thread))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_delete_strategy_expires_idle_threads_on_write(backend, tmp_path, request):
    ttl = {"default_ttl": 10, "strategy": "delete", "sweep_interval_minutes": 60}
    with open_saver(backend, tmp_path, request, ttl) as (saver, clock):
        chat = chat_graph().compile(checkpointer=saver)
        say(chat, "a", "first")  # the first put sweeps (nothing to do) and starts the interval
        clock.at(1)
        say(chat, "b", "second")
        clock.at(15)  # a and b are idle past their TTL, but no sweep is due yet
        say(chat, "c", "third")
        assert saver.get_tuple(cfg("a")) is not None
        clock.at(61)  # a sweep is due: it runs after this put
        say(chat, "d", "fourth")
        assert [saver.get_tuple(cfg(t)) is None for t in "abcd"] == [True, True, True, False]
        assert list(saver.list(cfg("a"))) == []
        # An expired thread id can start over.
        say(chat, "a", "again")
        assert chat.get_state(cfg("a")).values["messages"][0].content == "again"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_keep_latest_strategy_and_resume(backend, tmp_path, request):
    ttl = {"default_ttl": 10, "strategy": "keep_latest", "sweep_interval_minutes": 1}
    with open_saver(backend, tmp_path, request, ttl) as (saver, clock):
        chat = chat_graph().compile(checkpointer=saver)
        delta = delta_graph().compile(checkpointer=saver)
        for i in range(3):
            say(chat, "chat", f"turn {i}")
            delta.invoke({"items": []}, cfg("delta"))
        clock.at(5)
        say(chat, "active", "hello")
        assert len(list(saver.list(cfg("chat")))) == 9
        clock.at(12)
        assert saver.sweep() == 2  # "chat" and "delta"; "active" was written 7 minutes ago
        assert len(list(saver.list(cfg("chat")))) == 1
        assert len(list(saver.list(cfg("delta")))) == 1
        assert len(list(saver.list(cfg("active")))) == 3
        assert saver.sweep() == 0  # nothing left to prune
        # What remains resumes: the chat keeps its memory, the DeltaChannel rebuilds.
        say(chat, "chat", "after")
        assert len(chat.get_state(cfg("chat")).values["messages"]) == 8
        delta.invoke({"items": []}, cfg("delta"))
        assert delta.get_state(cfg("delta")).values["items"] == [f"item{i}" for i in range(4)]


def test_copy_counts_as_a_write(tmp_path, request):
    ttl = {"default_ttl": 10, "strategy": "delete", "sweep_interval_minutes": 1}
    with open_saver("sqlite", tmp_path, request, ttl) as (saver, clock):
        say(chat_graph().compile(checkpointer=saver), "old", "hi")
        clock.at(9)
        saver.copy_thread("old", "copy")
        clock.at(11)
        assert saver.sweep() == 1
        assert saver.get_tuple(cfg("old")) is None and saver.get_tuple(cfg("copy")) is not None


@asynccontextmanager
async def open_async(backend: str, tmp_path: Path, request: pytest.FixtureRequest, ttl: dict):
    if backend == "sqlite":
        cm = AsyncSqliteSaver.from_conn_string(str(tmp_path / "ttl.db"), ttl=ttl)
    else:
        cm = AsyncPostgresSaver.from_conn_string(request.getfixturevalue("pg_uri"), ttl=ttl)
    async with cm as saver:
        clock = Clock()
        saver.clock = clock
        yield saver, clock


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_async_savers_sweep_too(backend, tmp_path, request):
    ttl = {"default_ttl": 10, "strategy": "delete", "sweep_interval_minutes": 5}
    async with open_async(backend, tmp_path, request, ttl) as (saver, clock):
        chat = chat_graph().compile(checkpointer=saver)
        await chat.ainvoke({"messages": [HumanMessage("x")]}, cfg("a"))
        clock.at(20)
        await chat.ainvoke({"messages": [HumanMessage("y")]}, cfg("b"))  # sweeps after its first put
        assert await saver.aget_tuple(cfg("a")) is None
        clock.at(40)
        assert await saver.asweep() == 1
        assert await saver.aget_tuple(cfg("b")) is None


@pytest.mark.parametrize(
    "ttl",
    [
        {"default_ttl": 0},
        {"default_ttl": -5},
        {"default_ttl": "10"},
        {"default_ttl": 10, "strategy": "archive"},
        {"default_ttl": 10, "sweep_interval_minutes": 0},
        {"default_ttl": 10, "ttl_minutes": 3},
        {"default_ttl": 10, "sweep_limit": 0},
        {"default_ttl": 10, "sweep_limit": 2.5},
        {"strategy": "delete"},
        10,
    ],
)
def test_bad_ttl_settings_are_config_errors(ttl, tmp_path):
    with pytest.raises(ConfigError):
        with SqliteSaver.from_conn_string(str(tmp_path / "x.db"), ttl=ttl):
            pass


def test_every_key_the_agent_server_sends_is_accepted(tmp_path):
    ttl = {"strategy": "delete_all", "default_ttl": 10, "sweep_interval_minutes": 1, "sweep_limit": 1}
    with open_saver("sqlite", tmp_path, None, ttl) as (saver, clock):
        assert (saver.ttl.strategy, saver.ttl.sweep_limit) == ("delete", 1)
        chat = chat_graph().compile(checkpointer=saver)
        for thread in ("a", "b", "c"):
            say(chat, thread, "hi")
        clock.at(30)
        assert [saver.sweep(), saver.sweep(), saver.sweep(), saver.sweep()] == [1, 1, 1, 0]  # one thread a sweep
        saver.prune(["a"], strategy="delete_all")  # the server's gRPC name for "delete"
    with SqliteSaver.from_conn_string(str(tmp_path / "y.db"), ttl={"ttl": 5, "strategy": "keep_latest"}) as saver:
        assert saver.ttl.ttl == 5 * MINUTE
    with SqliteSaver.from_conn_string(str(tmp_path / "z.db"), ttl={"default_ttl": None, "strategy": "delete"}) as saver:
        assert saver.ttl is None  # no default TTL, as on the server


def test_ttl_is_off_by_default(tmp_path):
    with SqliteSaver.from_conn_string(str(tmp_path / "x.db")) as saver:
        assert saver.ttl is None
        say(chat_graph().compile(checkpointer=saver), "a", "hi")
        saver.clock = lambda: T0 * 10  # far in the future
        say(chat_graph().compile(checkpointer=saver), "b", "hi")
        assert saver.get_tuple(cfg("a")) is not None and saver.sweep() == 0
