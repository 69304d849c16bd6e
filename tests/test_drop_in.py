"""Behaviours upstream's own saver tests look at, checked against upstream's
savers side by side: a re-put of a stored checkpoint id, values without a
version, an empty checkpoint id, pending sends of pre-v4 checkpoints, a stored
None as a DeltaChannel seed, classes whose module went away."""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Any

import pytest
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver as UpstreamInMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgresSaver
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqliteSaver

from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


@pytest.fixture
def saver(each_saver) -> Any:
    return each_saver


def _checkpoint(checkpoint_id: str, values: dict[str, Any], versions: dict[str, Any] | None = None) -> Any:
    c = empty_checkpoint()
    c["id"] = checkpoint_id
    c["channel_values"] = values
    c["channel_versions"] = versions or {}
    return c


def test_a_re_put_stores_the_values_given(saver) -> None:
    thread = {"configurable": {"thread_id": "reput", "checkpoint_ns": ""}}
    first = _checkpoint("1", {"msgs": ["a", "b", "c", "d", "e"], "n": 1}, {"msgs": "1", "n": "1"})
    parent = saver.put(thread, first, {"step": 0}, {"msgs": "1", "n": "1"})
    child = _checkpoint("2", {"msgs": ["a", "b", "c", "d", "e", "f"], "n": 1}, {"msgs": "2", "n": "1"})
    saver.put(parent, child, {"step": 1}, {"msgs": "2"})
    # The same id again, other values, the same versions, nothing new.
    again = _checkpoint("1", {"msgs": ["x"], "n": 7}, {"msgs": "1", "n": "1"})
    saver.put(thread, again, {"step": 9}, {})
    got = saver.get_tuple(parent)
    assert got.checkpoint["channel_values"] == {"msgs": ["x"], "n": 7}
    assert got.metadata["step"] == 9
    # The child, stored as a delta of the first put's list, still reads back whole.
    assert saver.get_tuple(thread).checkpoint["channel_values"] == {"msgs": ["a", "b", "c", "d", "e", "f"], "n": 1}
    # A re-put naming a version already stored as new: the stored blob stays
    # (later versions may be deltas of it), the re-put reads back its own values.
    head = saver.get_tuple(thread).config
    longer = ["a", "b", "c", "d", "e", "f", "x", "y"]
    saver.put(parent, _checkpoint("2", {"msgs": longer, "n": 1}, {"msgs": "2", "n": "1"}), {}, {"msgs": "2"})
    assert saver.get_tuple(head).checkpoint["channel_values"] == {"msgs": longer, "n": 1}
    # Later puts build on what is stored, not on what the re-put gave: a delta
    # keeping `longer`'s 8 elements of the stored 6 would not rebuild.
    grandchild = _checkpoint("3", {"msgs": [*longer, "g"]}, {"msgs": "3", "n": "1"})
    saver.put(head, grandchild, {"step": 2}, {"msgs": "3"})
    assert saver.get_tuple(thread).checkpoint["channel_values"]["msgs"] == [*longer, "g"]


def test_a_re_put_matches_upstream_sqlite(tmp_path) -> None:
    """Upstream SqliteSaver keeps each checkpoint's values whole: a re-put's
    values are what a read gives back. Ours agrees."""
    results = []
    for cls in (UpstreamSqliteSaver, SqliteSaver):
        with cls.from_conn_string(str(tmp_path / f"{cls.__module__}.db")) as s:
            cfg = s.put(CONFIG, _checkpoint("1", {"a": [1, 2]}, {"a": "1"}), {}, {"a": "1"})
            s.put(CONFIG, _checkpoint("1", {"a": [3], "b": "no version"}, {"a": "1"}), {}, {})
            results.append(s.get_tuple(cfg).checkpoint["channel_values"])
    assert results[0] == results[1] == {"a": [3], "b": "no version"}


def test_a_value_without_a_version_is_kept(saver) -> None:
    cfg = saver.put(CONFIG, _checkpoint("1", {"ch": "seed"}), {}, {})
    assert saver.get_tuple(cfg).checkpoint["channel_values"] == {"ch": "seed"}
    saver.put_writes(cfg, [("ch", "write")], "task")
    child = saver.put(cfg, _checkpoint("2", {}), {}, {})
    # An empty checkpoint id means the latest, as upstream.
    latest = {"configurable": {**CONFIG["configurable"], "checkpoint_id": ""}}
    assert saver.get_tuple(latest).config == child
    assert saver.get_delta_channel_history(config=latest, channels=["ch"])["ch"] == {
        "writes": [("task", "ch", "write")],
        "seed": "seed",
    }


def test_a_re_put_snapshot_seeds_the_history(saver) -> None:
    root = saver.put(CONFIG, _checkpoint("1", {}, {"items": "1"}), {}, {"items": "1"})
    saver.put_writes(root, [("items", "w1")], "task")
    child = saver.put(root, _checkpoint("2", {}, {"items": "1"}), {}, {})
    saver.put(CONFIG, _checkpoint("1", {"items": _DeltaSnapshot(["s"])}, {"items": "1"}), {}, {})
    history = saver.get_delta_channel_history(config=child, channels=["items"])["items"]
    assert isinstance(history["seed"], _DeltaSnapshot) and history["seed"].value == ["s"]
    assert history["writes"] == [("task", "items", "w1")]


def _pre_v4_thread(saver: Any) -> Any:
    checkpoint_0 = empty_checkpoint()
    assert checkpoint_0["v"] < 4
    config = saver.put(CONFIG, checkpoint_0, {}, {})
    saver.put_writes(config, [(TASKS, "send-1"), (TASKS, "send-2")], task_id="task-1")
    saver.put_writes(config, [(TASKS, "send-3")], task_id="task-2")
    return saver.put(config, create_checkpoint(checkpoint_0, {}, 1), {}, {})


def test_pre_v4_pending_sends_read_as_upstream_postgres_reads_them(pg_uri) -> None:
    with UpstreamPostgresSaver.from_conn_string(pg_uri) as up:
        up.setup()
        config = _pre_v4_thread(up)
        expected = up.get_tuple(config).checkpoint["channel_values"]
    assert expected == {TASKS: ["send-1", "send-2", "send-3"]}
    with PostgresSaver.from_conn_string(pg_uri) as ours:
        ours.setup()  # takes upstream's tables over
        assert ours.get_tuple(config).checkpoint["channel_values"] == expected
        assert [t.checkpoint["channel_values"] for t in ours.list(CONFIG)] == [expected, {}]
        ours.delete_thread("t")
        config = _pre_v4_thread(ours)  # written by us
        assert ours.get_tuple(config).checkpoint["channel_values"] == expected
        assert TASKS in ours.get_tuple(config).checkpoint["channel_versions"]


def test_upstream_sqlite_and_memory_leave_pre_v4_sends_alone(tmp_path) -> None:
    with (
        SqliteSaver.from_conn_string(str(tmp_path / "c.db")) as ours,
        UpstreamSqliteSaver.from_conn_string(str(tmp_path / "up.db")) as up,
    ):
        for s in (up, ours, UpstreamInMemorySaver(), InMemorySaver()):
            assert s.get_tuple(_pre_v4_thread(s)).checkpoint["channel_values"] == {}


@pytest.mark.parametrize("seed", [None, 0, [1]])
def test_a_stored_none_seeds_as_each_upstream_backend_has_it(saver, seed) -> None:
    root = saver.put(CONFIG, _checkpoint("1", {"ch": seed}, {"ch": "1"}), {}, {"ch": "1"})
    saver.put_writes(root, [("ch", "w")], "task")
    child = saver.put(root, _checkpoint("2", {}, {"ch": "1"}), {}, {})
    history = saver.get_delta_channel_history(config=child, channels=["ch"])["ch"]
    if seed is None and isinstance(saver, PostgresSaver):
        assert "seed" not in history  # upstream PostgresSaver: JSON null is no value
    else:
        assert history["seed"] == seed
    assert history["writes"] == [("task", "ch", "w")]


def test_a_class_whose_module_is_gone_reads_as_its_fields(monkeypatch) -> None:
    @dataclasses.dataclass
    class Saved:
        value: int

    Saved.__module__ = "fc_removed_module"
    module = types.ModuleType("fc_removed_module")
    module.Saved = Saved  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fc_removed_module", module)
    serde = RustSerializer(allowed_msgpack_modules=[("fc_removed_module", "Saved")])
    dumped = serde.dumps_typed({"state": Saved(1)})
    assert serde.loads_typed(dumped) == {"state": Saved(1)}
    monkeypatch.delitem(sys.modules, "fc_removed_module")
    assert serde.loads_typed(dumped) == {"state": {"value": 1}}
