"""The reliability harness: crashes at random moments and at chosen points of
the write path, I/O faults, corruption. Each loop has a knob for long runs by
hand (FC_KILL_LOOPS, FC_CRASH_LOOPS, FC_FLIP_LOOPS)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from fastcheckpoint import cli
from fastcheckpoint.errors import CheckpointError
from fastcheckpoint.sqlite import SqliteSaver
from tests import THREAD_NAME, graphs
from tests.worker import acks, check_thread, finish_and_compare, item, run_and_kill, spawn

ROOT = Path(__file__).resolve().parent.parent
KILL_LOOPS = int(os.environ.get("FC_KILL_LOOPS", "20"))
CRASH_LOOPS = int(os.environ.get("FC_CRASH_LOOPS", "4"))
FLIP_LOOPS = int(os.environ.get("FC_FLIP_LOOPS", "400"))
# `make test` builds the extension with crash points (cargo feature
# `crash-points`) into this directory; the package itself never has them.
CRASH_BUILD = ROOT / "target" / "crash-points"


def cfg(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 100_000}


def integrity(db: str) -> str:
    raw = sqlite3.connect(db)
    try:
        return raw.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        raw.close()


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, durability) -> None:
    db = str(tmp_path / "c.db")
    loops = KILL_LOOPS if durability == "sync" else max(2, KILL_LOOPS // 2)
    steps = 100 * loops
    rng = random.Random(1234)
    acked: list[tuple[str, str]] = []
    kills = 0
    for _ in range(loops):
        out, status = run_and_kill(db, steps, rng.uniform(0, 0.25), durability)
        kills += status == -signal.SIGKILL
        acked += acks(out)
        assert integrity(db) == "ok"
        check_thread(db, "t", acked)
        if "done" in out:
            break
    assert kills >= loops // 2, "most runs must have been killed mid-way"
    finish_and_compare(db, steps)


@pytest.fixture(scope="module")
def crash_build() -> str:
    if not (CRASH_BUILD / "fastcheckpoint").is_dir():
        if os.environ.get("CI"):
            pytest.fail("the crash-point build is missing: `make test` builds it")
        pytest.skip("the crash-point build is missing: run `make crash-build`")
    return str(CRASH_BUILD)


@pytest.mark.parametrize("point", ["begin", "row", "commit", "committed"])
def test_crash_points_in_the_write_path(tmp_path, crash_build, point) -> None:
    """abort() inside a write batch: before BEGIN, after a statement, before
    COMMIT, after COMMIT but before the put returns."""
    db = str(tmp_path / "c.db")
    steps = 60
    rng = random.Random(point)
    acked: list[tuple[str, str]] = []
    crashes = 0
    for _ in range(CRASH_LOOPS):
        nth = rng.randint(1, 25 if point == "row" else 10)
        env = {"PYTHONPATH": crash_build, "FASTCHECKPOINT_CRASH_AT": f"{point}:{nth}"}
        p = spawn("run", db, "t", str(steps), "sync", env=env)
        out, err = p.communicate(timeout=120)
        acked += acks(out)
        if p.returncode == 0:
            break
        assert p.returncode == -signal.SIGABRT, err
        crashes += 1
        assert integrity(db) == "ok"
        check_thread(db, "t", acked)
    assert crashes >= min(CRASH_LOOPS, 2)
    finish_and_compare(db, steps)


@pytest.mark.parametrize(
    ("syscall", "errno", "synchronous", "error"),
    [
        ("pwrite64", "ENOSPC", "NORMAL", "DiskFullError"),
        ("pwrite64", "EIO", "NORMAL", "StorageError"),
        ("fdatasync", "EIO", "FULL", "StorageError"),
        ("fdatasync", "ENOSPC", "FULL", "StorageError"),
    ],
)
def test_io_faults_are_typed_errors_and_writes_resume(tmp_path, syscall, errno, synchronous, error) -> None:
    """strace makes a run of the WAL file's writes (or syncs) fail, then stops:
    each failed call raises a typed error, no failed put is stored in part, and
    the same saver writes again once the fault clears."""
    strace = shutil.which("strace")
    if strace is None:  # scripts/system-deps.sh installs it
        pytest.fail("strace is missing: run scripts/system-deps.sh")
    db = str(tmp_path / "f.db")
    puts = 40
    cmd = [strace, "-f", "-qq", "-o", os.devnull, "-P", f"{db}-wal", "-e", f"trace={syscall}"]
    cmd += ["-e", f"inject={syscall}:error={errno}:when=20..27"]
    cmd += [sys.executable, "-m", "tests.worker", "faults", db, str(puts), synchronous]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    errors = [line.split()[1] for line in lines if line.startswith("err ")]
    assert errors, "the fault was never hit"
    assert set(errors) == {error}
    last_error = max(i for i, line in enumerate(lines) if line.startswith("err "))
    assert any(line.startswith("ack ") for line in lines[last_error:]), "writes did not resume"
    assert integrity(db) == "ok"
    acked = {c for _, c in acks(p.stdout)}
    with SqliteSaver.from_conn_string(db) as saver:
        stored = list(saver.list(cfg("t")))
        assert acked <= {t.config["configurable"]["checkpoint_id"] for t in stored}
        # Stored = acknowledged, or a put whose commit reached the file before
        # its sync failed: complete either way.
        for t in stored:
            step = t.metadata["step"]
            assert t.checkpoint["channel_values"]["items"] == [item("t", j) for j in range(step + 1)]
            assert [w[1:] for w in t.pending_writes] in ([], [("c", step)])
    verify = subprocess.run([sys.executable, "-m", "fastcheckpoint", "verify", db], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# Every stored payload column (each an envelope with a CRC32).
PAYLOADS = [("fc_checkpoints", "record"), ("fc_blobs", "blob"), ("fc_writes", "value")]
# Each table's primary key (the tables are WITHOUT ROWID).
KEYS = {
    "fc_checkpoints": "thread, checkpoint_ns, checkpoint_id",
    "fc_blobs": "thread, checkpoint_ns, channel, version",
    "fc_writes": "thread, checkpoint_ns, checkpoint_id, task_id, idx",
}


def _marks(key: list) -> str:
    return ", ".join("?" * len(key))


def snapshot(saver, thread: str) -> dict[str, tuple]:
    return {
        t.config["configurable"]["checkpoint_id"]: (t.checkpoint, t.metadata, t.pending_writes)
        for t in saver.list(cfg(thread))
    }


def test_random_flips_and_truncations_are_detected(tmp_path, capsys) -> None:
    """Each loop damages one stored payload (a flipped byte or a cut), reads
    the thread back and runs verify, then repairs the row. Every damage must be
    a typed error on some read and a report from verify; no read may return
    anything but the original data."""
    db = str(tmp_path / "c.db")
    with SqliteSaver.from_conn_string(db) as saver:
        chat = graphs.chat_graph().compile(checkpointer=saver)
        for i in range(6):
            chat.invoke({"messages": [HumanMessage(f"turn {i} " * 60)]}, cfg("chat"))
        approval = graphs.approval_graph().compile(checkpointer=saver)
        approval.invoke({"request": "deploy", "log": []}, cfg("approval"))  # paused at interrupt()
        originals = {t: snapshot(saver, t) for t in ("chat", "approval")}
    raw = sqlite3.connect(db)
    rows = [
        (table, column, key, thread, bytes(value))
        for table, column in PAYLOADS
        for thread, *key, value in raw.execute(
            f"SELECT {THREAD_NAME}, {KEYS[table]}, {column} FROM {table} WHERE length({column}) > 0"
        )
    ]
    rng = random.Random(7)
    for loop in range(FLIP_LOOPS):
        table, column, key, thread, value = rng.choice(rows)
        damaged = bytearray(value)
        if loop % 3 == 2:
            del damaged[rng.randrange(len(value)) :]
        else:
            damaged[rng.randrange(len(value))] ^= 1 << rng.randrange(8)
        raw.execute(f"UPDATE {table} SET {column} = ? WHERE ({KEYS[table]}) = ({_marks(key)})", (bytes(damaged), *key))
        raw.commit()
        detected = 0
        with SqliteSaver.from_conn_string(db) as saver:
            for checkpoint_id, original in originals[thread].items():
                try:
                    t = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_id": checkpoint_id}})
                except CheckpointError:
                    detected += 1
                    continue
                assert (t.checkpoint, t.metadata, t.pending_writes) == original, f"wrong data from {table}"
        assert detected, f"damage to {table}.{column} went unnoticed"
        assert cli.main(["verify", db]) == 1
        assert thread in capsys.readouterr().out
        raw.execute(f"UPDATE {table} SET {column} = ? WHERE ({KEYS[table]}) = ({_marks(key)})", (value, *key))
        raw.commit()
    raw.close()
    assert cli.main(["verify", db]) == 0
