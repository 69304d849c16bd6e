"""The per-interpreter figures of test_bench_versions.py, measured in the
interpreter that runs this module (one venv per CPython, the wheel installed):
codec, InMemorySaver put and SqliteSaver put / get_tuple at 800 messages of
natural-like text, ours and upstream side by side. Prints one JSON object.
With ``--sqlite-only``, only the SqliteSaver rows (for the rows of each route
to the SQLite library, ``FASTCHECKPOINT_SQLITE_ROUTE``, on the ``sqlite3`` the
caller put first on the path).

Run: python -m benches.versions [--sqlite-only]  (from the repository root)
"""

from __future__ import annotations

import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver as UpstreamMemory
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite

from benches._timing import settle, tail, timeit
from benches._workload import CONFIG, thread_checkpoints
from fastcheckpoint._text import turn_messages
from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver, _library

HISTORY = 800  # messages before the measured puts
SAMPLES = 40  # measured puts, one new message each
LIST_PAGE = 10  # checkpoints a list call returns (each with its 800 messages)


def thread_puts(saver, messages: list) -> list[float]:
    """Puts one checkpoint per message (each holding the history so far, as
    add_messages makes it); returns the seconds of each."""
    times = []
    settle()
    for args in thread_checkpoints(saver, messages):
        start = time.perf_counter()
        saver.put(*args)
        times.append(time.perf_counter() - start)
    return times


def measure(sqlite_only: bool = False) -> dict[str, object]:
    messages = [m for t in range((HISTORY + SAMPLES) // 4 + 1) for m in turn_messages(t)][: HISTORY + SAMPLES]
    rows: dict[str, tuple[float, float]] = {}
    if not sqlite_only:
        rows.update(measure_codec_and_memory(messages))
    rows.update(measure_sqlite(messages))
    route = _library.bind()
    return {"python": platform.python_version(), "route": route, "sqlite": sqlite3.sqlite_version, "rows": rows}


def measure_codec_and_memory(messages: list) -> dict[str, tuple[float, float]]:
    history = messages[:HISTORY]
    rows: dict[str, tuple[float, float]] = {}
    up_serde, our_serde = JsonPlusSerializer(), RustSerializer()
    up_bytes, our_bytes = up_serde.dumps_typed(history), our_serde.dumps_typed(history)
    rows["codec dumps, 800 msgs"] = (
        timeit(lambda: up_serde.dumps_typed(history))["median"],
        timeit(lambda: our_serde.dumps_typed(history))["median"],
    )
    rows["codec loads, 800 msgs"] = (
        timeit(lambda: up_serde.loads_typed(up_bytes))["median"],
        timeit(lambda: our_serde.loads_typed(our_bytes))["median"],
    )
    up_mem, our_mem = (
        tail(thread_puts(UpstreamMemory(), messages), SAMPLES),
        tail(thread_puts(InMemorySaver(), messages), SAMPLES),
    )
    rows["InMemorySaver put @800, median"] = (up_mem[0], our_mem[0])
    rows["InMemorySaver put @800, p95"] = (up_mem[1], our_mem[1])
    return rows


def measure_sqlite(messages: list) -> dict[str, tuple[float, float]]:
    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        got = {}
        for name, cls in (("upstream", UpstreamSqlite), ("ours", SqliteSaver)):
            with cls.from_conn_string(str(Path(tmp) / f"{name}.db")) as saver:
                times = thread_puts(saver, messages)
                cfg = CONFIG
                get = timeit(lambda s=saver, c=cfg: s.get_tuple(c), repeat=20)["median"]
                page = timeit(lambda s=saver, c=cfg: list(s.list(c, limit=LIST_PAGE)), repeat=5)["median"]
                latest = saver.get_tuple(cfg).checkpoint["channel_values"]["messages"]
            got[name] = (tail(times, SAMPLES), get, latest, page)
        assert got["ours"][2] == got["upstream"][2] == messages
    rows["SqliteSaver put @800, median"] = (got["upstream"][0][0], got["ours"][0][0])
    rows["SqliteSaver put @800, p95"] = (got["upstream"][0][1], got["ours"][0][1])
    rows["SqliteSaver get_tuple @800"] = (got["upstream"][1], got["ours"][1])
    rows[f"SqliteSaver list {LIST_PAGE} @800"] = (got["upstream"][3], got["ours"][3])
    return rows


if __name__ == "__main__":
    print(json.dumps(measure(sqlite_only="--sqlite-only" in sys.argv[1:])))
