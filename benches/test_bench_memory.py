"""InMemorySaver vs upstream InMemorySaver on a growing chat history (one message per put).

Run: make bench
"""

from __future__ import annotations

import time

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver as UpstreamSaver

from benches._timing import settle, table, timeit
from benches._workload import CONFIG, THREAD
from fastcheckpoint.memory import InMemorySaver
from tests.graphs import react_turn_messages


def put_cost(saver, history_len: int, samples: int = 40) -> tuple[float, float, object]:
    """Median/p99 of one put appending one message to a history of `history_len`."""
    msgs = [m for t in range(history_len // 4 + samples) for m in react_turn_messages(t)]
    thread = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
    version = None
    parent = None
    cursor = history_len
    times = []

    def one_put() -> None:
        nonlocal version, parent, cursor
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"messages": msgs[:cursor]}
        cp["channel_versions"] = {"messages": version}
        cfg = {"configurable": {**thread["configurable"], "checkpoint_id": parent}}
        parent = saver.put(cfg, cp, {"step": cursor}, {"messages": version})["configurable"]["checkpoint_id"]
        cursor += 1

    one_put()  # the first put of a thread is a keyframe for us
    settle()
    for _ in range(samples):
        t = time.perf_counter()
        one_put()
        times.append(time.perf_counter() - t)
    times.sort()
    last = saver.get_tuple(CONFIG)
    return times[len(times) // 2], times[int(len(times) * 0.95)], last


def test_inmemory_put_and_get() -> None:
    rows = []
    for n in (200, 800):
        up_med, up_p95, up_last = put_cost(UpstreamSaver(), n)
        our_med, our_p95, our_last = put_cost(InMemorySaver(), n)
        assert our_last.checkpoint["channel_values"] == up_last.checkpoint["channel_values"]
        rows.append((f"put, history {n} msgs (median)", up_med, our_med))
        rows.append((f"put, history {n} msgs (p95)", up_p95, our_p95))
    up, ours = UpstreamSaver(), InMemorySaver()
    put_cost(up, 800, samples=5)
    put_cost(ours, 800, samples=5)
    cfg = CONFIG
    rows.append(
        (
            "get_tuple latest, 800 msgs",
            timeit(lambda: up.get_tuple(cfg))["median"],
            timeit(lambda: ours.get_tuple(cfg))["median"],
        )
    )
    table("InMemorySaver: upstream vs fastcheckpoint", rows)
    growth = rows[2][2] / rows[0][2]
    print(f"\nour put median at 800 msgs / at 200 msgs: {growth:.2f}x (upstream: {rows[2][1] / rows[0][1]:.2f}x)")
    stored_up = sum(len(b) for _, b in up.blobs.values())
    stored_ours = sum(len(b) for _, b in ours.blobs.values())
    print(
        f"blob bytes held after the 800-msg run: upstream {stored_up:,}  ours {stored_ours:,} "
        f"({stored_up / stored_ours:.0f}x less)"
    )
