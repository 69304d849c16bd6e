"""Small real LangGraph graphs exercising the seed features (shared by tests, demo, benches)."""

from __future__ import annotations

import operator
import sys
from typing import Annotated

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


# LangGraph's interrupt() reads the run's config from a context variable, which
# asyncio hands to nodes only on CPython 3.11+: on 3.10 an async run that
# interrupts fails with upstream's savers as with ours
# (tests/test_async_savers.py::test_async_interrupts_need_cpython_311 shows it).
needs_async_context = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="LangGraph's interrupt() in async runs needs CPython 3.11+"
)


def chat_graph():
    """An echo 'assistant' that remembers the conversation."""

    def assistant(state: ChatState) -> dict:
        humans = [m.content for m in state["messages"] if isinstance(m, HumanMessage)]
        return {"messages": [AIMessage(f"you said {len(humans)} things, last: {humans[-1]}")]}

    g = StateGraph(ChatState)
    g.add_node("assistant", assistant)
    g.add_edge(START, "assistant")
    g.add_edge("assistant", END)
    return g


def react_turn_messages(turn: int) -> list[AnyMessage]:
    """One ReAct turn: human (~300 chars), AI tool call, tool result (~1,500), AI answer (~600)."""
    call = {"name": "search", "args": {"query": f"question {turn}"}, "id": f"call_{turn}", "type": "tool_call"}
    return [
        HumanMessage(f"[{turn}] " + "please look this up for me " * 11, id=f"h{turn}"),
        AIMessage(
            "",
            tool_calls=[call],
            id=f"a{turn}",
            usage_metadata={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13},
        ),
        ToolMessage(f"[{turn}] " + "result line with data " * 68, tool_call_id=f"call_{turn}", id=f"t{turn}"),
        AIMessage(f"[{turn}] " + "here is the answer text " * 25, id=f"f{turn}"),
    ]


class ApprovalState(TypedDict, total=False):
    request: str
    status: str
    log: Annotated[list[str], operator.add]


def approval_graph():
    """plan -> approve (interrupt()) -> act."""

    def plan(state: ApprovalState) -> dict:
        return {"log": [f"planned {state['request']}"]}

    def approve(state: ApprovalState) -> dict:
        answer = interrupt({"question": "Approve this action?", "action": state["request"]})
        return {"status": "approved" if answer == "yes" else "rejected", "log": [f"human said {answer}"]}

    def act(state: ApprovalState) -> dict:
        return {"log": [f"acted ({state['status']})"]}

    g = StateGraph(ApprovalState)
    g.add_node("plan", plan)
    g.add_node("approve", approve)
    g.add_node("act", act)
    g.add_edge(START, "plan")
    g.add_edge("plan", "approve")
    g.add_edge("approve", "act")
    g.add_edge("act", END)
    return g


class PipelineState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


def pipeline_graph(fail_at: str | None = None):
    """a -> b -> c; optionally raise inside one node to simulate a crash."""

    def node(name: str):
        def run(state: PipelineState) -> dict:
            if fail_at == name:
                raise RuntimeError(f"crash in {name}")
            return {"steps": [name]}

        return run

    g = StateGraph(PipelineState)
    for n in "abc":
        g.add_node(n, node(n))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g


def _concat(state: list, writes: list) -> list:
    out = list(state)
    for w in writes:
        out.extend(w)
    return out


class DeltaState(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=3)]


def delta_graph():
    def add(state: DeltaState) -> dict:
        return {"items": [f"item{len(state.get('items') or [])}"]}

    g = StateGraph(DeltaState)
    g.add_node("add", add)
    g.add_edge(START, "add")
    g.add_edge("add", END)
    return g


def subgraph_parent():
    class Sub(TypedDict, total=False):
        steps: Annotated[list[str], operator.add]

    def inner(state: Sub) -> dict:
        answer = interrupt("inner needs input")
        return {"steps": [f"inner:{answer}"]}

    sub = StateGraph(Sub)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)

    g = StateGraph(PipelineState)
    g.add_node("outer", lambda s: {"steps": ["outer"]})
    g.add_node("child", sub.compile())
    g.add_edge(START, "outer")
    g.add_edge("outer", "child")
    g.add_edge("child", END)
    return g


def continue_after_another_saver_deleted_the_thread(a, b) -> None:
    """A chat runs on saver ``a``; saver ``b`` (another process or worker on the
    same database) deletes the thread while ``a``'s writer still remembers its
    last list. Chatting on through ``a`` must not store a delta on the deleted
    base: ``b`` reads the continued thread back whole."""
    cfg = {"configurable": {"thread_id": "t"}}
    app = chat_graph().compile(checkpointer=a)
    for i in range(4):
        app.invoke({"messages": [HumanMessage(f"m{i}")]}, cfg)
    state = app.get_state(cfg).values
    b.delete_thread("t")
    app.update_state(cfg, state)
    app.invoke({"messages": [HumanMessage("after")]}, cfg)
    fresh = chat_graph().compile(checkpointer=b)
    assert [m.content for m in fresh.get_state(cfg).values["messages"]][-2:] == [
        "after",
        "you said 5 things, last: after",
    ]


def a_saver_per_turn_stores_deltas(open_saver, blobs) -> None:
    """Every turn of a chat runs on a new saver (a saver per request, or a
    thread's turns spread over workers): each learns the stored list when the
    run reads the thread, so its put is a delta as a long-lived saver's is,
    where it would otherwise store the whole history again. Reading an older
    checkpoint first does not change what a saver learned: the head's next put
    is still a delta on the head. ``open_saver()`` is a context manager of a
    saver on the shared database; ``blobs(thread)`` lists the stored
    ``messages`` blobs as (version, delta base or None), oldest first."""
    turns = 12

    def chat(saver, thread: str, text: str) -> list[str]:
        app = chat_graph().compile(checkpointer=saver)
        out = app.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}})
        return [m.content for m in out["messages"]]

    with open_saver() as saver:  # the long-lived saver to compare with
        for i in range(turns):
            one = chat(saver, "one", f"m{i} " * 20)
    for i in range(turns):
        with open_saver() as saver:
            per = chat(saver, "per", f"m{i} " * 20)
    assert per == one
    whole = [[v for v, base in blobs(t) if base is None] for t in ("one", "per")]
    assert len(blobs("per")) == len(blobs("one")) == 2 * turns
    # Lists under 4 messages are stored whole; the first list after them may be
    # a keyframe (one saver) or a delta on a short list a new saver read (per
    # turn); later keyframes fall where the deltas outweigh a quarter of the
    # last one (about every 1.25x growth: 7 more in these 24 versions).
    assert len(whole[1]) <= len(whole[0]) <= 11, whole
    with open_saver() as saver:
        app = chat_graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "per"}}
        states = list(app.get_state_history(cfg))
        app.get_state(states[len(states) // 2].config)  # an older checkpoint, read whole
        head = blobs("per")[-1][0]
        assert chat(saver, "per", "after")[-2:] == ["after", f"you said {turns + 1} things, last: after"]
    *_, (before, _), (added, added_base), (_, answer_base) = blobs("per")
    assert before == head and added_base == head and answer_base == added, "new messages are deltas on the head"
