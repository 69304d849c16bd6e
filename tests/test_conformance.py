"""The langgraph-checkpoint-conformance suite, every capability, on every saver."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from fastcheckpoint.encryption import AesCipher
from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver


@checkpointer_test(name="fastcheckpoint.InMemorySaver")
async def memory_saver():
    yield InMemorySaver()


@checkpointer_test(name="fastcheckpoint.InMemorySaver[strict serde]")
async def memory_saver_strict():
    yield InMemorySaver(serde=RustSerializer(allowed_msgpack_modules=None))


@checkpointer_test(name="fastcheckpoint.SqliteSaver")
async def sqlite_saver():
    with tempfile.TemporaryDirectory() as d, SqliteSaver.from_conn_string(str(Path(d, "c.db"))) as saver:
        yield saver


@checkpointer_test(name="fastcheckpoint.SqliteSaver[:memory:, strict serde]")
async def sqlite_saver_memory_strict():
    with SqliteSaver.from_conn_string(":memory:") as saver:
        saver.serde = RustSerializer(allowed_msgpack_modules=None)
        yield saver


@checkpointer_test(name="fastcheckpoint.AsyncSqliteSaver")
async def async_sqlite_saver():
    with tempfile.TemporaryDirectory() as d:
        async with AsyncSqliteSaver.from_conn_string(str(Path(d, "c.db"))) as saver:
            yield saver


# Encrypted savers: upstream's pycryptodome AES (taken natively) and ours under two keys.
AES_KEY = b"conformance-key-0123456789abcdef"


@checkpointer_test(name="fastcheckpoint.SqliteSaver[EncryptedSerializer.from_pycryptodome_aes]")
async def sqlite_saver_encrypted():
    with tempfile.TemporaryDirectory() as d, SqliteSaver.from_conn_string(str(Path(d, "c.db"))) as saver:
        saver.serde = EncryptedSerializer.from_pycryptodome_aes(key=AES_KEY)
        yield saver


@checkpointer_test(name="fastcheckpoint.AsyncSqliteSaver[AesCipher, two keys]")
async def async_sqlite_saver_encrypted():
    serde = EncryptedSerializer(AesCipher(AES_KEY, AES_KEY[::-1]))
    with tempfile.TemporaryDirectory() as d:
        async with AsyncSqliteSaver.from_conn_string(str(Path(d, "c.db"))) as saver:
            saver.serde = serde
            yield saver


SAVERS = [
    memory_saver,
    memory_saver_strict,
    sqlite_saver,
    sqlite_saver_memory_strict,
    async_sqlite_saver,
    sqlite_saver_encrypted,
    async_sqlite_saver_encrypted,
]


async def check_full_conformance(registered) -> None:
    report = await validate(registered)
    failures = {cap: res.failures for cap, res in report.results.items() if res.failures}
    assert not failures, failures
    # Every base *and* extended capability is detected and passes.
    assert {c.value for c in ALL_CAPABILITIES} == {cap for cap, r in report.results.items() if r.detected}
    assert report.conformance_level() == "FULL"


@pytest.mark.parametrize("registered", SAVERS, ids=lambda r: r.name)
async def test_conformance_full(registered) -> None:
    await check_full_conformance(registered)
