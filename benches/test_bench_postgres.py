"""PostgresSaver vs upstream PostgresSaver on the chat-agent workload, same
process, same server (a throwaway cluster with PostgreSQL's default, durable
settings, on loopback). Run: make bench
"""

from __future__ import annotations

import asyncio

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgres
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver as UpstreamAsyncPostgres
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from benches._timing import fmt, table, tail
from benches._workload import CONFIG, REPEATED_TEXT
from benches.test_bench_sqlite import async_rate, best_of, chat_puts
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from tests.pgserver import cluster, database

KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


def table_bytes(uri: str, tables: list[str]) -> int:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("VACUUM")  # dead tuples of upserts out of the count, for both
        return sum(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] for t in tables)


UPSTREAM_TABLES = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
OUR_TABLES = ["fc_checkpoints", "fc_blobs", "fc_writes"]


def test_postgres_chat_workload() -> None:
    rows: list[tuple[str, float, float]] = []
    sizes = {}
    with cluster(durable=True) as server:
        for turns in (50, 200):
            results = {}
            for name, cls, tables in (
                ("upstream", UpstreamPostgres, UPSTREAM_TABLES),
                ("ours", PostgresSaver, OUR_TABLES),
            ):
                with database(server) as uri, cls.from_conn_string(uri) as saver:
                    saver.setup()
                    times = chat_puts(saver, turns)
                    cfg = CONFIG
                    latest = saver.get_tuple(cfg)
                    get = best_of(lambda s=saver, c=cfg: s.get_tuple(c))
                    listed = best_of(lambda s=saver, c=cfg: list(s.list(c)), n=1)
                    results[name] = (times, latest, get, listed, table_bytes(uri, tables))
            (up_t, up_latest, up_get, up_list, up_size), (t, latest, get, listed, size) = (
                results["upstream"],
                results["ours"],
            )
            assert latest.checkpoint["channel_values"] == up_latest.checkpoint["channel_values"]
            um, up95 = tail(up_t)
            om, o95 = tail(t)
            rows += [
                (f"put, {turns} turns ({4 * turns} msgs), median", um, om),
                (f"put, {turns} turns ({4 * turns} msgs), p95 tail", up95, o95),
                (f"get_tuple latest, {turns} turns", up_get, get),
                (f"list whole thread ({4 * turns} checkpoints)", up_list, listed),
            ]
            sizes[turns] = (up_size, size)
    table(f"PostgresSaver (loopback server): upstream vs fastcheckpoint, {REPEATED_TEXT}", rows)
    for turns, (up_size, size) in sizes.items():
        print(
            f"tables after {turns} turns: upstream {up_size / 1e6:.2f} MB, ours {size / 1e6:.3f} MB "
            f"({up_size / size:.0f}x smaller)"
        )


def test_async_postgres_pool_concurrent_threads() -> None:
    async def rate(uri: str, cls) -> float:
        async with AsyncConnectionPool(uri, min_size=8, max_size=8, kwargs=KWARGS, open=False) as pool:
            saver = cls(pool)
            await saver.setup()
            return await async_rate(saver)

    with cluster(durable=True) as server:
        with database(server) as uri:
            up = asyncio.run(rate(uri, UpstreamAsyncPostgres))
        with database(server) as uri:
            ours = asyncio.run(rate(uri, AsyncPostgresSaver))
    print(
        f"\n## AsyncPostgresSaver with a pool of 8, 8 concurrent threads x 25 turns (800 checkpoints)\n"
        f"upstream {up:,.0f} checkpoints/s, ours {ours:,.0f} checkpoints/s: {ours / up:.1f}x"
    )


WORKERS, TURNS = 4, 25


def many_workers(server: str, impl: str, threads: int) -> dict:
    """``WORKERS`` processes x ``threads`` concurrent threads on one server,
    every put acknowledged checked against what the database holds."""
    import multiprocessing
    import time

    from benches import workers

    saver_cls = AsyncPostgresSaver if impl == "ours" else UpstreamAsyncPostgres
    sync_cls = PostgresSaver if impl == "ours" else UpstreamPostgres
    with database(server) as uri:

        async def setup() -> None:
            async with saver_cls.from_conn_string(uri) as saver:
                await saver.setup()

        asyncio.run(setup())
        start_at = time.time() + 8  # after every worker has started and built its checkpoints
        args = [(uri, impl, w, threads, TURNS, start_at) for w in range(WORKERS)]
        with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
            results = pool.starmap(workers.run, args)
        assert all(r["began"] >= start_at - 0.5 for r in results), "a worker started late: raise the start delay"
        acks = [a for r in results for a in r["acks"]]
        assert len({cid for _, cid, _ in acks}) == len(acks) == WORKERS * threads * TURNS * 4
        with sync_cls.from_conn_string(uri) as saver:
            for thread in {t for t, _, _ in acks}:
                stored = [
                    (t.config["configurable"]["checkpoint_id"], t.metadata["step"])
                    for t in saver.list({"configurable": {"thread_id": thread}})
                ]
                put = [(cid, step) for t, cid, step in acks if t == thread]
                assert stored == put[::-1], f"{impl}: thread {thread} lost, duplicated or reordered checkpoints"
    latencies = sorted(x for r in results for x in r["latencies"])
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    return {
        "rate": len(acks) / wall,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


def test_many_workers_on_one_server() -> None:
    lines = [
        f"\n## {WORKERS} worker processes, each an async pool with one connection per concurrent thread, "
        f"{TURNS} turns a thread (natural-like text), one durable server on the same 2 cores",
        f"{'threads':>8} {'':9} {'checkpoints/s':>14} {'put p50':>10} {'put p99':>10}",
    ]
    with cluster(durable=True) as server:
        for threads in (8, 2):
            up = many_workers(server, "upstream", threads)
            ours = many_workers(server, "ours", threads)
            for name, r in (("upstream", up), ("ours", ours)):
                lines.append(
                    f"{WORKERS} x {threads:<4} {name:9} {r['rate']:>14,.0f} {fmt(r['p50']):>10} {fmt(r['p99']):>10}"
                )
            lines.append(f"{'':8} throughput {ours['rate'] / up['rate']:.1f}x upstream")
    lines.append("every acknowledged checkpoint was stored once, in put order, for both savers")
    print("\n".join(lines))
