"""The seed features end to end, then a side-by-side timing against upstream.

Run with ``make demo`` (or ``python -m fastcheckpoint.demo`` with the test extras
installed). Uses the embedded default, ``fastcheckpoint.sqlite.SqliteSaver`` on a
file in a temporary directory, and LangGraph's own StateGraph.
"""

from __future__ import annotations

import operator
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from fastcheckpoint._text import prose


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool
    log: Annotated[list[str], operator.add]


def _turn_number(msg: AnyMessage) -> int:
    return int(str(msg.content).split("]")[0][1:])


def agent_graph():
    """A ReAct-shaped agent: human -> AI tool call -> tool result -> AI answer."""

    def agent(state: State) -> dict:
        last = state["messages"][-1]
        if isinstance(last, HumanMessage):
            n = _turn_number(last)
            call = {"name": "search", "args": {"q": f"q{n}"}, "id": f"call_{n}", "type": "tool_call"}
            return {"messages": [AIMessage("", tool_calls=[call])]}
        n = int(last.tool_call_id.split("_")[1])
        return {"messages": [AIMessage(f"[{n}] " + prose(f"f{n}", 600))]}

    def tools(state: State) -> dict:
        call = state["messages"][-1].tool_calls[0]
        return {"messages": [ToolMessage(prose(call["id"], 1500), tool_call_id=call["id"])]}

    return react_graph(State, agent, tools)


def react_graph(state: type, agent: Callable[[Any], dict], tools: Callable[[Any], dict]) -> StateGraph:
    """The ReAct loop: ``agent`` runs, then ``tools`` while its last message
    calls a tool, then ``agent`` again, until it answers."""

    def route(s: Any) -> str:
        last = s["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    g = StateGraph(state)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_edge("tools", "agent")
    return g


def approval_graph():
    def plan(state: State) -> dict:
        return {"log": ["planned: delete old records"]}

    def approve(state: State) -> dict:
        answer = interrupt({"question": "Approve deleting old records?"})
        return {"approved": answer == "yes", "log": [f"human answered {answer!r}"]}

    def act(state: State) -> dict:
        return {"log": ["deleted" if state["approved"] else "skipped"]}

    g = StateGraph(State)
    for name, fn in (("plan", plan), ("approve", approve), ("act", act)):
        g.add_node(name, fn)
    g.add_edge(START, "plan")
    g.add_edge("plan", "approve")
    g.add_edge("approve", "act")
    g.add_edge("act", END)
    return g


def human(n: int) -> HumanMessage:
    return HumanMessage(f"[{n}] " + prose(f"h{n}", 300))


def cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def show_features(saver) -> None:
    print("== 1. Multi-turn memory, one thread per user")
    app = agent_graph().compile(checkpointer=saver)
    for n in range(3):
        app.invoke({"messages": [human(n)]}, cfg("alice"))
    app.invoke({"messages": [human(100)]}, cfg("bob"))
    for user in ("alice", "bob"):
        msgs = app.get_state(cfg(user)).values["messages"]
        print(
            f"   {user}: {len(msgs)} messages, "
            f"last human turn {_turn_number([m for m in msgs if isinstance(m, HumanMessage)][-1])}"
        )

    print("== 2. Human in the loop: interrupt(), inspect, resume with Command(resume=...)")
    ok = approval_graph().compile(checkpointer=saver)
    out = ok.invoke({"log": []}, cfg("ops-1"))
    print(f"   paused with: {out['__interrupt__'][0].value}  next={ok.get_state(cfg('ops-1')).next}")
    out = ok.invoke(Command(resume="yes"), cfg("ops-1"))
    print(f"   resumed: log={out['log']}")

    print("== 3. Time travel: history, replay and fork from an earlier checkpoint")
    history = list(app.get_state_history(cfg("alice")))
    print(f"   alice has {len(history)} checkpoints; steps {[h.metadata['step'] for h in history][:6]} ...")
    earlier = next(h for h in history if h.next == ("tools",))
    call_id = earlier.values["messages"][-1].tool_calls[0]["id"]
    edit = ToolMessage("(tool result replaced by a reviewer)", tool_call_id=call_id)
    forked = app.update_state(earlier.config, {"messages": [edit]}, as_node="tools")
    print(f"   forked at step {earlier.metadata['step']} -> new head {forked['configurable']['checkpoint_id'][:18]}...")
    out = app.invoke(None, forked)
    print(f"   after the fork the thread ends with: {str(out['messages'][-1].content)[:40]!r}")


def show_restart(path: str) -> None:
    from fastcheckpoint.sqlite import SqliteSaver

    print("== 4. A new process (here: a new saver on the same file) picks the threads up")
    with SqliteSaver.from_conn_string(path) as saver:
        app = agent_graph().compile(checkpointer=saver)
        out = app.invoke({"messages": [human(3)]}, cfg("alice"))
        print(f"   alice continues with {len(out['messages'])} messages after the restart")


def file_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name))


def timing(directory: Path, turns: int = 100) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver as Upstream
    from tqdm import tqdm

    from fastcheckpoint.sqlite import SqliteSaver

    print(
        f"== 5. Same {turns}-turn agent run ({turns * 4} messages of natural-like text) on a SQLite file, "
        "upstream vs fastcheckpoint"
    )
    results = {}
    for name, cls in (("upstream SqliteSaver", Upstream), ("fastcheckpoint SqliteSaver", SqliteSaver)):
        path = directory / f"{name.split()[0]}.db"
        with cls.from_conn_string(str(path)) as saver:
            app = agent_graph().compile(checkpointer=saver)
            t0 = time.perf_counter()
            for n in tqdm(range(turns), desc=f"   {name}", leave=False, ncols=90):
                app.invoke({"messages": [human(n)]}, cfg("t"))
            elapsed = time.perf_counter() - t0
            t1 = time.perf_counter()
            state = app.get_state(cfg("t"))
            get_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            n_history = len(list(app.get_state_history(cfg("t"))))
            hist_s = time.perf_counter() - t2
        results[name] = (elapsed, get_s, hist_s, n_history, file_size(path), state.values["messages"])
    (ue, ug, uh, un, us, um), (oe, og, oh, on, os_, om) = results.values()
    assert [m.content for m in um] == [m.content for m in om] and un == on, "both savers must agree"
    print(f"   {'':30} {'upstream':>12} {'ours':>12} {'ratio':>7}")
    print(f"   {'whole run':30} {ue:11.2f}s {oe:11.2f}s {ue / oe:6.1f}x")
    print(f"   {'get_state at the end':30} {ug * 1e3:10.2f}ms {og * 1e3:10.2f}ms {ug / og:6.1f}x")
    print(f"   {f'get_state_history ({on} states)':30} {uh * 1e3:10.1f}ms {oh * 1e3:10.1f}ms {uh / oh:6.1f}x")
    print(f"   {'database file':30} {us / 1e6:10.2f}MB {os_ / 1e6:10.3f}MB {us / os_:6.0f}x")
    print("   (final states and history lengths compared equal)")


def main() -> None:
    from fastcheckpoint.sqlite import SqliteSaver

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "checkpoints.db")
        with SqliteSaver.from_conn_string(path) as saver:
            show_features(saver)
        show_restart(path)
        timing(Path(d))


if __name__ == "__main__":
    main()
