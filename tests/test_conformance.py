"""The langgraph-checkpoint-conformance suite, every capability, on every saver."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

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


SAVERS = [memory_saver, memory_saver_strict, sqlite_saver, sqlite_saver_memory_strict, async_sqlite_saver]


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
