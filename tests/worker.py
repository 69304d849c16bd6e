"""A separate process driving a saver, for crash, restart and concurrency tests.

    python -m tests.worker run DB THREAD STEPS   # run (or resume) a looping graph
    python -m tests.worker hammer DB NAME PUTS   # 2 threads of raw puts: its own thread and "shared"

DB is a SQLite path or a ``postgresql://`` URI.

Every put that returned is printed as ``ack <thread> <checkpoint_id>`` (flushed),
so the parent knows exactly what was acknowledged before it killed us.
"""

from __future__ import annotations

import operator
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.sqlite import SqliteSaver

_print_lock = threading.Lock()


def ack(thread: str, checkpoint_id: str) -> None:
    with _print_lock:
        sys.stdout.write(f"ack {thread} {checkpoint_id}\n")
        sys.stdout.flush()


def open_saver(db: str, *, acking: bool = False):
    """The saver for ``db`` (a context manager); ``acking``: every put that
    returned is reported."""
    cm = PostgresSaver.from_conn_string(db) if db.startswith("postgresql://") else SqliteSaver.from_conn_string(db)
    if not acking:
        return cm
    saver = cm.__enter__()
    put = saver.put

    def acking_put(config, checkpoint, metadata, new_versions):
        out = put(config, checkpoint, metadata, new_versions)
        ack(out["configurable"]["thread_id"], out["configurable"]["checkpoint_id"])
        return out

    saver.put = acking_put  # type: ignore[method-assign]
    return _Entered(cm, saver)


class _Entered:
    def __init__(self, cm, saver) -> None:
        self.cm, self.saver = cm, saver

    def __enter__(self):
        return self.saver

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


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
    with open_saver(db, acking=True) as saver:
        app = loop_graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        started = app.get_state(cfg).values
        app.invoke(None if started else {"steps": [], "target": steps}, cfg, durability="sync")
        print("done", flush=True)


def hammer(db: str, name: str, puts: int) -> None:
    with open_saver(db) as saver:

        def writer(thread: str) -> None:
            parent = None
            version = None
            for i in range(puts):
                cp = empty_checkpoint()
                version = saver.get_next_version(version, None)
                cp["channel_values"] = {"items": [f"{name}-{thread}-{j}" for j in range(i + 1)]}
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

        threads = [threading.Thread(target=guarded, args=(t,)) for t in (f"{name}-0", "shared")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise SystemExit(f"{len(errors)} writer(s) failed: {errors[0]!r}")
    print("done", flush=True)


# -- the parent's side -------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str) -> subprocess.Popen:
    """Starts ``python -m tests.worker ARGS`` with its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def acks(out: str) -> list[tuple[str, str]]:
    return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("ack ")]


def hammer_all(db: str, procs: int, puts: int) -> list[tuple[str, str]]:
    """Runs ``procs`` hammer workers at once on ``db``; checks none failed or
    saw a lock error and that ids increase per writer; returns every ack."""
    ps = [spawn("hammer", db, f"p{i}", str(puts)) for i in range(procs)]
    outs = [p.communicate(timeout=300) for p in ps]
    acked: list[tuple[str, str]] = []
    for p, (out, err) in zip(ps, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
        mine = acks(out)
        assert len(mine) == 2 * puts
        for thread in {t for t, _ in mine}:
            ids = [c for t, c in mine if t == thread]
            assert ids == sorted(ids), "checkpoint ids must increase per writer"
        acked += mine
    return acked


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "run":
        run(args[0], args[1], int(args[2]))
    elif mode == "hammer":
        hammer(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
