"""The langgraph-checkpoint-conformance suite, every capability, on every saver."""

from __future__ import annotations

import pytest
from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.serde import RustSerializer
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES


@checkpointer_test(name="fastcheckpoint.InMemorySaver")
async def memory_saver():
    yield InMemorySaver()


@checkpointer_test(name="fastcheckpoint.InMemorySaver[strict serde]")
async def memory_saver_strict():
    yield InMemorySaver(serde=RustSerializer(allowed_msgpack_modules=None))


@pytest.mark.parametrize("registered", [memory_saver, memory_saver_strict], ids=lambda r: r.name)
async def test_conformance_full(registered) -> None:
    report = await validate(registered)
    failures = {cap: res.failures for cap, res in report.results.items() if res.failures}
    assert not failures, failures
    # Every base *and* extended capability is detected and passes.
    assert {c.value for c in ALL_CAPABILITIES} == {cap for cap, r in report.results.items() if r.detected}
    assert report.conformance_level() == "FULL"
