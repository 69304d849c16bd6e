"""Resident memory stays flat over many puts and get_tuple calls: nothing in
the bindings (codec, delta writer, SQLite store) keeps what a call made.

``FC_LEAK_OPS`` sets how many of each (default 100,000)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from fastcheckpoint.sqlite import SqliteSaver

OPS = int(os.environ.get("FC_LEAK_OPS", "100000"))
# Allowed growth after warm-up: SQLite's page cache and allocator slack, far
# below what leaking even a few bytes per call over OPS calls would add.
SLACK_MB = 24


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_rss_flat_over_puts_and_get_tuple(tmp_path: Path):
    messages = [HumanMessage("hello " * 20, id="h"), AIMessage("hi there " * 30, id="a"), HumanMessage("more", id="m")]
    config = {"configurable": {"thread_id": "leak", "checkpoint_ns": ""}}
    with SqliteSaver.from_conn_string(str(tmp_path / "leak.db")) as saver:
        version = None

        def put(i: int) -> None:
            nonlocal version, config
            version = saver.get_next_version(version, None)
            c = empty_checkpoint()
            c["id"] = str(uuid6(clock_seq=i))
            c["channel_values"] = {"messages": messages, "n": i}
            c["channel_versions"] = {"messages": version, "n": version}
            config = saver.put(config, c, {"source": "loop", "step": i}, {"messages": version, "n": version})

        def get(_: int) -> None:
            t = saver.get_tuple({"configurable": {"thread_id": "leak"}})
            assert t is not None and len(t.checkpoint["channel_values"]["messages"]) == 3

        for op in (put, get):
            warm = OPS // 10
            for i in range(warm):
                op(i)
            gc.collect()
            before = rss_mb()
            for i in range(warm, OPS):
                op(i)
            gc.collect()
            grown = rss_mb() - before
            print(f"{op.__name__}: RSS {before:.1f} MB -> {before + grown:.1f} MB over {OPS - warm} calls")
            assert grown < SLACK_MB, f"{op.__name__}: RSS grew {grown:.1f} MB over {OPS - warm} calls"
