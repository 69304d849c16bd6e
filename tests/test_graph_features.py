"""Every seed feature in real StateGraph runs, on each of our savers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver
from tests import graphs


def _sqlite(path: str, **kw) -> Iterator[BaseCheckpointSaver]:
    with SqliteSaver.from_conn_string(path, **kw) as saver:
        yield saver


def _sqlite_encrypted(path: str) -> Iterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    with SqliteSaver.from_conn_string(path) as saver:
        # Set after construction, as users do: must take effect on the next call.
        saver.serde = EncryptedSerializer.from_pycryptodome_aes(serde=RustSerializer(), key=b"k" * 16)
        yield saver


def _postgres(request) -> Iterator[BaseCheckpointSaver]:
    with PostgresSaver.from_conn_string(request.getfixturevalue("pg_uri")) as saver:
        yield saver


def _postgres_pool(request) -> Iterator[BaseCheckpointSaver]:
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    with ConnectionPool(request.getfixturevalue("pg_uri"), min_size=1, max_size=4, kwargs=kwargs) as pool:
        yield PostgresSaver(pool)


SAVERS: dict[str, Callable[[str, pytest.FixtureRequest], Iterator[BaseCheckpointSaver]]] = {
    "memory": lambda path, request: iter([InMemorySaver()]),
    "sqlite": lambda path, request: _sqlite(path),
    "sqlite-full-sync": lambda path, request: _sqlite(path, synchronous="FULL"),
    "sqlite-memory": lambda path, request: _sqlite(":memory:"),
    "sqlite-encrypted": lambda path, request: _sqlite_encrypted(path),
    "postgres": lambda path, request: _postgres(request),
    "postgres-pool": lambda path, request: _postgres_pool(request),
}


@pytest.fixture(params=list(SAVERS))
def saver(request, tmp_path) -> Iterator[BaseCheckpointSaver]:
    yield from SAVERS[request.param](str(tmp_path / "checkpoints.db"), request)


def cfg(thread: str, **extra) -> dict:
    return {"configurable": {"thread_id": thread, **extra}}


def test_threads_are_isolated_and_remember(saver) -> None:
    app = graphs.chat_graph().compile(checkpointer=saver)
    app.invoke({"messages": [HumanMessage("hi from a")]}, cfg("a"))
    app.invoke({"messages": [HumanMessage("hi from b")]}, cfg("b"))
    out = app.invoke({"messages": [HumanMessage("again a")]}, cfg("a"))
    assert [m.content for m in out["messages"]] == [
        "hi from a",
        "you said 1 things, last: hi from a",
        "again a",
        "you said 2 things, last: again a",
    ]
    assert len(app.get_state(cfg("b")).values["messages"]) == 2


def test_interrupt_before_and_after(saver) -> None:
    app = graphs.pipeline_graph().compile(checkpointer=saver, interrupt_before=["b"], interrupt_after=["c"])
    app.invoke({"steps": []}, cfg("t"))
    state = app.get_state(cfg("t"))
    assert state.next == ("b",) and state.values["steps"] == ["a"]
    app.invoke(None, cfg("t"))
    state = app.get_state(cfg("t"))
    assert state.values["steps"] == ["a", "b", "c"] and state.next == ()


def test_interrupt_and_resume_with_command(saver) -> None:
    app = graphs.approval_graph().compile(checkpointer=saver)
    out = app.invoke({"request": "deploy", "log": []}, cfg("t"))
    assert out["__interrupt__"][0].value == {"question": "Approve this action?", "action": "deploy"}
    assert app.get_state(cfg("t")).next == ("approve",)
    out = app.invoke(Command(resume="yes"), cfg("t"))
    assert out["status"] == "approved"
    assert out["log"] == ["planned deploy", "human said yes", "acted (approved)"]


def test_update_state_as_node_then_resume(saver) -> None:
    app = graphs.pipeline_graph().compile(checkpointer=saver, interrupt_before=["c"])
    app.invoke({"steps": []}, cfg("t"))
    app.update_state(cfg("t"), {"steps": ["edited"]}, as_node="b")
    state = app.get_state(cfg("t"))
    assert state.values["steps"] == ["a", "b", "edited"]
    assert state.metadata["source"] == "update"
    app.invoke(None, cfg("t"))
    assert app.get_state(cfg("t")).values["steps"] == ["a", "b", "edited", "c"]


def test_history_replay_and_fork(saver) -> None:
    app = graphs.pipeline_graph().compile(checkpointer=saver)
    app.invoke({"steps": []}, cfg("t"))
    history = list(app.get_state_history(cfg("t")))
    assert [h.metadata["step"] for h in history] == [3, 2, 1, 0, -1]
    after_a = next(h for h in history if h.values.get("steps") == ["a"])
    assert after_a.next == ("b",)
    # Replay from the checkpoint after "a": b and c run again on a new branch.
    replay = app.invoke(None, after_a.config)
    assert replay["steps"] == ["a", "b", "c"]
    # Fork: edit the old checkpoint, then continue from the fork.
    fork = app.update_state(after_a.config, {"steps": ["forked"]})
    out = app.invoke(None, fork)
    assert out["steps"] == ["a", "forked", "b", "c"]
    assert app.get_state(cfg("t")).values["steps"] == ["a", "forked", "b", "c"]
    # The original history is still there.
    assert app.get_state(history[0].config).values["steps"] == ["a", "b", "c"]


def test_resume_after_a_crash_mid_run(saver) -> None:
    crashing = graphs.pipeline_graph(fail_at="c").compile(checkpointer=saver)
    with pytest.raises(RuntimeError, match="crash in c"):
        crashing.invoke({"steps": []}, cfg("t"))
    state = crashing.get_state(cfg("t"))
    assert state.values["steps"] == ["a", "b"] and state.next == ("c",)
    fixed = graphs.pipeline_graph().compile(checkpointer=saver)
    assert fixed.invoke(None, cfg("t"))["steps"] == ["a", "b", "c"]


def test_subgraph_interrupt_and_state(saver) -> None:
    app = graphs.subgraph_parent().compile(checkpointer=saver)
    app.invoke({"steps": []}, cfg("t"))
    state = app.get_state(cfg("t"), subgraphs=True)
    assert state.next == ("child",)
    assert state.tasks[0].state.next == ("inner",)
    out = app.invoke(Command(resume="ok"), cfg("t"))
    # The subgraph returns its whole "steps" list, which the parent's reducer adds:
    # the result must be exactly what upstream's saver gives.
    from langgraph.checkpoint.memory import InMemorySaver as Upstream

    ref = graphs.subgraph_parent().compile(checkpointer=Upstream())
    ref.invoke({"steps": []}, cfg("t"))
    assert out == ref.invoke(Command(resume="ok"), cfg("t"))
    assert out["steps"][-1] == "inner:ok"


def test_delta_channel_state(saver) -> None:
    app = graphs.delta_graph().compile(checkpointer=saver)
    for _ in range(7):
        app.invoke({}, cfg("t"))
    assert app.get_state(cfg("t")).values["items"] == [f"item{i}" for i in range(7)]
    # A fresh graph object over the same saver rebuilds the value from history.
    again = graphs.delta_graph().compile(checkpointer=saver)
    assert again.invoke({}, cfg("t"))["items"] == [f"item{i}" for i in range(8)]


def test_delta_channel_survives_prune_and_copy(saver) -> None:
    app = graphs.delta_graph().compile(checkpointer=saver)
    for _ in range(5):
        app.invoke({}, cfg("t"))
    expected = [f"item{i}" for i in range(5)]
    saver.copy_thread("t", "copy")
    saver.prune(["t"], strategy="keep_latest")
    assert len(list(saver.list(cfg("t")))) == 1
    assert app.get_state(cfg("t")).values["items"] == expected
    assert app.get_state(cfg("copy")).values["items"] == expected
    assert app.invoke({}, cfg("t"))["items"] == [*expected, "item5"]


def test_store_compiled_alongside(saver) -> None:
    from langgraph.store.base import BaseStore

    def remember(state: graphs.PipelineState, *, store: BaseStore) -> dict:
        store.put(("users", "u1"), "pref", {"color": "blue"})
        return {"steps": ["stored"]}

    def recall(state: graphs.PipelineState, *, store: BaseStore) -> dict:
        return {"steps": [store.get(("users", "u1"), "pref").value["color"]]}

    from langgraph.graph import END, START, StateGraph

    g = StateGraph(graphs.PipelineState)
    g.add_node("remember", remember)
    g.add_node("recall", recall)
    g.add_edge(START, "remember")
    g.add_edge("remember", "recall")
    g.add_edge("recall", END)
    store = InMemoryStore()
    app = g.compile(checkpointer=saver, store=store)
    assert app.invoke({"steps": []}, cfg("t1"))["steps"] == ["stored", "blue"]
    # The store is shared across threads; the checkpoint is not.
    other = g.compile(checkpointer=saver, store=store)
    assert other.invoke({"steps": []}, cfg("t2"))["steps"] == ["stored", "blue"]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_durability_modes(saver, durability) -> None:
    app = graphs.pipeline_graph().compile(checkpointer=saver)
    assert app.invoke({"steps": []}, cfg("t"), durability=durability)["steps"] == ["a", "b", "c"]
    state = app.get_state(cfg("t"))
    assert state.values["steps"] == ["a", "b", "c"] and state.next == ()
    n = len(list(app.get_state_history(cfg("t"))))
    assert n == (1 if durability == "exit" else 5)


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_durability_modes_with_interrupt(saver, durability) -> None:
    app = graphs.approval_graph().compile(checkpointer=saver)
    app.invoke({"request": "x", "log": []}, cfg("t"), durability=durability)
    assert app.get_state(cfg("t")).next == ("approve",)
    out = app.invoke(Command(resume="no"), cfg("t"), durability=durability)
    assert out["status"] == "rejected"


@graphs.needs_async_context
async def test_async_graph_run(saver) -> None:
    app = graphs.approval_graph().compile(checkpointer=saver)
    await app.ainvoke({"request": "x", "log": []}, cfg("t"))
    out = await app.ainvoke(Command(resume="yes"), cfg("t"))
    assert out["status"] == "approved"
    assert len([s async for s in app.aget_state_history(cfg("t"))]) >= 4
