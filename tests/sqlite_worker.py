"""A separate process driving a SqliteSaver, for crash, restart and concurrency tests.

    python -m tests.sqlite_worker run DB THREAD STEPS   # run (or resume) a looping graph
    python -m tests.sqlite_worker hammer DB NAME PUTS   # 2 threads of raw puts

Every put that returned is printed as ``ack <thread> <checkpoint_id>`` (flushed),
so the parent knows exactly what was acknowledged before it killed us.
"""

from __future__ import annotations

import operator
import sys
import threading
import time
from typing import Annotated

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from fastcheckpoint.sqlite import SqliteSaver

_print_lock = threading.Lock()


def ack(thread: str, checkpoint_id: str) -> None:
    with _print_lock:
        sys.stdout.write(f"ack {thread} {checkpoint_id}\n")
        sys.stdout.flush()


class AckingSaver(SqliteSaver):
    def put(self, config, checkpoint, metadata, new_versions):
        out = super().put(config, checkpoint, metadata, new_versions)
        ack(out["configurable"]["thread_id"], out["configurable"]["checkpoint_id"])
        return out


class LoopState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    target: int


def loop_graph() -> StateGraph:
    """One node appending a ~1 KB item per step until ``target`` items exist."""

    def work(state: LoopState) -> dict:
        n = len(state.get("steps", []))
        time.sleep(0.001)
        return {"steps": [f"step {n}: " + "x" * 1000]}

    def more(state: LoopState) -> str:
        return "work" if len(state["steps"]) < state["target"] else END

    g = StateGraph(LoopState)
    g.add_node("work", work)
    g.add_edge(START, "work")
    g.add_conditional_edges("work", more)
    return g


def expected_steps(n: int) -> list[str]:
    return [f"step {i}: " + "x" * 1000 for i in range(n)]


def run(db: str, thread: str, steps: int) -> None:
    with AckingSaver.from_conn_string(db) as saver:
        app = loop_graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        started = app.get_state(cfg).values
        app.invoke(None if started else {"steps": [], "target": steps}, cfg, durability="sync")
        print("done", flush=True)


def hammer(db: str, name: str, puts: int) -> None:
    with SqliteSaver.from_conn_string(db) as saver:

        def writer(thread: str) -> None:
            parent = None
            version = None
            for i in range(puts):
                cp = empty_checkpoint()
                version = saver.get_next_version(version, None)
                cp["channel_values"] = {"items": [f"{thread}-{j}" for j in range(i + 1)]}
                cp["channel_versions"] = {"items": version}
                cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": parent}}
                parent = saver.put(cfg, cp, {"step": i}, {"items": version})["configurable"]["checkpoint_id"]
                ack(thread, parent)
                saver.put_writes({"configurable": {**cfg["configurable"], "checkpoint_id": parent}}, [("c", i)], "t")

        errors: list[BaseException] = []

        def guarded(thread: str) -> None:
            try:
                writer(thread)
            except BaseException as e:  # reported through the exit status
                errors.append(e)

        threads = [threading.Thread(target=guarded, args=(f"{name}-{k}",)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise SystemExit(f"{len(errors)} writer(s) failed: {errors[0]!r}")
    print("done", flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "run":
        run(args[0], args[1], int(args[2]))
    elif mode == "hammer":
        hammer(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
