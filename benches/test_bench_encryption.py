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

import itertools
import os
import time
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES
from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite

from benches._timing import fmt, settle, tail, timeit
from benches._workload import CONFIG, thread_checkpoints
from benches.test_bench_long_thread import db_bytes, pg_sizes
from benches.test_bench_recorded_graph import MARKS as GRAPH_MARKS
from benches.test_bench_recorded_graph import record, replay
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


def grow(saver: Any, turns: int, size: Any) -> dict[int, dict[str, float]]:
    """Puts the thread one message at a time; at each mark: size(), put
    p50/p95 so far and get_tuple."""
    out = {}
    times: list[float] = []
    settle()
    puts = thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t)))
    for t in range(turns):
        for args in itertools.islice(puts, 4):
            start = time.perf_counter()
            saver.put(*args)
            times.append(time.perf_counter() - start)
        if t + 1 in MARKS:
            p50, p95 = tail(times)
            get = timeit(lambda: saver.get_tuple(CONFIG), repeat=5, warmup=1)
            raw = raw_text_bytes([m for u in range(t + 1) for m in turn_messages(u)])
            out[t + 1] = {"bytes": size(), "raw": raw, "p50": p50, "p95": p95, "get": get["median"]}
    assert saver.get_tuple(CONFIG).checkpoint["channel_values"]["messages"] == args[1]["channel_values"]["messages"]
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


def test_encrypted_long_thread_sqlite(tmp_path) -> None:
    runs = {}
    for name, make in SERDES.items():
        path = tmp_path / f"{name.split()[0]}.db"
        with SqliteSaver.from_conn_string(str(path)) as saver:
            if make is not None:
                saver.serde = make()

            def size(saver: Any = saver, path: Path = path) -> int:
                saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return db_bytes(path)

            runs[name] = grow(saver, MARKS[-1] if name != "own cipher" else PYTHON_CIPHER_TURNS, size)
    print_runs("A long thread, encrypted and not, SqliteSaver (synchronous NORMAL)", runs)


def test_encrypted_long_thread_postgres() -> None:
    from benches.test_bench_postgres import OUR_TABLES
    from fastcheckpoint.postgres import PostgresSaver
    from tests.pgserver import cluster, database

    runs = {}
    with cluster(durable=True) as server:
        for name, make in SERDES.items():
            with database(server) as uri, PostgresSaver.from_conn_string(uri) as saver:
                saver.setup()
                if make is not None:
                    saver.serde = make()
                turns = MARKS[-1] if name != "own cipher" else PYTHON_CIPHER_TURNS
                runs[name] = grow(saver, turns, lambda uri=uri: pg_sizes(uri, OUR_TABLES)[0])
    print_runs("The same thread on PostgresSaver (tables after VACUUM; default durable settings)", runs)


def test_encrypted_recorded_graph_run(tmp_path) -> None:
    """A recorded ReAct graph run replayed to upstream SqliteSaver and to ours,
    both with ``EncryptedSerializer.from_pycryptodome_aes()``."""
    calls, ends = record(GRAPH_MARKS[-1])
    sizes = {}
    for name, cls in (("upstream", UpstreamSqlite), ("ours", SqliteSaver)):
        path = tmp_path / f"{name}.db"
        with cls.from_conn_string(str(path)) as saver:
            saver.serde = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
            sizes[name] = replay(saver, calls, path, ends)
            assert len(saver.get_tuple(CONFIG).checkpoint["channel_values"]["messages"]) == 4 * GRAPH_MARKS[-1]
    print("\n## A recorded ReAct graph run, encrypted (EncryptedSerializer.from_pycryptodome_aes), SqliteSaver")
    print(f"{'turns':>6} {'upstream MB':>12} {'ours MB':>9} {'smaller':>8} {'ours / raw text':>16} {'replay time':>12}")
    for mark in GRAPH_MARKS:
        raw = raw_text_bytes([m for t in range(mark) for m in turn_messages(t)])
        (up, up_s), (ours, ours_s) = sizes["upstream"][mark], sizes["ours"][mark]
        print(
            f"{mark:>6} {up / 1e6:>12.2f} {ours / 1e6:>9.3f} {up / ours:>7.0f}x {ours / raw:>16.2f}"
            f" {up_s / ours_s:>11.1f}x"
        )
    print("replay time: upstream's seconds over ours for the same calls (upstream FULL, ours NORMAL)")
