"""Encryption at rest: an ``EncryptedSerializer`` keeps our storage model
(deltas, segments, compression) and encrypts every stored body for its row,
on SQLite and Postgres, sync and async. No message text can be recovered from
the files, the WAL or Postgres's data directory; a wrong key, a damaged or
moved body and a missing cipher are typed errors naming the row; rows written
by upstream, before a cipher was added, or under a previous key stay readable;
``fastcheckpoint reencrypt`` moves everything to the current key."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard
from Crypto.Cipher import AES
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqliteSaver
from langgraph.types import Command

from benches._workload import thread_checkpoints
from fastcheckpoint._native import blob_info
from fastcheckpoint._rekey import rekey_thread_op
from fastcheckpoint._storage import long_version, reveal_blob
from fastcheckpoint._text import turn_messages
from fastcheckpoint.cli import main as cli
from fastcheckpoint.encryption import AesCipher, Vault, encrypted_serializer
from fastcheckpoint.errors import DecryptionError
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests.graphs import approval_graph, chat_graph, needs_async_context

KEY = b"0123456789abcdef0123456789abcdef"
OLD_KEY = b"an-older-key-of-sixteen-bytes!!!"[:24]
TURNS = 40  # long enough that the message list is compacted into segments


class GcmKms(CipherProtocol):
    """A cipher of the user's own (standing for a KMS-backed one): AES-GCM,
    called only through ``encrypt``/``decrypt``."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.calls = 0

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        self.calls += 1
        c = AES.new(self.key, AES.MODE_GCM)
        body, tag = c.encrypt_and_digest(plaintext)
        return "kms", c.nonce + tag + body

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        self.calls += 1
        assert ciphername == "kms"
        c = AES.new(self.key, AES.MODE_GCM, nonce=ciphertext[:16])
        return c.decrypt_and_verify(ciphertext[32:], ciphertext[16:32])


CIPHERS = {
    "upstream-aes": lambda: EncryptedSerializer.from_pycryptodome_aes(key=KEY),
    "aes-cipher": lambda: EncryptedSerializer(AesCipher(KEY, OLD_KEY)),
    "own-cipher": lambda: EncryptedSerializer(GcmKms(KEY)),
}

# How each stores an encrypted envelope: native AES names the row in its nonce,
# other ciphers in the plaintext.
SEALED = {"upstream-aes": "fc1n+aes", "aes-cipher": "fc1n+aes", "own-cipher": "fc1+kms"}


def cfg(thread: str, **extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", **extra}}


@contextmanager
def open_saver(kind: str, target: str, serde: Any):
    """A sync saver of ``kind`` ("sqlite" or "postgres") on ``target``."""
    if kind == "sqlite":
        with SqliteSaver.from_conn_string(target) as s:
            s.serde = serde
            yield s
    else:
        with PostgresSaver.from_conn_string(target) as s:
            s.serde = serde
            s.setup()
            yield s


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "c.db")
    return "postgres", request.getfixturevalue("pg_uri")


def put_thread(saver: Any, thread: str, turns: int = TURNS) -> dict[str, list]:
    """Puts a ReAct thread of natural-like text, one checkpoint per message;
    returns each checkpoint's messages by id."""
    put = {}
    for args in thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t, thread)), thread):
        saver.put(*args)
        put[args[1]["id"]] = args[1]["channel_values"]["messages"]
    return put


def read_thread(saver: Any, thread: str) -> dict[str, list]:
    return {t.checkpoint["id"]: t.checkpoint["channel_values"]["messages"] for t in saver.list(cfg(thread))}


# -- what is stored ----------------------------------------------------------------------


def stored_types(kind: str, target: str) -> dict[str, set[str]]:
    """The body types each table holds."""
    queries = {
        "fc_checkpoints": "SELECT DISTINCT type FROM fc_checkpoints",
        "fc_blobs": "SELECT DISTINCT type FROM fc_blobs",
        "fc_writes": "SELECT DISTINCT type FROM fc_writes",
    }
    if kind == "sqlite":
        with sqlite3.connect(target) as c:
            return {t: {r[0] for r in c.execute(q)} for t, q in queries.items()}
    with psycopg.connect(target) as c:
        return {t: {r[0] for r in c.execute(q)} for t, q in queries.items()}


@pytest.mark.parametrize("cipher", CIPHERS)
def test_every_body_is_encrypted_and_reads_back(target, cipher, request) -> None:
    kind, where = target
    serde = CIPHERS[cipher]()
    thread = str(uuid.uuid4())
    with open_saver(kind, where, serde) as saver:
        put = put_thread(saver, thread)
        saver.put_writes(cfg(thread, checkpoint_id=max(put)), [("messages", ["pending"]), ("x", b"raw")], "task-1")
        assert read_thread(saver, thread) == put
        latest = saver.get_tuple(cfg(thread))
        assert [w[1:] for w in latest.pending_writes] == [("messages", ["pending"]), ("x", b"raw")]
    types = stored_types(kind, where)
    assert types["fc_checkpoints"] == {SEALED[cipher]}
    head, _, name = SEALED[cipher].partition("+")
    assert {t for t in types["fc_blobs"] if t not in ("empty", "null")} == {SEALED[cipher]}
    assert {t for t in types["fc_writes"] if t not in ("empty", "null")} == {SEALED[cipher], f"{head}:bytes+{name}"}
    if cipher == "own-cipher":
        assert serde.cipher.calls > len(put)  # the user's cipher did the work
    # The storage model is kept: message blobs are deltas and segment pointers.
    messages = message_blobs(kind, where, serde, thread)
    pointers = [b for b in messages if (i := blob_info(b))[0] is not None and i[1] == i[2] and i[3] == 0]
    assert len(pointers) > len(messages) // 2


def message_blobs(kind: str, target: str, serde: Any, thread: str) -> list[bytes]:
    """The thread's ``messages`` blobs, decrypted."""
    q = "SELECT checkpoint_ns, channel, version, type, blob FROM fc_blobs WHERE channel = 'messages'"
    if kind == "sqlite":
        with sqlite3.connect(target) as c:
            rows = [(ns, ch, long_version(v), t, b) for ns, ch, v, t, b in c.execute(q)]
    else:
        with psycopg.connect(target) as c:
            rows = c.execute(q).fetchall()
    return [reveal_blob(serde, ("blob", thread, ns, ch, v), (t, bytes(b)))[1] for ns, ch, v, t, b in rows]


# -- no plaintext at rest ----------------------------------------------------------------


def recoverable(data: bytes) -> bytes:
    """``data`` and whatever any zstd frame in it decompresses to: what
    someone holding the bytes could read without a key."""
    out = [data]
    start = data.find(b"\x28\xb5\x2f\xfd")
    while start != -1:
        try:
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(data[start : start + 1 << 20]))
        except zstandard.ZstdError:
            pass
        start = data.find(b"\x28\xb5\x2f\xfd", start + 1)
    return b"".join(out)


def samples(thread: str, turns: int = TURNS) -> list[bytes]:
    """Stretches of the thread's message text to look for (40 characters of
    each message that has text)."""
    texts = [m.content for t in range(turns) for m in turn_messages(t, thread) if m.content]
    return [t[100:140].encode() for t in texts]


def files_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def sqlite_at_rest(path: str) -> bytes:
    return recoverable(b"".join(Path(path + s).read_bytes() for s in ("", "-wal") if Path(path + s).exists()))


def postgres_at_rest(uri: str) -> bytes:
    """Every file of the database's directory (tables, indexes, TOAST) and the
    server's WAL, after a checkpoint has written the tables out."""
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("CHECKPOINT")
        data = Path(c.execute("SHOW data_directory").fetchone()[0])
        oid = c.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
        toast = c.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pg_toast_%' AND relpages > 0").fetchone()
    assert toast[0] > 0, "no TOAST data written: the search would miss it"
    return recoverable(files_under(data / "base" / str(oid)) + files_under(data / "pg_wal"))


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "control"])
def test_no_message_text_at_rest(target, encrypted) -> None:
    """The control (no cipher) finds the text the same search misses when encrypted."""
    kind, where = target
    thread = str(uuid.uuid4())
    serde = CIPHERS["upstream-aes"]() if encrypted else None
    with open_saver(kind, where, serde or SqliteSaver.serde) as saver:
        put_thread(saver, thread)
        if kind == "sqlite":
            at_rest = sqlite_at_rest(where)  # the WAL still holds the pages
    if kind == "postgres":
        at_rest = postgres_at_rest(where)
    found = [s for s in samples(thread) if s in at_rest]
    if encrypted:
        assert not found, f"{len(found)} stretches of message text found at rest, e.g. {found[0]!r}"
    else:
        assert len(found) > len(samples(thread)) // 2


# -- errors ------------------------------------------------------------------------------


def rewrite_record(kind: str, target: str, thread: str, checkpoint_id: str, body: Any) -> None:
    """Replaces one checkpoint record's stored body with ``body(old body)``."""
    column, key = ("record", "thread = (SELECT id FROM fc_threads WHERE name = ?)")
    if kind == "postgres":
        column, key = ("checkpoint", "thread_id = %s")
    select = f"SELECT {column} FROM fc_checkpoints WHERE {key} AND checkpoint_id = ?"
    update = f"UPDATE fc_checkpoints SET {column} = ? WHERE {key} AND checkpoint_id = ?"
    if kind == "postgres":
        select, update = select.replace("?", "%s"), update.replace("?", "%s")
    connect = sqlite3.connect if kind == "sqlite" else lambda t: psycopg.connect(t, autocommit=True)
    with connect(target) as c:
        (old,) = c.execute(select, (thread, checkpoint_id)).fetchone()
        c.execute(update, (body(bytes(old)), thread, checkpoint_id))


def body_of(kind: str, target: str, thread: str, checkpoint_id: str) -> bytes:
    found: list[bytes] = []
    rewrite_record(kind, target, thread, checkpoint_id, lambda old: found.append(old) or old)
    return found[0]


def test_wrong_key_missing_cipher_and_damage_are_typed_errors_naming_the_row(target) -> None:
    kind, where = target
    thread = str(uuid.uuid4())
    with open_saver(kind, where, CIPHERS["upstream-aes"]()) as saver:
        put = put_thread(saver, thread, 4)
    ids = sorted(put)
    with open_saver(kind, where, EncryptedSerializer(AesCipher(OLD_KEY))) as saver:
        with pytest.raises(DecryptionError, match=f"thread '{thread}'.*checkpoint '{ids[-1]}'.*no key given opens"):
            saver.get_tuple(cfg(thread))
    with open_saver(kind, where, SqliteSaver.serde) as saver:  # ours, without a cipher
        with pytest.raises(DecryptionError, match=f"checkpoint '{ids[-1]}'.*has no cipher"):
            saver.get_tuple(cfg(thread))
    # A flipped bit in one checkpoint record, a truncated body in another, and
    # a record moved into a third: each fails alone, the rest of the thread reads.
    rewrite_record(kind, where, thread, ids[1], lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:])
    rewrite_record(kind, where, thread, ids[2], lambda b: b[:20])
    first = body_of(kind, where, thread, ids[0])
    rewrite_record(kind, where, thread, ids[3], lambda _: first)
    with open_saver(kind, where, CIPHERS["upstream-aes"]()) as saver:
        with pytest.raises(DecryptionError, match=f"checkpoint '{ids[1]}'.*no key given opens"):
            saver.get_tuple(cfg(thread, checkpoint_id=ids[1]))
        with pytest.raises(DecryptionError, match=f"checkpoint '{ids[2]}'"):
            saver.get_tuple(cfg(thread, checkpoint_id=ids[2]))
        with pytest.raises(DecryptionError, match=f"checkpoint '{ids[3]}'.*belongs to another row"):
            saver.get_tuple(cfg(thread, checkpoint_id=ids[3]))
        kept = saver.get_tuple(cfg(thread, checkpoint_id=ids[0]))
        assert kept.checkpoint["channel_values"]["messages"] == put[ids[0]]


def test_a_blob_moved_to_another_row_fails_to_read(tmp_path) -> None:
    path = str(tmp_path / "c.db")
    thread = str(uuid.uuid4())
    with open_saver("sqlite", path, CIPHERS["aes-cipher"]()) as saver:
        put = put_thread(saver, thread, 3)
    with sqlite3.connect(path) as c:
        found = c.execute("SELECT version FROM fc_blobs WHERE channel = 'messages'")
        versions = sorted((v for (v,) in found), key=long_version)
        c.execute(
            "UPDATE fc_blobs SET blob = (SELECT blob FROM fc_blobs WHERE channel = 'messages' AND version = ?),"
            " base = (SELECT base FROM fc_blobs WHERE channel = 'messages' AND version = ?)"
            " WHERE channel = 'messages' AND version = ?",
            (versions[-2], versions[-2], versions[-1]),
        )
    with open_saver("sqlite", path, CIPHERS["aes-cipher"]()) as saver:
        with pytest.raises(DecryptionError, match=r"channel 'messages'.*belongs to another row"):
            saver.get_tuple(cfg(thread))
        # (Earlier versions may be pointers into the moved row's segment: they fail too.)
        first = min(put)
        assert saver.get_tuple(cfg(thread, checkpoint_id=first)).checkpoint["channel_values"]["messages"] == put[first]


# -- reading what is already stored ------------------------------------------------------


def test_upstream_encrypted_rows_are_taken_over(tmp_path) -> None:
    """A file upstream's SqliteSaver wrote with EncryptedSerializer: our saver
    with the same serializer takes it over and continues the thread, encrypted
    in our format; ``fastcheckpoint migrate`` copies it the same way."""
    path = str(tmp_path / "up.db")
    serde = CIPHERS["upstream-aes"]()
    config = cfg("t1")
    with UpstreamSqliteSaver.from_conn_string(path) as up:
        up.serde = serde
        g = approval_graph().compile(checkpointer=up)
        g.invoke({"request": "deploy"}, config)
        expected = g.get_state(config)
    with sqlite3.connect(path) as c:
        assert {t for (t,) in c.execute("SELECT type FROM checkpoints")} == {"msgpack+aes"}
    with open_saver("sqlite", path, CIPHERS["upstream-aes"]()) as saver:
        g = approval_graph().compile(checkpointer=saver)
        assert g.get_state(config).values == expected.values
        assert g.get_state(config).next == ("approve",)
        g.invoke(Command(resume="yes"), config)
        assert g.get_state(config).values["status"] == "approved"
    assert stored_types("sqlite", path)["fc_checkpoints"] == {SEALED["aes-cipher"]}


def test_migrate_and_cli_read_with_the_key_from_the_environment(tmp_path, monkeypatch, capsys) -> None:
    src, dst = str(tmp_path / "up.db"), str(tmp_path / "ours.db")
    with UpstreamSqliteSaver.from_conn_string(src) as up:
        up.serde = CIPHERS["upstream-aes"]()
        g = chat_graph().compile(checkpointer=up)
        for i in range(3):
            g.invoke({"messages": [HumanMessage(f"message number {i} about the harbour")]}, cfg("t1"))
    assert cli(["migrate", src, dst]) == 3  # no key: upstream's encrypted rows cannot be read
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    assert cli(["migrate", src, dst]) == 0
    assert stored_types("sqlite", dst)["fc_checkpoints"] == {SEALED["aes-cipher"]}
    capsys.readouterr()
    assert cli(["show", dst, "t1", "--json"]) == 0
    assert "message number 2 about the harbour" in capsys.readouterr().out
    commands = (["verify", dst], ["history", dst, "t1"], ["stats", dst], ["diff", dst, "t1", "latest~1", "latest"])
    for command in commands:
        assert cli(command) == 0, command
    monkeypatch.setenv("LANGGRAPH_AES_KEY", OLD_KEY.decode())
    capsys.readouterr()
    assert cli(["show", dst, "t1"]) == 3
    assert "DecryptionError" in capsys.readouterr().err
    assert cli(["verify", dst]) == 1


def test_a_cipher_added_later_reads_old_rows_and_encrypts_new_ones(target) -> None:
    kind, where = target
    thread = str(uuid.uuid4())
    with open_saver(kind, where, SqliteSaver.serde) as saver:
        put = put_thread(saver, thread, 3)
    assert stored_types(kind, where)["fc_checkpoints"] == {"fc1"}
    with open_saver(kind, where, CIPHERS["aes-cipher"]()) as saver:
        assert read_thread(saver, thread) == put
        more = put_thread(saver, thread + "-next", 3)
        assert read_thread(saver, thread + "-next") == more
    assert stored_types(kind, where)["fc_checkpoints"] == {"fc1", SEALED["aes-cipher"]}


class OwnJsonPlus(JsonPlusSerializer):
    """A serializer of the user's own: inside an EncryptedSerializer it keeps
    upstream's format, as every EncryptedSerializer did in an earlier release."""


def test_rows_in_upstreams_encrypted_format_in_our_tables_read_and_reencrypt(target, monkeypatch) -> None:
    kind, where = target
    thread = str(uuid.uuid4())
    with open_saver(kind, where, EncryptedSerializer.from_pycryptodome_aes(OwnJsonPlus(), key=KEY)) as saver:
        put = put_thread(saver, thread, 2)
        saver.put_writes(cfg(thread, checkpoint_id=max(put)), [("messages", ["pending"])], "task-1")
    types = stored_types(kind, where)
    assert types["fc_checkpoints"] == {"msgpack+aes"} and "msgpack+aes" in types["fc_blobs"]
    with open_saver(kind, where, CIPHERS["upstream-aes"]()) as saver:
        assert read_thread(saver, thread) == put
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    assert cli(["reencrypt", where]) == 0
    assert stored_types(kind, where)["fc_checkpoints"] == {SEALED["upstream-aes"]}
    with open_saver(kind, where, CIPHERS["upstream-aes"]()) as saver:
        assert read_thread(saver, thread) == put
        assert [w[2] for w in saver.get_tuple(cfg(thread)).pending_writes] == [["pending"]]


def test_keys_rotate_and_reencrypt_moves_every_row_to_the_new_key(target, monkeypatch, capsys) -> None:
    """Rows under an old key, rows without encryption and rows under the new
    key; ``reencrypt`` leaves everything under the new key alone, and a second
    run has nothing left to do."""
    kind, where = target
    old, plain, new = (str(uuid.uuid4()) for _ in range(3))
    with open_saver(kind, where, EncryptedSerializer(AesCipher(OLD_KEY))) as saver:
        put_old = put_thread(saver, old, 3)
    with open_saver(kind, where, SqliteSaver.serde) as saver:
        put_plain = put_thread(saver, plain, 3)
    with open_saver(kind, where, EncryptedSerializer(AesCipher(KEY, OLD_KEY))) as saver:
        put_new = put_thread(saver, new, 3)
        assert read_thread(saver, old) == put_old  # decrypted with the previous key
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    assert cli(["reencrypt", where]) == 3  # the old key is needed: a typed error, nothing changed
    monkeypatch.setenv("FC_OLD_KEY", OLD_KEY.decode())
    capsys.readouterr()
    assert cli(["reencrypt", where, "--previous-key-env", "FC_OLD_KEY"]) == 0
    out = capsys.readouterr().out
    assert "re-encrypted" in out and " 0 rows" not in out.split(";")[0]
    assert stored_types(kind, where)["fc_checkpoints"] == {SEALED["aes-cipher"]}
    with open_saver(kind, where, EncryptedSerializer(AesCipher(KEY))) as saver:
        assert read_thread(saver, old) == put_old
        assert read_thread(saver, plain) == put_plain
        assert read_thread(saver, new) == put_new
    assert cli(["reencrypt", where, "--previous-key-env", "FC_OLD_KEY"]) == 0
    assert capsys.readouterr().out.startswith("re-encrypted 0 rows")


def test_reencrypt_resumes_and_never_overwrites_a_row_a_saver_changed(tmp_path, monkeypatch, capsys) -> None:
    """A thread already done (as an interrupted run leaves it) is not
    rewritten; a row a saver replaces between the pass's read and its write
    keeps the saver's value, and the command asks for another run."""
    path = str(tmp_path / "c.db")
    done, busy = str(uuid.uuid4()), str(uuid.uuid4())
    with open_saver("sqlite", path, EncryptedSerializer(AesCipher(OLD_KEY))) as saver:
        put_thread(saver, done, 2)
        put = put_thread(saver, busy, 2)
        pending = cfg(busy, checkpoint_id=max(put))
        saver.put_writes(pending, [("__error__", "first failure")], "task-1")
    with open_saver("sqlite", path, EncryptedSerializer(AesCipher(KEY, OLD_KEY))) as saver:
        first = saver._run(rekey_thread_op(saver, done))
        assert first.rewritten > 0 and first.changed == 0
        op = rekey_thread_op(saver, busy)
        read = saver._ready().read(next(op))
        writes = op.send(read)  # the pass has read the thread; before it writes:
        saver.put_writes(pending, [("__error__", "second failure")], "task-1")  # replaces the row
        with pytest.raises(StopIteration) as stop:
            op.send(saver._ready().write(writes))
        assert stop.value.value.changed == 1
        assert [w[2] for w in saver.get_tuple(pending).pending_writes] == ["second failure"]
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    monkeypatch.setenv("FC_OLD_KEY", OLD_KEY.decode())
    capsys.readouterr()
    assert cli(["reencrypt", path, "--previous-key-env", "FC_OLD_KEY"]) == 0
    # Both passes left every row under the new key (the saver wrote the changed one so).
    assert capsys.readouterr().out.startswith("re-encrypted 0 rows;")
    with open_saver("sqlite", path, EncryptedSerializer(AesCipher(KEY))) as saver:
        assert [w[2] for w in saver.get_tuple(pending).pending_writes] == ["second failure"]
        assert read_thread(saver, done) and read_thread(saver, busy) == put


# -- graphs, sync and async ---------------------------------------------------------------


@needs_async_context
@pytest.mark.parametrize("cipher", ["upstream-aes", "own-cipher"])
async def test_graphs_run_on_encrypted_async_savers(target, cipher) -> None:
    kind, where = target
    serde = CIPHERS[cipher]()
    opened = (
        AsyncSqliteSaver.from_conn_string(where) if kind == "sqlite" else AsyncPostgresSaver.from_conn_string(where)
    )
    async with opened as saver:
        saver.serde = serde
        if kind == "postgres":
            await saver.setup()
        approval = approval_graph().compile(checkpointer=saver)
        await approval.ainvoke({"request": "deploy"}, cfg("a"))
        await approval.ainvoke(Command(resume="no"), cfg("a"))
        assert (await approval.aget_state(cfg("a"))).values["status"] == "rejected"
        chat = chat_graph().compile(checkpointer=saver)
        threads = [f"c{i}" for i in range(4)]
        for turn in range(5):
            await asyncio.gather(
                *(chat.ainvoke({"messages": [HumanMessage(f"{t} turn {turn}")]}, cfg(t)) for t in threads)
            )
        for t in threads:
            messages = (await chat.aget_state(cfg(t))).values["messages"]
            assert [m.content for m in messages[::2]] == [f"{t} turn {i}" for i in range(5)]
        await saver.acopy_thread("c0", "copy")
        assert len((await chat.aget_state(cfg("copy"))).values["messages"]) == 10
    assert stored_types(kind, where)["fc_checkpoints"] == {SEALED[cipher]}


@pytest.mark.parametrize("cipher", ["aes-cipher", "own-cipher"])
def test_graphs_run_on_encrypted_sync_savers(target, cipher) -> None:
    kind, where = target
    with open_saver(kind, where, CIPHERS[cipher]()) as saver:
        approval = approval_graph().compile(checkpointer=saver)
        approval.invoke({"request": "deploy"}, cfg("a"))
        assert approval.get_state(cfg("a")).next == ("approve",)
        approval.invoke(Command(resume="yes"), cfg("a"))
        assert approval.get_state(cfg("a")).values["log"][-1] == "acted (approved)"
        chat = chat_graph().compile(checkpointer=saver)
        for turn in range(5):
            chat.invoke({"messages": [HumanMessage(f"turn {turn}")]}, cfg("c"))
        history = list(chat.get_state_history(cfg("c")))
        assert len(history) == 15 and len(history[0].values["messages"]) == 10
        saver.copy_thread("c", "copy")
        assert chat.get_state(cfg("copy")).values == chat.get_state(cfg("c")).values


# -- the cipher itself ---------------------------------------------------------------------


def test_native_aes_reads_and_writes_what_pycryptodome_does() -> None:
    upstream = EncryptedSerializer.from_pycryptodome_aes(key=KEY).cipher
    ours = AesCipher(KEY)
    for size in (0, 1, 15, 16, 17, 1000, 100_000):
        text = os.urandom(size)
        assert upstream.decrypt(*ours.encrypt(text)) == text
        assert ours.decrypt(*upstream.encrypt(text)) == text
    assert Vault.of(upstream).native is not None  # taken natively
    gcm = EncryptedSerializer.from_pycryptodome_aes(key=KEY, mode=AES.MODE_GCM).cipher
    assert Vault.of(gcm).native is None  # another mode: called as it is
    with pytest.raises(DecryptionError):
        AesCipher(OLD_KEY).decrypt(*ours.encrypt(b"x"))
    with pytest.raises(DecryptionError):
        ours.decrypt("aes", b"short")


def test_keys_come_from_the_environment_as_upstream_reads_them(monkeypatch) -> None:
    from fastcheckpoint.errors import ConfigError

    monkeypatch.delenv("LANGGRAPH_AES_KEY", raising=False)
    with pytest.raises(ConfigError, match="LANGGRAPH_AES_KEY"):
        encrypted_serializer()
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    ours = encrypted_serializer()
    assert EncryptedSerializer.from_pycryptodome_aes().loads_typed(ours.dumps_typed({"a": 1})) == {"a": 1}
    with pytest.raises(ConfigError, match="must be 16, 24 or 32"):
        AesCipher(b"short")
