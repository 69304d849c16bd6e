"""SqliteSaver vs upstream SqliteSaver on the chat-agent workload (file-backed, same process).

Each turn adds a human message, an AI tool call, a tool result and an AI answer
(DESIGN.md §7), one checkpoint per message. Run: make bench
Writes the put-latency plot to docs/put_latency.png.
"""

from __future__ import annotations

import asyncio
import collections
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver as UpstreamMemory
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver as UpstreamAsyncSqlite
from langgraph.graph import END, START, MessagesState, StateGraph

from benches._timing import fmt, settle, table, tail, time_calls, timeit
from benches._workload import CONFIG, REPEATED_TEXT, THREAD, thread_checkpoints
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests.graphs import react_turn_messages

PLOT = Path(__file__).resolve().parent.parent / "docs" / "put_latency.png"


def db_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name))


def chat_checkpoints(saver, turns: int, thread: str = THREAD):
    """The workload's puts, one per message: ``(config, checkpoint, metadata, new_versions)``,
    each checkpoint the child of the one before."""
    return thread_checkpoints(saver, (m for t in range(turns) for m in react_turn_messages(t)), thread)


def chat_puts(saver, turns: int, thread: str = THREAD) -> list[float]:
    """Puts the workload's checkpoints; returns each put's seconds."""
    times = []
    settle()
    for args in chat_checkpoints(saver, turns, thread):
        start = time.perf_counter()
        saver.put(*args)
        times.append(time.perf_counter() - start)
    return times


def best_of(fn, n: int = 5) -> float:
    return timeit(fn, repeat=n, warmup=1)["min"]


def test_sqlite_chat_workload(tmp_path) -> None:
    rows: list[tuple[str, float, float]] = []
    curves = {}
    sizes = {}
    for turns in (50, 200):
        results = {}
        for name, cls in (("upstream", UpstreamSqlite), ("ours", SqliteSaver)):
            path = tmp_path / f"{name}-{turns}.db"
            with cls.from_conn_string(str(path)) as saver:
                times = chat_puts(saver, turns)
                cfg = CONFIG
                latest = saver.get_tuple(cfg)
                get = best_of(lambda s=saver, c=cfg: s.get_tuple(c))
                listed = best_of(lambda s=saver, c=cfg: list(s.list(c)), n=1)
                n_listed = len(list(saver.list(cfg)))
            results[name] = (times, latest, get, listed, n_listed, db_size(path))
        (up_t, up_latest, up_get, up_list, up_n, up_size), (t, latest, get, listed, n, size) = (
            results["upstream"],
            results["ours"],
        )
        assert latest.checkpoint["channel_values"] == up_latest.checkpoint["channel_values"]
        assert n == up_n == 4 * turns
        um, up95 = tail(up_t)
        om, o95 = tail(t)
        msgs = 4 * turns
        rows += [
            (f"put, {turns} turns ({msgs} msgs), median", um, om),
            (f"put, {turns} turns ({msgs} msgs), p95 tail", up95, o95),
            (f"get_tuple latest, {turns} turns", up_get, get),
            (f"list whole thread ({n} checkpoints)", up_list, listed),
        ]
        sizes[turns] = (up_size, size)
        curves[turns] = (up_t, t)
    table(f"SqliteSaver (file, WAL; upstream FULL, ours NORMAL): upstream vs fastcheckpoint, {REPEATED_TEXT}", rows)
    for turns, (up_size, size) in sizes.items():
        print(
            f"database after {turns} turns: upstream {up_size / 1e6:.2f} MB, ours {size / 1e6:.3f} MB "
            f"({up_size / size:.0f}x smaller)"
        )
    p95_50, p95_200 = rows[1][2], rows[5][2]
    print(f"our p95 put at 200 turns / at 50 turns: {p95_200 / p95_50:.2f}x (upstream {rows[5][1] / rows[1][1]:.2f}x)")
    plot(curves[200])


def plot(curve: tuple[list[float], list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    up, ours = curve
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(range(1, len(up) + 1), [x * 1e3 for x in up], label="langgraph-checkpoint-sqlite", lw=0.8)
    ax.plot(range(1, len(ours) + 1), [x * 1e3 for x in ours], label="fastcheckpoint", lw=0.8)
    ax.set_xlabel("messages in the thread's history (one put per message)")
    ax.set_ylabel("put latency (ms)")
    ax.set_yscale("log")
    ax.set_title("SqliteSaver.put on a 200-turn chat agent (file-backed, WAL)")
    ax.legend()
    ax.grid(alpha=0.3)
    PLOT.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"plot written to {PLOT.relative_to(PLOT.parent.parent)}")


# -- whole graph turns against a zero-cost floor -------------------------------------------


class Passthrough:
    """A serializer that stores the objects themselves: checkpointing at no encoding cost."""

    def dumps_typed(self, obj):
        return "object", obj

    def loads_typed(self, data):
        return data[1]


def agent_graph() -> StateGraph:
    """A ReAct loop with a scripted model: tool call, tool result, answer."""

    def agent(state: MessagesState) -> dict:
        last = state["messages"][-1]
        turn = int(last.content[1:].split("]")[0])
        msgs = react_turn_messages(turn)
        return {"messages": [msgs[3] if isinstance(last, ToolMessage) else msgs[1]]}

    def tools(state: MessagesState) -> dict:
        call = state["messages"][-1]
        assert isinstance(call, AIMessage)
        turn = int(call.tool_calls[0]["args"]["query"].split()[-1])
        return {"messages": [react_turn_messages(turn)[2]]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "tools" if s["messages"][-1].tool_calls else END)
    g.add_edge("tools", "agent")
    return g


def turn_time(saver, turns: int) -> float:
    app = agent_graph().compile(checkpointer=saver)
    cfg = CONFIG
    for t in range(turns - 5):
        app.invoke({"messages": [react_turn_messages(t)[0]]}, cfg)
    samples = []
    settle()
    for t in range(turns - 5, turns):
        start = time.perf_counter()
        out = app.invoke({"messages": [HumanMessage(react_turn_messages(t)[0].content, id=f"h{t}")]}, cfg)
        samples.append(time.perf_counter() - start)
    assert len(out["messages"]) == 4 * turns
    return statistics.median(samples)


def test_whole_graph_turn_against_floor(tmp_path) -> None:
    turns = 200
    floor = turn_time(UpstreamMemory(serde=Passthrough()), turns)
    up_mem = turn_time(UpstreamMemory(), turns)
    with UpstreamSqlite.from_conn_string(str(tmp_path / "up.db")) as s:
        up_sql = turn_time(s, turns)
    with SqliteSaver.from_conn_string(str(tmp_path / "ours.db")) as s:
        ours = turn_time(s, turns)
        calls = call_costs(s, turns)
    table(
        f"whole graph turn at {4 * turns} messages (4 checkpoints per turn)",
        [("upstream SqliteSaver vs ours", up_sql, ours), ("upstream InMemorySaver vs ours", up_mem, ours)],
    )
    print(
        f"zero-cost floor {fmt(floor)}; ours / floor = {ours / floor:.2f}x; upstream InMemorySaver / floor = "
        f"{up_mem / floor:.2f}x"
    )
    print("our saver's calls in a turn, median CPU time:", ", ".join(f"{n} {fmt(t).strip()}" for n, t in calls))


def call_costs(saver, turns: int, n: int = 5) -> list[tuple[str, float]]:
    """The median CPU time (of the calling thread, so the graph's own work is
    left out) of each of the saver's calls in ``n`` more turns: the first
    get_tuple, the first put, ... (LangGraph interleaves puts and put_writes
    differently from turn to turn, so calls are matched by name and rank)."""
    log: dict[tuple[str, int], list[float]] = {}
    rank: collections.Counter[str] = collections.Counter()

    def logged(name: str, cpu: float, _wall: float) -> None:
        log.setdefault((name, rank[name]), []).append(cpu)
        rank[name] += 1

    time_calls(saver, ("get_tuple", "put", "put_writes"), logged)
    app = agent_graph().compile(checkpointer=saver)
    for t in range(turns, turns + n):
        rank.clear()
        msg = HumanMessage(react_turn_messages(t)[0].content, id=f"h{t}")
        app.invoke({"messages": [msg]}, CONFIG)
    return [(f"{name} {i + 1}", statistics.median(times)) for (name, i), times in sorted(log.items())]


# -- a new saver per turn (per request, or turns spread over workers) -----------------------


def distinct_text_graph() -> tuple[StateGraph, Callable[[int], HumanMessage]]:
    """A chat whose messages are seeded random words, which zstd compresses
    ~2.4x (closer to real conversation than the chat workload's repeated text,
    ~33x), and the human message of each turn."""
    vocabulary = [f"w{n:x}{n * 7919 % 9973:x}" for n in range(5000)]

    def text(seed: int, words: int) -> str:
        rng = random.Random(seed)
        return " ".join(rng.choices(vocabulary, k=words))

    def assistant(state: MessagesState) -> dict:
        return {"messages": [AIMessage(text(len(state["messages"]), 100), id=f"a{len(state['messages'])}")]}

    g = StateGraph(MessagesState)
    g.add_node("assistant", assistant)
    g.add_edge(START, "assistant")
    g.add_edge("assistant", END)
    return g, lambda turn: HumanMessage(text(-1 - turn, 50), id=f"h{turn}")


def test_sqlite_saver_per_turn(tmp_path) -> None:
    turns = 100
    cfg = CONFIG
    graph, human = distinct_text_graph()
    results = {}
    for name, cls, per_turn in (
        ("upstream", UpstreamSqlite, True),
        ("ours, one saver", SqliteSaver, False),
        ("ours", SqliteSaver, True),
    ):
        path = tmp_path / f"{name}.db"
        start = time.perf_counter()
        with cls.from_conn_string(str(path)) as saver:
            app = graph.compile(checkpointer=saver)
            for t in range(turns):
                if per_turn:
                    with cls.from_conn_string(str(path)) as fresh:
                        graph.compile(checkpointer=fresh).invoke({"messages": [human(t)]}, cfg)
                else:
                    app.invoke({"messages": [human(t)]}, cfg)
            messages = app.get_state(cfg).values["messages"]
        results[name] = (time.perf_counter() - start, db_size(path), [m.content for m in messages])
    assert results["ours"][2] == results["upstream"][2] == results["ours, one saver"][2]
    (up_t, up_size, _), (t, size, _), (_, one_size, _) = (
        results["upstream"],
        results["ours"],
        results["ours, one saver"],
    )
    table(f"{turns} turns of distinct text, a new SqliteSaver per turn", [("whole run", up_t, t)])
    print(
        f"database: upstream {up_size / 1e6:.2f} MB, ours {size / 1e6:.3f} MB ({up_size / size:.0f}x smaller); "
        f"ours with one saver for the whole run {one_size / 1e6:.3f} MB"
    )


# -- AsyncSqliteSaver: 8 concurrent threads ------------------------------------------------------


async def async_rate(saver, threads: int = 8, turns: int = 25) -> float:
    # The checkpoints are built before the clock starts, as the put rows above
    # time put alone: building one (~25 us) is the workload's cost, not the saver's.
    work = {f"t{i}": list(chat_checkpoints(saver, turns, f"t{i}")) for i in range(threads)}

    async def one(thread: str) -> None:
        for args in work[thread]:
            await saver.aput(*args)

    settle()
    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in work))
    return threads * turns * 4 / (time.perf_counter() - start)


def test_async_sqlite_concurrent_threads(tmp_path) -> None:
    # A run is ~0.1 s for us: the savers take turns, three runs each on fresh
    # files, and each keeps its best (as the timings elsewhere keep the fastest).
    async def main() -> tuple[list[float], list[float]]:
        up, ours = [], []
        for i in range(3):
            async with UpstreamAsyncSqlite.from_conn_string(str(tmp_path / f"up{i}.db")) as s:
                up.append(await async_rate(s))
            async with AsyncSqliteSaver.from_conn_string(str(tmp_path / f"ours{i}.db")) as s:
                ours.append(await async_rate(s))
        return up, ours

    up, ours = asyncio.run(main())
    print(
        f"\n## AsyncSqliteSaver, 8 concurrent threads x 25 turns (800 checkpoints), best of 3 runs\n"
        f"upstream {max(up):,.0f} checkpoints/s, ours {max(ours):,.0f} checkpoints/s: {max(ours) / max(up):.1f}x"
        f" (runs: upstream {', '.join(f'{r:,.0f}' for r in up)}; ours {', '.join(f'{r:,.0f}' for r in ours)})"
    )
