"""Child process of tests/test_sqlite_library.py: runs on whatever ``sqlite3``
and ``FASTCHECKPOINT_SQLITE_ROUTE`` its parent set up, and prints one JSON line.

``check DB``: which SQLite the store reached and how; a put that waits while
Python's sqlite3 holds ``BEGIN IMMEDIATE`` and then lands; a real graph on
SqliteSaver and on AsyncSqliteSaver; a second process writing the same file
at the same time. ``writer DB THREAD TURNS``: that second process.
``open DB``: opens a saver on DB and puts once (the mis-built variant's check).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import sqlite3
import subprocess
import sys
import threading
import time

from langchain_core.messages import HumanMessage

from fastcheckpoint import _native
from fastcheckpoint.sqlite import SqliteSaver, _library
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests import graphs

TURNS = 12


def cfg(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


def humans(state: dict) -> list[str]:
    return [m.content for m in state["messages"] if m.type == "human"]


def chat(saver, thread: str, turns: int) -> None:
    app = graphs.chat_graph().compile(checkpointer=saver)
    for i in range(turns):
        app.invoke({"messages": [HumanMessage(f"{thread} turn {i}")]}, cfg(thread))


def waits_for_the_lock(db: str) -> float:
    """Seconds a put waited on Python's sqlite3's write transaction before it landed."""
    with SqliteSaver.from_conn_string(db, busy_timeout=30.0) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage("before")]}, cfg("lock"))
        theirs = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        theirs.execute("BEGIN IMMEDIATE")
        theirs.execute("CREATE TABLE held (x)")
        released = threading.Timer(0.6, lambda: theirs.execute("COMMIT"))
        started = time.monotonic()
        released.start()
        out = app.invoke({"messages": [HumanMessage("during")]}, cfg("lock"))
        waited = time.monotonic() - started
        released.join()
        theirs.close()
        assert humans(out) == ["before", "during"], out
        assert humans(saver.get_tuple(cfg("lock")).checkpoint["channel_values"]) == ["before", "during"]
    return waited


async def async_graph(db: str) -> list[str]:
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(TURNS):
            out = await app.ainvoke({"messages": [HumanMessage(f"async {i}")]}, cfg("async"))
        history = [s async for s in app.aget_state_history(cfg("async"))]
        assert len(history) >= 2 * TURNS, len(history)
        return humans(out)


def check(db: str) -> dict:
    route = _library.bind()
    version, bound = _native.sqlite_binding() or (sqlite3.sqlite_version, "python")
    try:
        ctypes.CDLL(None).sqlite3_libversion  # noqa: B018
        global_symbols = True
    except AttributeError:
        global_symbols = False
    waited = waits_for_the_lock(db)
    with SqliteSaver.from_conn_string(db) as saver:
        chat(saver, "sync", TURNS)
        state = graphs.chat_graph().compile(checkpointer=saver).get_state(cfg("sync"))
        sync_humans = humans(state.values)
    async_humans = asyncio.run(async_graph(db))
    # A second process on the same file, writing while this one writes.
    other = subprocess.Popen([sys.executable, "-m", "tests.sqlite_route_child", "writer", db, "other", str(TURNS)])
    with SqliteSaver.from_conn_string(db) as saver:
        chat(saver, "mine", TURNS)
    assert other.wait(timeout=300) == 0
    with SqliteSaver.from_conn_string(db) as saver:
        app = graphs.chat_graph().compile(checkpointer=saver)
        both = {t: humans(app.get_state(cfg(t)).values) for t in ("mine", "other")}
    raw = sqlite3.connect(db)
    integrity = raw.execute("PRAGMA integrity_check").fetchone()[0]
    raw.close()
    return {
        "route": route,
        "bound": bound,
        "version": version,
        "python_version": sqlite3.sqlite_version,
        "sqlite3_module": _library._module_file(),
        "mapped": _library.mapped_sqlite_libraries(),
        "global_symbols": global_symbols,
        "waited": waited,
        "sync": sync_humans,
        "async": async_humans,
        "both": both,
        "integrity": integrity,
    }


def main() -> None:
    mode, db, *rest = sys.argv[1:]
    if mode == "writer":
        thread, turns = rest
        with SqliteSaver.from_conn_string(db) as saver:
            chat(saver, thread, int(turns))
        return
    if mode == "open":
        try:
            with SqliteSaver.from_conn_string(db) as saver:
                chat(saver, "t", 1)
            print(json.dumps({"opened": True}))
        except Exception as e:
            print(json.dumps({"opened": False, "error": type(e).__name__, "message": str(e)}))
        return
    print(json.dumps(check(db)))


if __name__ == "__main__":
    main()
