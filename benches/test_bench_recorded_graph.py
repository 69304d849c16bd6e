"""A real ReAct StateGraph run (an agent node and a tool node, a conditional
edge, pending writes: what LangGraph itself puts), recorded once and replayed
to upstream SqliteSaver and to ours, on the same calls: database bytes and
their ratio, and each over the raw message text, as the thread grows.

Run: .venv/bin/python -m pytest benches/test_bench_recorded_graph.py -s
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver as UpstreamMemory
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite
from langgraph.graph import MessagesState, StateGraph

from benches._workload import CONFIG
from benches.test_bench_long_thread import db_bytes
from fastcheckpoint._text import raw_text_bytes, turn_messages
from fastcheckpoint.demo import react_graph
from fastcheckpoint.sqlite import SqliteSaver

MARKS = (50, 200)


# Each turn's text made once: making it is the benchmark's work, not the graph's
# (it would otherwise count in the zero-cost floor). Nodes return copies, new
# objects as a model's replies are.
_turn = functools.lru_cache(maxsize=None)(turn_messages)


def agent_graph() -> StateGraph:
    """The agent calls a tool once per turn, then answers; messages from
    ``turn_messages`` (natural-like text, unique per turn)."""

    def agent(state: MessagesState) -> dict:
        human = max(i for i, m in enumerate(state["messages"]) if isinstance(m, HumanMessage))
        turn = int(state["messages"][human].id[1:])
        answered = len(state["messages"]) - human > 1
        return {"messages": [_turn(turn)[3 if answered else 1].model_copy()]}

    def tools(state: MessagesState) -> dict:
        call = state["messages"][-1]
        return {"messages": [_turn(int(call.id[1:]))[2].model_copy()]}

    return react_graph(MessagesState, agent, tools)


class Recorder(UpstreamMemory):
    """Upstream's InMemorySaver, keeping every put and put_writes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def put(self, config, checkpoint, metadata, new_versions):
        values = {k: list(v) if isinstance(v, list) else v for k, v in checkpoint["channel_values"].items()}
        cp = {**checkpoint, "channel_values": values}
        cp["channel_versions"] = dict(checkpoint["channel_versions"])
        cp["versions_seen"] = {k: dict(v) for k, v in checkpoint["versions_seen"].items()}
        self.calls.append(("put", (_configurable(config), cp, dict(metadata), dict(new_versions))))
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config, writes, task_id, task_path=""):
        self.calls.append(("put_writes", (_configurable(config), list(writes), task_id, task_path)))
        return super().put_writes(config, writes, task_id, task_path)


def _configurable(config: dict) -> dict:
    keys = ("thread_id", "checkpoint_ns", "checkpoint_id")
    return {"configurable": {k: config["configurable"][k] for k in keys if k in config["configurable"]}}


def record(turns: int) -> tuple[list, dict[int, int]]:
    """The calls a run of ``turns`` turns makes, and after which call each mark ends."""
    saver = Recorder()
    app = agent_graph().compile(checkpointer=saver)
    cfg = CONFIG
    ends = {}
    for t in range(turns):
        app.invoke({"messages": [turn_messages(t)[0]]}, cfg)
        if t + 1 in MARKS:
            ends[t + 1] = len(saver.calls)
    assert len(app.get_state(cfg).values["messages"]) == 4 * turns
    return saver.calls, ends


def replay(saver, calls, path: Path, ends: dict[int, int]) -> dict[int, tuple[int, float]]:
    """Database bytes at each mark, and the seconds the calls took."""
    out = {}
    done = 0
    spent = 0.0
    for mark, end in sorted(ends.items()):
        start = time.perf_counter()
        for kind, args in calls[done:end]:
            getattr(saver, kind)(*args)
        spent += time.perf_counter() - start
        done = end
        saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out[mark] = (db_bytes(path), spent)
    return out


Sizes = dict[str, dict[int, tuple[int, float]]]


def replay_both(tmp_path: Path, calls: list, ends: dict[int, int], serde: Any = None) -> Sizes:
    """``replay`` to upstream SqliteSaver and to ours (each given ``serde``
    when set), on files in ``tmp_path``: by saver, each mark's bytes and seconds."""
    sizes = {}
    for name, cls in (("upstream", UpstreamSqlite), ("ours", SqliteSaver)):
        path = tmp_path / f"{name}.db"
        with cls.from_conn_string(str(path)) as saver:
            if serde is not None:
                saver.serde = serde
            sizes[name] = replay(saver, calls, path, ends)
            latest = saver.get_tuple(CONFIG)
            assert len(latest.checkpoint["channel_values"]["messages"]) == 4 * MARKS[-1]
    return sizes


def print_replay(title: str, sizes: Sizes) -> None:
    """The table of ``replay_both``'s figures at each mark."""
    print(f"\n## {title}")
    print(f"{'turns':>6} {'upstream MB':>12} {'ours MB':>9} {'smaller':>8} {'ours / raw text':>16} {'replay time':>12}")
    for mark in MARKS:
        raw = raw_text_bytes([m for t in range(mark) for m in turn_messages(t)])
        (up, up_s), (ours, ours_s) = sizes["upstream"][mark], sizes["ours"][mark]
        print(
            f"{mark:>6} {up / 1e6:>12.2f} {ours / 1e6:>9.3f} {up / ours:>7.0f}x {ours / raw:>16.2f}"
            f" {up_s / ours_s:>11.1f}x"
        )
    print("replay time: upstream's seconds over ours for the same calls")


def test_recorded_graph_run(tmp_path) -> None:
    calls, ends = record(MARKS[-1])
    sizes = replay_both(tmp_path, calls, ends)
    puts = sum(kind == "put" for kind, _ in calls)
    print_replay(
        f"A recorded ReAct StateGraph run replayed to SqliteSaver ({puts} puts, "
        f"{len(calls) - puts} put_writes at {MARKS[-1]} turns; upstream FULL, ours NORMAL)",
        sizes,
    )
