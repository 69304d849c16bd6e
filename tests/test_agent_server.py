"""Our saver as the checkpointer of a real LangGraph Agent Server
(``langgraph dev`` from PyPI's langgraph-cli[inmem], on loopback, stopped by
its PID), driven with langgraph-sdk: runs, interrupt + resume, history, thread
copy, run delete, thread delete, TTL expiry and a restart that keeps threads.
The server needs CPython 3.11+ (langgraph-api); CI runs this on 3.11."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fastcheckpoint.server import server_ttl
from fastcheckpoint.sqlite import SqliteSaver

if sys.version_info < (3, 11):  # pragma: no cover - langgraph-api needs 3.11
    pytest.skip("the LangGraph Agent Server needs CPython 3.11+", allow_module_level=True)

from langgraph_sdk import get_sync_client

TTL_MINUTES = 0.3  # 18 s: long enough to outlive a restart, short enough to wait for

AGENT = textwrap.dedent(
    """
    import operator
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt


    class State(TypedDict, total=False):
        request: str
        status: str
        log: Annotated[list[str], operator.add]


    def plan(state: State) -> dict:
        return {"log": [f"planned {state['request']}"]}


    def approve(state: State) -> dict:
        answer = interrupt({"question": "approve?", "action": state["request"]})
        return {"status": "approved" if answer == "yes" else "rejected", "log": [f"human said {answer}"]}


    g = StateGraph(State)
    g.add_node("plan", plan)
    g.add_node("approve", approve)
    g.add_edge(START, "plan")
    g.add_edge("plan", "approve")
    g.add_edge("approve", END)
    graph = g.compile()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dev_server(app: Path, db: Path) -> Iterator[str]:
    """``langgraph dev`` serving ``app`` with our checkpointer on ``db``."""
    port = _free_port()
    exe = Path(sys.executable).parent / "langgraph"
    env = {**os.environ, "FASTCHECKPOINT_URI": str(db), "LANGSMITH_TRACING": "false"}
    log = open(app / "server.log", "ab")
    proc = subprocess.Popen(
        [str(exe), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (app / "server.log").read_text()[-3000:]
                    raise RuntimeError(f"langgraph dev did not start:\n{tail}") from None
                time.sleep(0.2)
        assert "Using custom checkpointer: AsyncSqliteSaver" in (app / "server.log").read_text()
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def stored(db: Path, thread: str) -> int:
    """How many checkpoints our saver holds for ``thread`` (read beside the server)."""
    with SqliteSaver.from_conn_string(str(db)) as saver:
        return len(list(saver.list({"configurable": {"thread_id": thread}})))


def test_agent_server_runs_on_our_checkpointer(tmp_path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    ttl = {"strategy": "delete", "default_ttl": TTL_MINUTES, "sweep_interval_minutes": 60, "sweep_limit": 1000}
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "dependencies": ["."],
                "graphs": {"agent": "./agent.py:graph"},
                "checkpointer": {"path": "fastcheckpoint.server.checkpointer", "ttl": ttl},
            }
        )
    )
    db = tmp_path / "checkpoints.sqlite"
    with dev_server(tmp_path, db) as url:
        client = get_sync_client(url=url)
        # Interrupt, resume, history.
        old = client.threads.create()["thread_id"]
        first = client.runs.wait(old, "agent", input={"request": "deploy", "log": []})
        assert first["__interrupt__"][0]["value"] == {"question": "approve?", "action": "deploy"}
        done = client.runs.wait(old, "agent", command={"resume": "yes"})
        assert done == {"request": "deploy", "status": "approved", "log": ["planned deploy", "human said yes"]}
        assert [h["next"] for h in client.threads.get_history(old)] == [[], ["approve"], ["plan"], ["__start__"]]
        assert stored(db, old) == 4
        # Thread copy, then deleting a run (its checkpoints go) and a thread.
        copy = client.threads.copy(old)["thread_id"]
        assert client.threads.get_state(copy)["values"] == done and stored(db, copy) == 4
        run = client.runs.create(old, "agent", input={"request": "again", "log": []})
        client.runs.join(old, run["run_id"])
        assert stored(db, old) == 7
        client.runs.delete(old, run["run_id"])
        assert stored(db, old) == 4 and client.threads.get_state(old)["values"] == done
        client.threads.delete(copy)
        assert stored(db, copy) == 0
        # A thread written once `old` has expired, so that it has not after the restart.
        time.sleep(TTL_MINUTES * 60 + 1)
        kept = client.threads.create()["thread_id"]
        client.runs.wait(kept, "agent", input={"request": "keep", "log": []})
    # A restart keeps the threads.
    with dev_server(tmp_path, db) as url:
        client = get_sync_client(url=url)
        assert client.threads.get_state(old)["values"] == done
        assert client.threads.get_state(kept)["next"] == ["approve"]
        # The first put after start sweeps: `old` has been idle past the TTL.
        assert client.runs.wait(kept, "agent", command={"resume": "no"})["status"] == "rejected"
        assert stored(db, old) == 0
        assert stored(db, kept) == 4


def test_the_servers_ttl_settings_reach_the_saver() -> None:
    block = {"ttl": {"strategy": "delete_all", "default_ttl": 60, "sweep_interval_minutes": 5, "sweep_limit": 50}}
    ttl = server_ttl({"LANGGRAPH_CHECKPOINTER": json.dumps(block)})
    assert (ttl.ttl, ttl.strategy, ttl.sweep_interval, ttl.sweep_limit) == (3600.0, "delete", 300.0, 50)
    # LANGGRAPH_THREAD_TTL wins, as on the server; FASTCHECKPOINT_TTL=off leaves TTL to the server.
    env = {"LANGGRAPH_CHECKPOINTER": json.dumps(block), "LANGGRAPH_THREAD_TTL": '{"default_ttl": 5}'}
    assert server_ttl(env).ttl == 300.0
    assert server_ttl({**env, "FASTCHECKPOINT_TTL": "off"}) is None
    assert server_ttl({"LANGGRAPH_CHECKPOINTER": '{"path": "x"}'}) is None
    assert server_ttl({"LANGGRAPH_CHECKPOINTER": '{"ttl": {"strategy": "keep_latest"}}'}) is None
