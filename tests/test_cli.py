"""The ``fastcheckpoint`` command, run as a subprocess against real SQLite files
and a real PostgreSQL server, on databases written by real graph runs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqliteSaver
from langgraph.types import Command

from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.sqlite import SqliteSaver
from tests import THREAD_IS
from tests.graphs import approval_graph, chat_graph, delta_graph

USER_0, USER_1, USER_2 = (THREAD_IS.format(repr(f"user-{i}")) for i in range(3))


def fc(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "fastcheckpoint", *map(str, args)], capture_output=True, text=True)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def cfg(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


def run_graphs(saver, threads: int = 3, turns: int = 4) -> None:
    """Chat threads, an approval paused at its interrupt, a DeltaChannel thread."""
    chat = chat_graph().compile(checkpointer=saver)
    for t in range(threads):
        for i in range(turns):
            chat.invoke({"messages": [HumanMessage(f"user {t} turn {i}")]}, cfg(f"user-{t}"))
    approval_graph().compile(checkpointer=saver).invoke({"request": "delete old records"}, cfg("ops"))
    delta = delta_graph().compile(checkpointer=saver)
    for _ in range(5):
        delta.invoke({"items": []}, cfg("delta"))


def same_tuples(upstream, ours) -> int:
    """Every checkpoint upstream lists reads back equal through ours; returns how many.

    One allowed difference: upstream SQLite leaves a DeltaChannel snapshot out
    of later checkpoints at the same channel version; ours (one value per
    version, as upstream Postgres) returns it there too."""
    n = 0
    seen: dict[tuple, object] = {}
    for t in sorted(upstream.list(None), key=lambda t: t.config["configurable"]["checkpoint_id"]):
        mine = ours.get_tuple(t.config)
        assert mine is not None, t.config
        expected = dict(t.checkpoint["channel_values"])
        for ch, ver in t.checkpoint["channel_versions"].items():
            key = (t.config["configurable"]["thread_id"], ch, ver)
            if ch in expected:
                seen.setdefault(key, expected[ch])
            elif key in seen and type(seen[key]).__name__ == "_DeltaSnapshot":
                expected[ch] = seen[key]
        assert mine.checkpoint["channel_values"] == expected
        assert mine.checkpoint["channel_versions"] == t.checkpoint["channel_versions"]
        assert mine.metadata == t.metadata
        assert [(w[0], w[1], w[2]) for w in mine.pending_writes] == [(w[0], w[1], w[2]) for w in t.pending_writes]
        assert (mine.parent_config or {}).get("configurable", {}).get("checkpoint_id") == (t.parent_config or {}).get(
            "configurable", {}
        ).get("checkpoint_id")
        n += 1
    return n


@pytest.fixture
def upstream_file(tmp_path: Path) -> Path:
    path = tmp_path / "upstream.db"
    with UpstreamSqliteSaver.from_conn_string(str(path)) as saver:
        run_graphs(saver)
    return path


@pytest.fixture
def our_file(tmp_path: Path) -> Path:
    path = tmp_path / "ours.db"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        run_graphs(saver)
    return path


def test_console_script_and_module_agree():
    script = Path(sys.executable).parent / "fastcheckpoint"
    assert script.exists(), "pip install did not create the fastcheckpoint console script"
    a = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert a.returncode == 0 and "migrate" in a.stdout and a.stdout == fc("--help").stdout


def test_migrate_upstream_sqlite_file(upstream_file: Path, tmp_path: Path):
    dest = tmp_path / "copy.db"
    out = fc("migrate", upstream_file, dest).stdout
    assert "compared with the source: all equal" in out and "ok" in out
    assert fc("verify", dest).returncode == 0
    with UpstreamSqliteSaver.from_conn_string(str(upstream_file)) as up, SqliteSaver.from_conn_string(str(dest)) as us:
        assert same_tuples(up, us) > 30
    # Run again: nothing to copy, still verified.
    assert "copied 0 checkpoints" in fc("migrate", upstream_file, dest).stdout
    # The upstream file was only read: no tables of ours were added to it.
    tables = {r[0] for r in sqlite3.connect(upstream_file).execute("SELECT name FROM sqlite_master")}
    assert not any(t.startswith("fc_") for t in tables)


def test_migrate_upstream_postgres_and_between_our_backends(pg_server, tmp_path: Path):
    from tests.pgserver import database

    with database(pg_server) as up_uri, database(pg_server) as ours_uri:
        with UpstreamPostgresSaver.from_conn_string(up_uri) as up:
            up.setup()
            run_graphs(up, threads=2)
        first = tmp_path / "from-pg.db"
        assert "all equal" in fc("migrate", up_uri, first).stdout
        # ours (SQLite) -> ours (Postgres) -> ours (SQLite) again
        assert "all equal" in fc("migrate", first, ours_uri).stdout
        back = tmp_path / "back.db"
        assert "all equal" in fc("migrate", ours_uri, back).stdout
        with UpstreamPostgresSaver.from_conn_string(up_uri) as up:
            for target in (first, back):
                with SqliteSaver.from_conn_string(str(target)) as us:
                    assert same_tuples(up, us) > 20
            with PostgresSaver.from_conn_string(ours_uri) as pg:
                assert same_tuples(up, pg) > 20
                # The copy is a working store: the paused approval resumes on it.
                g = approval_graph().compile(checkpointer=pg)
                assert g.get_state(cfg("ops")).next == ("approve",)
                g.invoke(Command(resume="yes"), cfg("ops"))
                assert g.get_state(cfg("ops")).values["status"] == "approved"


def test_migrate_resumes_after_being_killed(tmp_path: Path):
    src = tmp_path / "big-upstream.db"
    with UpstreamSqliteSaver.from_conn_string(str(src)) as saver:
        run_graphs(saver, threads=40, turns=8)
    total = sqlite3.connect(src).execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    dest = tmp_path / "copy.db"
    proc = subprocess.Popen([sys.executable, "-m", "fastcheckpoint", "migrate", str(src), str(dest)])
    copied = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            copied = sqlite3.connect(dest).execute("SELECT count(*) FROM fc_checkpoints").fetchone()[0]
        except sqlite3.Error:
            copied = 0
        if copied >= 20:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sqlite3.connect(dest).execute("SELECT count(*) FROM fc_checkpoints").fetchone()[0]
    assert 0 < partial < total, f"copy not interrupted mid-way ({partial}/{total})"
    out = fc("migrate", src, dest).stdout
    assert f"({partial} were already there)" in out and "all equal" in out
    with UpstreamSqliteSaver.from_conn_string(str(src)) as up, SqliteSaver.from_conn_string(str(dest)) as us:
        assert same_tuples(up, us) == total


def test_inspection_commands(our_file: Path, tmp_path: Path):
    threads = json.loads(fc("threads", our_file, "--json").stdout)
    assert {t["thread_id"] for t in threads} == {"user-0", "user-1", "user-2", "ops", "delta"}
    by_id = {t["thread_id"]: t for t in threads}
    assert by_id["user-0"]["checkpoints"] == 12 and by_id["user-0"]["bytes"] > 0
    assert [
        t["thread_id"] for t in json.loads(fc("threads", our_file, "--sort", "thread", "--limit", "2", "--json").stdout)
    ] == ["delta", "ops"]
    table = fc("threads", our_file).stdout
    assert table.splitlines()[0].split() == ["thread", "checkpoints", "bytes", "last", "update"]

    with SqliteSaver.from_conn_string(str(our_file)) as saver:
        approval = approval_graph().compile(checkpointer=saver)
        states = list(approval.get_state_history(cfg("ops")))
        chat_states = list(chat_graph().compile(checkpointer=saver).get_state_history(cfg("user-1")))
    history = json.loads(fc("history", our_file, "ops", "--json").stdout)
    assert [h["checkpoint_id"] for h in history] == [s.config["configurable"]["checkpoint_id"] for s in states]
    assert [tuple(h["next"]) for h in history] == [s.next for s in states]  # what LangGraph itself says
    assert [h["step"] for h in history] == [s.metadata["step"] for s in states]
    assert history[0]["nodes"] == ["plan"]
    text = fc("history", our_file, "user-1", "--limit", "3").stdout.splitlines()
    assert len(text) == 4 and text[1].split()[1:4] == ["10", "loop", "assistant"]

    shown = json.loads(fc("show", our_file, "user-1", "--json").stdout)
    assert [m["content"] for m in shown["values"]["messages"]] == [m.content for m in chat_states[0].values["messages"]]
    assert "branch:to:assistant" not in shown["values"]
    paused = json.loads(fc("show", our_file, "ops", "--json").stdout)
    assert paused["next"] == ["approve"] and paused["pending_writes"][0]["channel"] == "__interrupt__"
    readable = fc("show", our_file, "user-1").stdout
    assert "  human: user 1 turn 0" in readable and "  ai: you said 4 things, last: user 1 turn 3" in readable

    old_id = chat_states[3].config["configurable"]["checkpoint_id"]
    changes = json.loads(fc("diff", our_file, "user-1", old_id[:18], "latest", "--json").stdout)
    kept, added = changes["messages"]["kept"], changes["messages"]["added"]
    assert kept == len(chat_states[3].values["messages"])
    assert [m["content"] for m in added] == [m.content for m in chat_states[0].values["messages"][kept:]]
    assert "+ human: user 1 turn 3" in fc("diff", our_file, "user-1", old_id, "latest").stdout
    assert json.loads(fc("diff", our_file, "user-1", "latest~3", "latest", "--json").stdout) == changes

    stats = json.loads(fc("stats", our_file, "--json").stdout)
    assert stats["checkpoints"] == sum(t["checkpoints"] for t in threads)
    assert stats["channels"]["messages"]["deltas"] > 0 and stats["delta_ratio"] > 1
    png = tmp_path / "sizes.png"
    assert "plot written" in fc("stats", our_file, "--thread", "user-1", "--plot", png).stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clear_errors(tmp_path: Path, our_file: Path, upstream_file: Path):
    def error(*args: str) -> str:
        r = fc(*args, check=2)
        assert r.stdout == "" and "Traceback" not in r.stderr
        return r.stderr

    assert "no such file" in error("threads", tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database at all")
    assert "not a SQLite database" in error("threads", text)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE invoices (id INTEGER)").connection.commit()
    assert "not a fastcheckpoint database" in error("verify", other)
    assert "upstream LangGraph" in error("history", upstream_file, "user-0")
    assert "no thread 'nobody'" in error("history", our_file, "nobody")
    assert "no checkpoint 'zzz'" in error("show", our_file, "user-0", "zzz")
    assert "matches" in error("show", our_file, "user-0", "1")  # ambiguous prefix
    assert "cannot connect" in error("threads", "postgresql://someone:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in error("threads", "postgresql://someone:hunter2@127.0.0.1:1/none")
    assert "refusing" in error("prune", our_file, "--delete")
    assert fc("prune", our_file, "--keep-last", "x", check=2).returncode == 2  # argparse
    assert fc("prune", our_file, "--keep-latest", "--older-than", "soon", check=2).returncode == 2


def _corrupt(path: Path) -> None:
    db = sqlite3.connect(path)
    blob = db.execute(
        f"SELECT version, blob FROM fc_blobs WHERE {USER_1} AND channel = 'messages' AND base IS NULL"
    ).fetchone()
    flipped = bytearray(blob[1])
    flipped[len(flipped) // 2] ^= 0x10
    db.execute(
        f"UPDATE fc_blobs SET blob = ? WHERE {USER_1} AND channel = 'messages' AND version = ?",
        (bytes(flipped), blob[0]),
    )
    row = db.execute(f"SELECT checkpoint_id, record FROM fc_checkpoints WHERE {USER_2} LIMIT 1").fetchone()
    db.execute(
        f"UPDATE fc_checkpoints SET record = ? WHERE {USER_2} AND checkpoint_id = ?",
        (bytes(row[1])[:5], row[0]),
    )
    db.commit()


def test_verify_reports_damage(our_file: Path):
    assert "ok" in fc("verify", our_file).stdout
    _corrupt(our_file)
    r = fc("verify", our_file, check=1)
    assert "DAMAGED" in r.stdout
    report = json.loads(fc("verify", our_file, "--json", check=1).stdout)
    damaged = {d["thread_id"] for d in report["damage"]}
    assert damaged == {"user-1", "user-2"}
    assert any("CorruptDataError" in d["error"] for d in report["damage"] if d["thread_id"] == "user-1")
    # Only the named thread is checked when asked.
    assert fc("verify", our_file, "--thread", "user-0").returncode == 0


def test_verify_reports_refused_types_without_failing_the_thread(tmp_path: Path):
    from langgraph.checkpoint.base import empty_checkpoint

    from tests.corpus import Profile

    db = tmp_path / "refused.db"
    with SqliteSaver.from_conn_string(str(db)) as saver:
        cp = empty_checkpoint()
        cp["channel_values"] = {"data": {"u": Profile(name="x")}}
        cp["channel_versions"] = {"data": saver.get_next_version(None, None)}
        saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, cp, {}, cp["channel_versions"])
    strict = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}
    r = subprocess.run(
        [sys.executable, "-m", "fastcheckpoint", "verify", str(db)], capture_output=True, text=True, env=strict
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout and "refused type: tests.corpus.Profile (1 values" in r.stdout
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "fastcheckpoint", "verify", str(db), "--json"],
            capture_output=True,
            text=True,
            env=strict,
        ).stdout
    )
    assert report["refused"] == {"tests.corpus.Profile": 1} and not report["damage"]
    assert "refused" not in fc("verify", db).stdout  # the permissive default reads it as the model


def test_verify_reports_a_broken_delta_chain(our_file: Path):
    db = sqlite3.connect(our_file)
    base = db.execute(
        f"SELECT base FROM fc_blobs WHERE {USER_0} AND base IS NOT NULL ORDER BY version DESC"
    ).fetchone()[0]
    db.execute(f"DELETE FROM fc_blobs WHERE {USER_0} AND channel = 'messages' AND version = ?", (base,))
    db.commit()
    report = json.loads(fc("verify", our_file, "--json", check=1).stdout)
    assert any("incomplete chain" in d.get("error", "") for d in report["damage"])
    assert {d["thread_id"] for d in report["damage"]} == {"user-0"}


def test_prune_keeps_what_remains_working_and_vacuum_shrinks(our_file: Path):
    out = fc("prune", our_file, "--keep-latest", "--dry-run").stdout
    assert out.startswith("would remove")
    before = json.loads(fc("threads", our_file, "--json").stdout)
    assert "removed" in fc("prune", our_file, "--keep-last", "2", "--thread", "user-0").stdout
    after = {t["thread_id"]: t["checkpoints"] for t in json.loads(fc("threads", our_file, "--json").stdout)}
    assert after["user-0"] == 2 and after["user-1"] == {t["thread_id"]: t for t in before}["user-1"]["checkpoints"]
    fc("prune", our_file, "--keep-latest")
    assert fc("verify", our_file).returncode == 0
    assert "file:" in fc("vacuum", our_file).stdout
    with SqliteSaver.from_conn_string(str(our_file)) as saver:
        # Resuming pruned threads in real graphs: the chat keeps its memory,
        # the DeltaChannel thread rebuilds its list, the approval resumes.
        chat = chat_graph().compile(checkpointer=saver)
        chat.invoke({"messages": [HumanMessage("again")]}, cfg("user-0"))
        assert len(chat.get_state(cfg("user-0")).values["messages"]) == 10
        delta = delta_graph().compile(checkpointer=saver)
        delta.invoke({"items": []}, cfg("delta"))
        assert delta.get_state(cfg("delta")).values["items"] == [f"item{i}" for i in range(6)]
        approval = approval_graph().compile(checkpointer=saver)
        approval.invoke(Command(resume="no"), cfg("ops"))
        assert approval.get_state(cfg("ops")).values["status"] == "rejected"
    fc("prune", our_file, "--delete", "--thread", "ops")
    assert "ops" not in {t["thread_id"] for t in json.loads(fc("threads", our_file, "--json").stdout)}


def test_prune_older_than_counts_from_the_last_write(tmp_path: Path):
    path = tmp_path / "aged.db"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        chat = chat_graph().compile(checkpointer=saver)
        saver.clock = lambda: time.time() - 3 * 86400  # written three days ago
        chat.invoke({"messages": [HumanMessage("old")]}, cfg("stale"))
        chat.invoke({"messages": [HumanMessage("old")]}, cfg("revived"))
        saver.clock = time.time
        chat.invoke({"messages": [HumanMessage("today")]}, cfg("revived"))
        chat.invoke({"messages": [HumanMessage("today")]}, cfg("fresh"))
    assert "removed 3 checkpoints from 1 threads" in fc("prune", path, "--delete", "--older-than", "2d").stdout
    left = {t["thread_id"] for t in json.loads(fc("threads", path, "--json").stdout)}
    assert left == {"revived", "fresh"}
