"""A separate process driving a saver, for crash, restart and concurrency tests.

    python -m tests.worker run DB THREAD STEPS [DURABILITY]   # run (or resume) a looping graph
    python -m tests.worker hammer DB NAME PUTS   # 2 threads of raw puts: its own thread and "shared"
    python -m tests.worker faults DB PUTS SYNC   # SQLite puts that go on after errors (run under strace)

DB is a SQLite path or a ``postgresql://`` URI.

Every put that returned is printed as ``ack <thread> <checkpoint_id>`` (flushed),
so the parent knows exactly what was acknowledged before it killed us.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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
        return {"steps": [step_item(n)]}

    def more(state: LoopState) -> str:
        return "work" if len(state["steps"]) < state["target"] else END

    g = StateGraph(LoopState)
    g.add_node("work", work)
    g.add_edge(START, "work")
    g.add_conditional_edges("work", more)
    return g


def step_item(i: int) -> str:
    return f"step {i}: " + "x" * 1000


def expected_steps(n: int) -> list[str]:
    return [step_item(i) for i in range(n)]


def run(db: str, thread: str, steps: int, durability: str = "sync") -> None:
    with open_saver(db, acking=True) as saver:
        app = loop_graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        started = app.get_state(cfg).values
        app.invoke(None if started else {"steps": [], "target": steps}, cfg, durability=durability)
        print("done", flush=True)


def hammer(db: str, name: str, puts: int) -> None:
    with open_saver(db) as saver:
        errors: list[BaseException] = []

        def guarded(thread: str) -> None:
            try:
                grow(saver, thread, puts, lambda j: f"{name}-{thread}-{j}")
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


def item(thread: str, j: int) -> str:
    return f"{thread}-{j}: " + "y" * 300


def grow(saver, thread: str, puts: int, element: Callable[[int], str], on_error=None) -> None:
    """``puts`` puts of a growing list (the delta path), each acknowledged and
    followed by a put_writes; a failed call goes to ``on_error`` (or raises)
    and the next put retries from the last acknowledged checkpoint.
    Checkpoint i holds ``element(0)`` .. ``element(i)``."""
    parent = version = None
    for i in range(puts):
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"items": [element(j) for j in range(i + 1)]}
        cp["channel_versions"] = {"items": version}
        cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": parent}}
        try:
            stored = saver.put(cfg, cp, {"step": i}, {"items": version})["configurable"]["checkpoint_id"]
            ack(thread, stored)
            saver.put_writes({"configurable": {**cfg["configurable"], "checkpoint_id": stored}}, [("c", i)], "t")
            parent = stored
        except Exception as e:
            if on_error is None:
                raise
            on_error(e)


def faults(db: str, puts: int, synchronous: str) -> None:
    """One thread of puts; each failure is printed as ``err <class>`` and the
    run goes on."""
    with SqliteSaver.from_conn_string(db, synchronous=synchronous) as saver:

        def report(e: Exception) -> None:
            with _print_lock:
                print("err", type(e).__name__, str(e).replace("\n", " "), flush=True)

        grow(saver, "t", puts, lambda j: item("t", j), report)
    print("done", flush=True)


# -- the parent's side -------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts ``python -m tests.worker ARGS`` with its output piped (``env``:
    variables added to ours)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def acks(out: str) -> list[tuple[str, str]]:
    return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("ack ")]


def run_and_kill(db: str, steps: int, delay: float, *extra: str) -> tuple[str, int]:
    """Starts ``run`` on thread "t" and SIGKILLs it ``delay`` seconds after it
    is under way; returns everything it printed and its exit status."""
    p = spawn("run", db, "t", str(steps), *extra)
    assert p.stdout is not None
    first = p.stdout.readline()
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    out, _ = p.communicate(timeout=60)
    return first + out, p.returncode


def finish_and_compare(db: str, steps: int) -> None:
    """Resumes thread "t" in a fresh, uncrashed process; the result must equal
    an uncrashed run's, and every checkpoint pass ``check_thread``."""
    p = spawn("run", db, "t", str(steps))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    with open_saver(db) as saver:
        state = loop_graph().compile(checkpointer=saver).get_state({"configurable": {"thread_id": "t"}})
        assert state.values["steps"] == expected_steps(steps) and state.next == ()
    assert check_thread(db, "t", []) >= steps


def check_thread(db: str, thread: str, acked: list[tuple[str, str]]) -> int:
    """What a crash must leave of a ``run`` thread: every acknowledged checkpoint
    present; every visible one complete (its values rebuild and match its step)
    and with its parent; each task's pending writes whole (every task writes
    ``steps``, the branch only with it). Returns how many are visible.

    (A child checkpoint without its parent's writes is not torn: LangGraph
    submits put_writes and the next put concurrently, even under "sync".)"""
    with open_saver(db) as saver:
        tuples = list(saver.list({"configurable": {"thread_id": thread}}))
    ids = {t.config["configurable"]["checkpoint_id"] for t in tuples}
    lost = [c for t, c in acked if t == thread and c not in ids]
    assert not lost, f"{len(lost)} acknowledged checkpoints lost"
    parents = {t.parent_config["configurable"]["checkpoint_id"] for t in tuples if t.parent_config}
    assert parents <= ids, "a checkpoint is visible without its parent"
    for t in tuples:
        n = max(t.metadata["step"], 0)
        steps = t.checkpoint["channel_values"].get("steps", [])
        assert len(steps) == n and (n == 0 or steps[-1] == step_item(n - 1)), "a checkpoint's values are incomplete"
        tasks: dict[str, set[str]] = {}
        for task_id, channel, _ in t.pending_writes:
            tasks.setdefault(task_id, set()).add(channel)
        assert all("steps" in chans for chans in tasks.values()), "a task's writes were stored in part"
    return len(tuples)


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


def check_hammered(rows: Callable[[str], list], saver, acked: list[tuple[str, str]], writer: str, puts: int) -> None:
    """What ``hammer_all``'s workers leave (``rows(sql)`` runs a query on the
    database): exactly the acknowledged checkpoints, none lost or duplicated,
    one write each; ``writer``'s own thread holds its whole list, and the shared
    thread's latest checkpoint is one writer's complete list."""
    assert sorted((t, c) for t, _, c in rows(saver.sql.ALL_KEYS)) == sorted(acked)
    assert rows("SELECT count(*) FROM fc_writes")[0][0] == len(acked)
    own = saver.get_tuple({"configurable": {"thread_id": f"{writer}-0"}})
    assert own.checkpoint["channel_values"]["items"] == [f"{writer}-{writer}-0-{j}" for j in range(puts)]
    items = saver.get_tuple({"configurable": {"thread_id": "shared"}}).checkpoint["channel_values"]["items"]
    first = items[0].rsplit("-", 1)[0]
    assert items == [f"{first}-{j}" for j in range(puts)]


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "run":
        run(args[0], args[1], int(args[2]), *args[3:])
    elif mode == "faults":
        faults(args[0], int(args[1]), args[2])
    elif mode == "hammer":
        hammer(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
