"""Encryption at rest: the same long thread of natural-like text stored by
our savers without a cipher and with LangGraph's
``EncryptedSerializer.from_pycryptodome_aes()`` (AES-EAX, run natively) or a
cipher called through Python (``CipherProtocol``, AES-GCM by pycryptodome),
on SQLite (synchronous NORMAL) and PostgreSQL (loopback server, default
durable settings): size, put median and p95, get_tuple, as the thread grows.
Then a recorded ReAct graph run, encrypted, replayed to upstream SqliteSaver
and to ours with the same ``EncryptedSerializer``.

Run: .venv/bin/python -m pytest benches/test_bench_encryption.py -s
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES
from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from benches._timing import fmt, settle, tail
from benches._workload import CONFIG, thread_checkpoints
from benches.test_bench_long_thread import db_bytes, pg_sizes
from benches.test_bench_recorded_graph import MARKS as GRAPH_MARKS
from benches.test_bench_recorded_graph import print_replay, record, replay_both
from fastcheckpoint._text import raw_text_bytes, turn_messages
from fastcheckpoint.sqlite import SqliteSaver

MARKS = (50, 200, 500, 1000, 2000)
KEY = b"benchmark-key-0123456789abcdef!!"
# How far the cipher called through Python goes (each body costs a Python call).
PYTHON_CIPHER_TURNS = int(os.environ.get("FC_PY_CIPHER_TURNS", "500"))


class GcmCipher(CipherProtocol):
    """A cipher of the user's own, called through ``encrypt``/``decrypt``."""

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        c = AES.new(KEY, AES.MODE_GCM)
        body, tag = c.encrypt_and_digest(plaintext)
        return "gcm", c.nonce + tag + body

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        c = AES.new(KEY, AES.MODE_GCM, nonce=ciphertext[:16])
        return c.decrypt_and_verify(ciphertext[32:], ciphertext[16:32])


SERDES: dict[str, Any] = {
    "plain": None,
    "AES (native)": lambda: EncryptedSerializer.from_pycryptodome_aes(key=KEY),
    "own cipher": lambda: EncryptedSerializer(GcmCipher()),
}


def grow(savers: dict[str, tuple[Any, int, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Puts the same thread to each saver (``name -> (saver, turns, size)``),
    one message at a time and taking turns, so that a slower moment of the
    machine falls on all alike; at each mark: ``size()``, put p50/p95 so far
    and get_tuple."""
    out: dict[str, dict[int, dict[str, float]]] = {name: {} for name in savers}
    times: dict[str, list[float]] = {name: [] for name in savers}
    puts = {
        name: thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t)))
        for name, (saver, turns, _) in savers.items()
    }
    settle()
    for t in range(max(turns for _, turns, _ in savers.values())):
        live = [name for name, (_, turns, _) in savers.items() if t < turns]
        for _ in range(4):
            for name in live:
                args = next(puts[name])
                start = time.perf_counter()
                savers[name][0].put(*args)
                times[name].append(time.perf_counter() - start)
        if t + 1 not in MARKS:
            continue
        raw = raw_text_bytes([m for u in range(t + 1) for m in turn_messages(u)])
        gets: dict[str, list[float]] = {name: [] for name in live}
        for _ in range(7):
            for name in live:
                saver = savers[name][0]
                start = time.perf_counter()
                saver.get_tuple(CONFIG)
                gets[name].append(time.perf_counter() - start)
        for name in live:
            p50, p95 = tail(times[name])
            get = sorted(gets[name])[len(gets[name]) // 2]
            out[name][t + 1] = {"bytes": savers[name][2](), "raw": raw, "p50": p50, "p95": p95, "get": get}
    for saver, turns, _ in savers.values():
        latest = saver.get_tuple(CONFIG).checkpoint["channel_values"]["messages"]
        assert len(latest) == 4 * turns
    return out


def print_runs(title: str, runs: dict[str, dict[int, dict[str, float]]]) -> None:
    print(f"\n## {title}")
    print(
        f"{'turns':>6} {'serializer':14} {'size / raw':>11} {'size / plain':>13} {'put p50':>9} {'/ plain':>8}"
        f" {'put p95':>9} {'/ plain':>8} {'get_tuple':>10} {'/ plain':>8}"
    )
    plain = runs["plain"]
    for turns in MARKS:
        for name, marks in runs.items():
            if turns not in marks:
                continue
            r, p = marks[turns], plain[turns]
            print(
                f"{turns:>6} {name:14} {r['bytes'] / r['raw']:>11.2f} {r['bytes'] / p['bytes']:>12.3f}x"
                f" {fmt(r['p50']):>9} {r['p50'] / p['p50']:>7.2f}x {fmt(r['p95']):>9} {r['p95'] / p['p95']:>7.2f}x"
                f" {fmt(r['get']):>10} {r['get'] / p['get']:>7.2f}x"
            )
    print("/ plain: over the same saver without a cipher, same run")


def turns_of(name: str) -> int:
    return PYTHON_CIPHER_TURNS if name == "own cipher" else MARKS[-1]


def test_encrypted_long_thread_sqlite(tmp_path) -> None:
    with contextlib.ExitStack() as stack:
        savers = {}
        for name, make in SERDES.items():
            path = tmp_path / f"{name.split()[0]}.db"
            saver = stack.enter_context(SqliteSaver.from_conn_string(str(path)))
            if make is not None:
                saver.serde = make()

            def size(saver: Any = saver, path: Path = path) -> int:
                saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return db_bytes(path)

            savers[name] = (saver, turns_of(name), size)
        runs = grow(savers)
    print_runs("A long thread, encrypted and not, SqliteSaver (synchronous NORMAL)", runs)


def test_encrypted_long_thread_postgres() -> None:
    from benches.test_bench_postgres import OUR_TABLES
    from fastcheckpoint.postgres import PostgresSaver
    from tests.pgserver import cluster, database

    with cluster(durable=True) as server, contextlib.ExitStack() as stack:
        savers = {}
        for name, make in SERDES.items():
            uri = stack.enter_context(database(server))
            saver = stack.enter_context(PostgresSaver.from_conn_string(uri))
            saver.setup()
            if make is not None:
                saver.serde = make()
            savers[name] = (saver, turns_of(name), lambda uri=uri: pg_sizes(uri, OUR_TABLES)[0])
        runs = grow(savers)
    print_runs("The same thread on PostgresSaver (tables after VACUUM; default durable settings)", runs)


def test_encrypted_recorded_graph_run(tmp_path) -> None:
    """A recorded ReAct graph run replayed to upstream SqliteSaver and to ours,
    both with ``EncryptedSerializer.from_pycryptodome_aes()``."""
    calls, ends = record(GRAPH_MARKS[-1])
    sizes = replay_both(tmp_path, calls, ends, EncryptedSerializer.from_pycryptodome_aes(key=KEY))
    print_replay(
        "A recorded ReAct graph run, encrypted (EncryptedSerializer.from_pycryptodome_aes), SqliteSaver "
        "(upstream FULL, ours NORMAL)",
        sizes,
    )
