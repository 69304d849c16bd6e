"""One worker process of test_bench_postgres.py's many-workers case: an event
loop with a connection pool and ``threads`` concurrent graph threads, each
putting ``turns`` chat turns (four checkpoints a turn, natural-like text, each
checkpoint the child of the one before). Returns every put's latency and what
was acknowledged, for the caller to check against the database."""

from __future__ import annotations

import asyncio
import time

from psycopg_pool import AsyncConnectionPool

from benches._workload import thread_checkpoints
from fastcheckpoint._text import turn_messages
from fastcheckpoint.postgres._store import connection_kwargs


def checkpoints(saver, thread: str, turns: int) -> list[tuple]:
    """The thread's puts: ``(config, checkpoint, metadata, new_versions)``."""
    return list(thread_checkpoints(saver, (m for t in range(turns) for m in turn_messages(t, thread)), thread))


def run(uri: str, impl: str, worker: int, threads: int, turns: int, start_at: float) -> dict:
    """Runs one worker (``impl``: "ours" or "upstream"); starts putting at the
    wall-clock time ``start_at`` so that every worker starts together."""
    if impl == "ours":
        from fastcheckpoint.postgres.aio import AsyncPostgresSaver as Saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver as Saver  # type: ignore[assignment]

    async def main() -> dict:
        # upstream's own connection settings (prepare_threshold=0); ours use our default
        kwargs = connection_kwargs(0 if impl == "upstream" else None)
        async with AsyncConnectionPool(uri, min_size=threads, max_size=threads, kwargs=kwargs, open=False) as pool:
            await pool.wait()  # every connection open before the clock, for both
            saver = Saver(pool)
            await saver.setup()
            work = {f"w{worker}-t{i}": checkpoints(saver, f"w{worker}-t{i}", turns) for i in range(threads)}
            # Both serializers import what they need on first use (langgraph.types: ~0.5 s
            # here), which a graph process has done long before: not part of a put.
            saver.serde.dumps_typed(next(iter(work.values()))[-1][1]["channel_values"]["messages"])
            latencies: list[float] = []
            acks: list[tuple[str, str, int]] = []

            async def one(thread: str) -> None:
                for args in work[thread]:
                    t = time.perf_counter()
                    got = await saver.aput(*args)
                    latencies.append(time.perf_counter() - t)
                    acks.append((thread, got["configurable"]["checkpoint_id"], args[2]["step"]))

            await asyncio.sleep(max(0.0, start_at - time.time()))
            began = time.time()
            await asyncio.gather(*(one(t) for t in work))
            return {"latencies": latencies, "acks": acks, "began": began, "ended": time.time()}

    return asyncio.run(main())
