"""A long chat thread of natural-like text, stored bytes over the raw message
text as it grows to 2,000 turns (8,000 messages). On SqliteSaver: put p50/p95
and get_tuple too, ours at synchronous NORMAL (our default) and FULL, upstream
(WAL + synchronous FULL, its fixed setting) as far as ``FC_UPSTREAM_TURNS``
(default 500; each of its checkpoints holds the whole history, so its file
grows with the square of the thread). On PostgresSaver: the tables, upstream
as far as ``FC_PG_UPSTREAM_TURNS`` (default 200).

Run: .venv/bin/python -m pytest benches/test_bench_long_thread.py -s
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from pathlib import Path

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite

from benches._timing import fmt, settle, tail, timeit
from benches._workload import CONFIG, thread_checkpoints
from fastcheckpoint._native import seal
from fastcheckpoint._text import raw_text_bytes, turn_messages
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver

MARKS = (50, 200, 500, 1000, 2000)
CODEC = RustSerializer()
UPSTREAM_TURNS = int(os.environ.get("FC_UPSTREAM_TURNS", "500"))


def db_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name))


def grow(saver, path: Path, turns: int) -> dict[int, dict[str, float]]:
    """Puts the thread one message at a time; at each mark, what it costs."""
    out = {}
    times: list[float] = []
    settle()
    puts = thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t)))
    for t in range(turns):
        for args in itertools.islice(puts, 4):
            start = time.perf_counter()
            saver.put(*args)
            times.append(time.perf_counter() - start)
        msgs = args[1]["channel_values"]["messages"]
        if t + 1 in MARKS:
            p50, p95 = tail(times)
            get = timeit(lambda: saver.get_tuple(CONFIG), repeat=5, warmup=1)
            # The codec's own decode of the same messages, stored as one msgpack value.
            typed = CODEC.dumps_typed(msgs)
            decode = timeit(lambda typed=typed: CODEC.loads_typed(typed), repeat=5, warmup=1)
            # The least any read handing out new objects must spend: copying each message
            # (one level deep, its strings shared).
            copying = timeit(lambda msgs=msgs: [copy.copy(m) for m in msgs], repeat=5, warmup=1)
            saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file, not a transient WAL
            out[t + 1] = {
                "bytes": db_bytes(path),
                "raw": raw_text_bytes(msgs),
                "p50": p50,
                "p95": p95,
                "get": get["median"],
                "decode": decode["median"],
                "copy": copying["median"],
            }
    assert saver.get_tuple(CONFIG).checkpoint["channel_values"]["messages"] == msgs
    return out


def test_long_thread_storage_and_costs(tmp_path) -> None:
    runs = {}
    for name, opener, turns in (
        ("ours NORMAL", lambda p: SqliteSaver.from_conn_string(str(p)), MARKS[-1]),
        ("ours FULL", lambda p: SqliteSaver.from_conn_string(str(p), synchronous="FULL"), MARKS[-1]),
        ("upstream (FULL)", lambda p: UpstreamSqlite.from_conn_string(str(p)), UPSTREAM_TURNS),
    ):
        path = tmp_path / f"{name.split()[0]}-{name.split()[1]}.db"
        with opener(path) as saver:
            runs[name] = grow(saver, path, turns)
    text = b"".join(m.content.encode() for t in range(MARKS[-1]) for m in turn_messages(t))
    print(
        "\n## A long thread of natural-like text, SqliteSaver (one put per message; "
        f"zstd compresses the whole text {len(text) / len(seal(text)):.2f}x)"
    )
    print(
        f"{'turns':>6} {'saver':16} {'DB / raw text':>14} {'DB MB':>9} {'put p50':>10} {'put p95':>10}"
        f" {'get_tuple':>10} {'/ decode':>9} {'copy':>10}"
    )
    for turns in MARKS:
        for name, marks in runs.items():
            if turns in marks:
                r = marks[turns]
                print(
                    f"{turns:>6} {name:16} {r['bytes'] / r['raw']:>14.2f} {r['bytes'] / 1e6:>9.2f} "
                    f"{fmt(r['p50']):>10} {fmt(r['p95']):>10} {fmt(r['get']):>10} {r['get'] / r['decode']:>8.2f}x"
                    f" {fmt(r['copy']):>10}"
                )
    floor = len(seal(text)) / raw_text_bytes([m for t in range(MARKS[-1]) for m in turn_messages(t)])
    print(f"floor (the text compressed once): {floor:.2f}x the raw text")
    print("/ decode: get_tuple over RustSerializer's decode of the same messages as one value")
    print("copy: copy.copy of each of those messages, the least a read handing out new objects spends")


def read_then_put(saver, turns: int = 200, steps: int = 40) -> tuple[float, float]:
    """Put time (median, p95) of a thread of ``turns`` turns when, as a graph
    turn does, every put follows a ``get_tuple`` whose list it extends: the
    put meets objects the read just made, none it encoded itself."""
    for args in thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t))):
        saver.put(*args)
    cfg = CONFIG
    times = []
    settle()
    for step in range(steps):
        latest = saver.get_tuple(cfg)
        msgs = [*latest.checkpoint["channel_values"]["messages"], turn_messages(turns + step)[0]]
        cp = empty_checkpoint()
        version = saver.get_next_version(latest.checkpoint["channel_versions"]["messages"], None)
        cp["channel_values"] = {"messages": msgs}
        cp["channel_versions"] = {"messages": version}
        start = time.perf_counter()
        saver.put(latest.config, cp, {"source": "loop", "step": len(msgs)}, {"messages": version})
        times.append(time.perf_counter() - start)
    assert saver.get_tuple(cfg).checkpoint["channel_values"]["messages"] == msgs
    return tail(times)


def test_put_after_a_read(tmp_path) -> None:
    turns = 200
    got = {}
    for name, cls in (("upstream", UpstreamSqlite), ("ours", SqliteSaver)):
        with cls.from_conn_string(str(tmp_path / f"{name}.db")) as saver:
            got[name] = read_then_put(saver, turns)
    (up50, up95), (p50, p95) = got["upstream"], got["ours"]
    print(f"\n## put after a get_tuple, {4 * turns} messages of natural-like text, SqliteSaver")
    print(f"{'':10} {'upstream (FULL)':>16} {'ours (NORMAL)':>14} {'speed-up':>9}")
    print(f"{'median':10} {fmt(up50):>16} {fmt(p50):>14} {up50 / p50:>8.1f}x")
    print(f"{'p95':10} {fmt(up95):>16} {fmt(p95):>14} {up95 / p95:>8.1f}x")


PG_UPSTREAM_TURNS = int(os.environ.get("FC_PG_UPSTREAM_TURNS", "200"))


def pg_sizes(uri: str, tables: list[str]) -> tuple[int, int]:
    """Tables' bytes after VACUUM (what the files hold, free space included:
    our segments rewrite rows, whose old versions autovacuum reclaims for
    later rows) and after VACUUM FULL (the live rows alone)."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:

        def size() -> int:
            return sum(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] for t in tables)

        conn.execute("VACUUM")
        vacuumed = size()
        conn.execute("VACUUM FULL")
        return vacuumed, size()


def test_long_thread_on_postgres() -> None:
    """The same long thread on PostgresSaver: tables over the raw text."""
    from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgres

    from benches.test_bench_postgres import OUR_TABLES, UPSTREAM_TABLES
    from fastcheckpoint.postgres import PostgresSaver
    from tests.pgserver import cluster, database

    rows = []
    with cluster(durable=True) as server:
        for name, cls, tables, turns in (
            ("ours", PostgresSaver, OUR_TABLES, MARKS[-1]),
            ("upstream", UpstreamPostgres, UPSTREAM_TABLES, PG_UPSTREAM_TURNS),
        ):
            with database(server) as uri, cls.from_conn_string(uri) as saver:
                saver.setup()
                puts = thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t)))
                for t in range(turns):
                    for args in itertools.islice(puts, 4):
                        saver.put(*args)
                    if t + 1 in MARKS:
                        raw = raw_text_bytes([m for u in range(t + 1) for m in turn_messages(u)])
                        vacuumed, live = pg_sizes(uri, tables)
                        rows.append((t + 1, name, vacuumed / raw, live / raw, vacuumed / 1e6))
    print("\n## The same long thread on PostgreSQL (loopback server, default durable settings)")
    print(f"{'turns':>6} {'saver':10} {'tables / raw text':>18} {'live rows / raw':>16} {'tables MB':>10}")
    for turns, name, vacuumed, live, mb in sorted(rows):
        print(f"{turns:>6} {name:10} {vacuumed:>18.2f} {live:>16.2f} {mb:>10.2f}")
    print("tables: after VACUUM (free space left by rewritten rows included); live rows: after VACUUM FULL")
