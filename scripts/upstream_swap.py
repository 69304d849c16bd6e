"""Runs upstream's own saver tests against our classes.

Loaded into pytest (``-p upstream_swap``) inside an unpacked upstream
sdist by ``scripts/upstream-tests.sh``. Before any upstream test module is
imported it replaces, in LangGraph's modules, the saver and serializer classes
under test with ours, so ``from langgraph.checkpoint.sqlite import SqliteSaver``
in a test gives our ``SqliteSaver``. Postgres tests are pointed at the
throwaway cluster in ``FC_UPSTREAM_PG_URI``. Cases that test upstream internals
are deselected with the reason in ``DESELECTED``.
"""

from __future__ import annotations

import os

from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.serde import RustSerializer
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver


def _swap() -> None:
    import langgraph.checkpoint.memory as up_memory
    import langgraph.checkpoint.serde.jsonplus as up_jsonplus
    import langgraph.checkpoint.sqlite as up_sqlite
    import langgraph.checkpoint.sqlite.aio as up_sqlite_aio

    up_memory.InMemorySaver = InMemorySaver
    up_memory.MemorySaver = InMemorySaver
    up_jsonplus.JsonPlusSerializer = RustSerializer
    up_sqlite.SqliteSaver = SqliteSaver
    up_sqlite_aio.AsyncSqliteSaver = AsyncSqliteSaver
    try:
        import langgraph.checkpoint.postgres as up_postgres
        import langgraph.checkpoint.postgres.aio as up_postgres_aio
    except ImportError:
        return
    from fastcheckpoint.postgres import PostgresSaver
    from fastcheckpoint.postgres.aio import AsyncPostgresSaver

    up_postgres.PostgresSaver = PostgresSaver
    up_postgres_aio.AsyncPostgresSaver = AsyncPostgresSaver


_swap()


def pytest_plugin_registered(plugin, manager) -> None:
    """Points upstream's Postgres conftest at our cluster as soon as pytest loads it."""
    uri = os.environ.get("FC_UPSTREAM_PG_URI")
    if uri and getattr(plugin, "__name__", "") == "tests.conftest" and hasattr(plugin, "DEFAULT_URI"):
        plugin.DEFAULT_POSTGRES_URI = uri.rsplit("/", 1)[0] + "/"
        plugin.DEFAULT_URI = uri


_INTERNAL_WRITES_TABLE = "builds or inspects upstream's own `writes` table (upstream internals)"
_UPSTREAM_TABLES = (
    "reads upstream's `checkpoints` / `checkpoint_blobs` / `checkpoint_writes` tables through its private `_cursor`"
)
_NEWER_CONFORMANCE = (
    "needs a langgraph-checkpoint-conformance newer than any on PyPI (no `delta_channel_history` capability)"
)

# Test node id -> why it does not apply to our classes. Only tests of upstream
# internals: its private helpers, SQL and table layout.
DESELECTED: dict[str, str] = {
    "tests/test_conformance_delta.py::test_delta_channel_conformance": _NEWER_CONFORMANCE,
    "tests/test_delta_parent_walk.py::test_walk_step_looks_up_the_parent_by_primary_key": (
        "explains upstream's private DELTA_STAGE1_SQL against upstream's `checkpoints` table"
    ),
    "tests/test_writes_task_path_migration.py::test_setup_migrates_legacy_writes_table_repeatably": (
        _INTERNAL_WRITES_TABLE
    ),
    "tests/test_writes_task_path_migration.py::test_put_writes_persists_task_path": _INTERNAL_WRITES_TABLE,
    "tests/test_writes_task_path_migration.py::test_async_setup_migrates_legacy_writes_table_repeatably": (
        _INTERNAL_WRITES_TABLE
    ),
    "tests/test_writes_task_path_migration.py::test_read_only_legacy_database_still_reads_delta_history": (
        _INTERNAL_WRITES_TABLE
    ),
    "tests/test_writes_task_path_migration.py::test_async_read_only_legacy_database_still_reads_delta_history": (
        _INTERNAL_WRITES_TABLE
    ),
    "tests/test_sync.py::test_nonnull_migrations": "reads upstream's private `MIGRATIONS` list",
    "tests/test_sync.py::test_get_checkpoint_no_channel_values": "calls upstream's private `_load_checkpoint_tuple`",
    "tests/test_async.py::test_get_checkpoint_no_channel_values": "calls upstream's private `_load_checkpoint_tuple`",
    "tests/test_delta_pagination.py::test_async_walk_reads_nothing_newer_than_the_target": (
        "patches upstream's private `_ingest_stage1_page`"
    ),
    "tests/test_delta_pagination.py::test_sync_walk_reads_nothing_newer_than_the_target": (
        "patches upstream's private `_ingest_stage1_page`"
    ),
    "tests/test_sqlite.py::TestSqliteSaver::test_informative_async_errors": (
        "expects the sync SqliteSaver to refuse async calls; ours serves them (README, Differences)"
    ),
}
DESELECTED.update(
    (f"tests/test_prune.py::{name}", _UPSTREAM_TABLES)
    for name in (
        "test_async_saver_prune_runs_from_another_thread_only",
        "test_delete_removes_every_row_of_the_threads",
        "test_keep_latest_deletes_a_subgraph_call_with_the_checkpoint_it_started_from",
        "test_keep_latest_keeps_a_checkpoint_saved_meanwhile_whatever_its_id",
        "test_keep_latest_keeps_a_checkpoint_saved_while_it_runs",
        "test_keep_latest_keeps_each_namespace_head_with_its_writes_and_blobs",
        "test_keep_latest_keeps_the_history_of_a_delta_checkpoint_saved_after_the_thread_check",
        "test_keep_latest_keeps_the_parent_holding_a_pre_v4_heads_sends",
        "test_keep_latest_prunes_a_thread_storing_a_plain_true",
        "test_keep_latest_refuses_a_batch_with_a_delta_channel_thread",
        "test_keep_latest_refuses_a_thread_that_turns_delta_after_the_batch_check",
        "test_prune_rejects_a_single_thread_id_string",
        "test_unknown_strategy_changes_nothing",
    )
)
_dropped: list[str] = []


def _reason(nodeid: str) -> str | None:
    """Why a test is deselected: by its id, or its id without parameters."""
    for key in (nodeid, nodeid.split("[")[0]):
        if key in DESELECTED:
            return DESELECTED[key]
    return None


def pytest_collection_modifyitems(config, items) -> None:
    kept, dropped = [], []
    for item in items:
        (dropped if _reason(item.nodeid) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        _dropped.extend(item.nodeid for item in dropped)


def pytest_terminal_summary(terminalreporter) -> None:
    """Lists each deselected upstream test (parameters folded) with its reason."""
    counts: dict[str, int] = {}
    for nodeid in _dropped:
        test = nodeid.split("[")[0]
        counts[test] = counts.get(test, 0) + 1
    for test, n in counts.items():
        cases = f" ({n} cases)" if n > 1 else ""
        terminalreporter.write_line(f"deselected {test}{cases}: {_reason(test)}")
