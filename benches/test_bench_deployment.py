"""Deployment shapes: a saver opened per request, many async graph runs at
once, and the get_tuple every turn starts with. Upstream, ours and the
zero-cost floor (LangGraph on an InMemorySaver that keeps live objects and
encodes nothing: what the graph itself costs) side by side in one run, on
SQLite (ours synchronous NORMAL, upstream FULL) and PostgreSQL (loopback
server, default durable settings, which the benchmarks' server shares the
two cores with). A ReAct graph of natural-like text, UUID thread names.

Run: .venv/bin/python -m pytest benches/test_bench_deployment.py -s
Writes docs/deployment_shapes.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver as UpstreamMemory
from langgraph.checkpoint.postgres import PostgresSaver as UpstreamPostgres
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver as UpstreamAsyncPostgres
from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver as UpstreamAsyncSqlite
from psycopg_pool import AsyncConnectionPool

from benches._timing import fmt, settle, time_calls
from benches._workload import CONFIG, thread_checkpoints
from benches.test_bench_recorded_graph import _turn, agent_graph, record, replay
from benches.test_bench_sqlite import Passthrough
from fastcheckpoint._text import turn_messages
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from fastcheckpoint.sqlite import SqliteSaver
from fastcheckpoint.sqlite.aio import AsyncSqliteSaver
from tests.pgserver import cluster, database

PLOT = Path(__file__).resolve().parent.parent / "docs" / "deployment_shapes.png"
MARKS = (25, 50, 100, 200)
WINDOW = 10  # turns before each mark whose times make its figure
KWARGS = {"autocommit": True, "prepare_threshold": None}
_figures: dict[str, Any] = {}  # what the plot draws, filled by the tests


def floor_saver() -> UpstreamMemory:
    return UpstreamMemory(serde=Passthrough())


def human(turn: int) -> Any:
    return _turn(turn)[0].model_copy()


# -- a saver per request -----------------------------------------------------------------


def per_request(openers: dict[str, Callable[[], Any]], turns: int) -> dict[str, list[float]]:
    """Each turn of one thread as its own request: open the saver, compile,
    invoke, close. The savers take turns, so a slower moment of the machine
    falls on all alike. Returns each turn's seconds per saver."""
    graph = agent_graph()
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    times: dict[str, list[float]] = {name: [] for name in openers}
    settle()
    for t in range(turns):
        for name, opener in openers.items():
            start = time.perf_counter()
            with opener() as saver:
                out = graph.compile(checkpointer=saver).invoke({"messages": [human(t)]}, config)
            times[name].append(time.perf_counter() - start)
            assert len(out["messages"]) == 4 * (t + 1), name
    return times


def print_per_request(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n## {title}")
    print(f"{'turns':>6} {'upstream':>10} {'ours':>10} {'floor':>10} {'ours vs upstream':>17} {'ours / floor':>13}")
    for mark in MARKS:
        up, ours, floor = (statistics.median(times[n][mark - WINDOW : mark]) for n in ("upstream", "ours", "floor"))
        print(f"{mark:>6} {fmt(up):>10} {fmt(ours):>10} {fmt(floor):>10} {up / ours:>16.1f}x {floor / ours:>12.2f}")
    up, ours, floor = (sum(times[n]) for n in ("upstream", "ours", "floor"))
    print(f"{'all':>6} {up:>9.2f}s {ours:>9.2f}s {floor:>9.2f}s {up / ours:>16.1f}x {floor / ours:>12.2f}")
    print(
        f"time per request (median of the {WINDOW} turns before each mark); all: the whole run of {MARKS[-1]}"
        " requests; ours / floor: the floor's requests per second over ours"
    )


def test_saver_per_request(tmp_path) -> None:
    floor = floor_saver()
    sqlite = {
        "upstream": lambda: UpstreamSqlite.from_conn_string(str(tmp_path / "up.db")),
        "ours": lambda: SqliteSaver.from_conn_string(str(tmp_path / "ours.db")),
        "floor": lambda: contextlib.nullcontext(floor),
    }
    times = per_request(sqlite, MARKS[-1])
    print_per_request(f"A new SqliteSaver per request: one thread, {MARKS[-1]} turns of a ReAct graph", times)
    _figures["per request, SQLite"] = times
    with cluster(durable=True) as server, database(server) as up_uri, database(server) as our_uri:
        with UpstreamPostgres.from_conn_string(up_uri) as s:
            s.setup()
        with PostgresSaver.from_conn_string(our_uri) as s:
            s.setup()
        postgres = {
            "upstream": lambda: UpstreamPostgres.from_conn_string(up_uri),
            "ours": lambda: PostgresSaver.from_conn_string(our_uri),
            "floor": lambda: contextlib.nullcontext(floor),  # (a new thread: per_request names one)
        }
        times = per_request(postgres, MARKS[-1])
    print_per_request(f"A new PostgresSaver per request (a new connection each): {MARKS[-1]} turns", times)
    _figures["per request, PostgreSQL"] = times


# -- concurrent async runs ---------------------------------------------------------------

SHAPES = ((4, 100), (8, 25))  # concurrent threads x turns


async def concurrent_runs(saver: Any, threads: int, turns: int) -> float:
    """Turns per second of ``threads`` graph runs at once, each ``turns`` turns long."""
    graph = agent_graph().compile(checkpointer=saver)

    async def one(thread: str) -> None:
        config = {"configurable": {"thread_id": thread}}
        for t in range(turns):
            await graph.ainvoke({"messages": [human(t)]}, config)

    start = time.perf_counter()
    await asyncio.gather(*(one(str(uuid.uuid4())) for _ in range(threads)))
    return threads * turns / (time.perf_counter() - start)


@contextlib.asynccontextmanager
async def async_savers(kind: str, tmp_path: Path, server: str | None) -> Iterator[dict[str, Any]]:
    """Upstream's, ours and the floor for one run."""
    if kind == "SQLite":
        name = uuid.uuid4().hex
        async with (
            UpstreamAsyncSqlite.from_conn_string(str(tmp_path / f"up-{name}.db")) as up,
            AsyncSqliteSaver.from_conn_string(str(tmp_path / f"ours-{name}.db")) as ours,
        ):
            yield {"upstream": up, "ours": ours, "floor": floor_saver()}
        return
    with database(server) as up_uri, database(server) as our_uri:
        async with (
            AsyncConnectionPool(up_uri, min_size=8, max_size=8, kwargs=KWARGS | {"prepare_threshold": 0}) as up_pool,
            AsyncConnectionPool(our_uri, min_size=8, max_size=8, kwargs=KWARGS) as our_pool,
        ):
            up, ours = UpstreamAsyncPostgres(up_pool), AsyncPostgresSaver(our_pool)
            await up.setup()
            await ours.setup()
            yield {"upstream": up, "ours": ours, "floor": floor_saver()}


def test_concurrent_async_runs(tmp_path) -> None:
    rates: dict[tuple[str, int, int], dict[str, float]] = {}

    async def main(server: str) -> None:
        for kind in ("SQLite", "PostgreSQL"):
            for threads, turns in SHAPES:
                async with async_savers(kind, tmp_path, server) as savers:
                    rates[kind, threads, turns] = {}
                    for name, saver in savers.items():
                        settle()
                        rates[kind, threads, turns][name] = await concurrent_runs(saver, threads, turns)

    with cluster(durable=True) as server:
        asyncio.run(main(server))
    print("\n## Concurrent async graph runs on one saver (AsyncSqliteSaver; AsyncPostgresSaver on a pool of 8)")
    head = f"{'backend':11} {'threads x turns':>16} {'upstream':>10} {'ours':>10} {'floor':>10}"
    print(head + f" {'vs upstream':>12} {'of floor':>9}")
    for (kind, threads, turns), r in rates.items():
        print(
            f"{kind:11} {f'{threads} x {turns}':>16} {r['upstream']:>10.1f} {r['ours']:>10.1f} {r['floor']:>10.1f}"
            f" {r['ours'] / r['upstream']:>11.1f}x {r['ours'] / r['floor']:>9.2f}"
        )
    print("turns per second, all threads together; of floor: ours over the floor's")
    _figures["concurrent"] = rates


# -- get_tuple at 800 messages ------------------------------------------------------------


def get_times(savers: dict[str, Any], config: dict, rounds: int = 15) -> dict[str, float]:
    """Median get_tuple seconds per saver, taking turns."""
    times: dict[str, list[float]] = {name: [] for name in savers}
    settle()
    for _ in range(rounds):
        for name, saver in savers.items():
            start = time.perf_counter()
            saver.get_tuple(config)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def test_get_tuple_at_800_messages(tmp_path) -> None:
    """get_tuple of the latest checkpoint after 200 turns (800 messages): the
    recorded ReAct graph run and the long thread of one put per message, each
    stored by upstream and by ours."""
    calls, _ = record(MARKS[-1])
    rows = []
    with cluster(durable=True) as server, contextlib.ExitStack() as stack:
        for workload in ("recorded ReAct run", "long thread"):
            savers = {}
            for backend, up_cls, our_cls in (
                ("SQLite", UpstreamSqlite, SqliteSaver),
                ("PostgreSQL", UpstreamPostgres, PostgresSaver),
            ):
                for name, cls in (("upstream", up_cls), ("ours", our_cls)):
                    if backend == "SQLite":
                        path = tmp_path / f"{workload[0]}-{name}.db"
                        saver = stack.enter_context(cls.from_conn_string(str(path)))
                    else:
                        uri = stack.enter_context(database(server))
                        saver = stack.enter_context(cls.from_conn_string(uri))
                        saver.setup()
                    if workload == "long thread":
                        for args in thread_checkpoints(saver, (m for t in range(200) for m in turn_messages(t))):
                            saver.put(*args)
                    elif backend == "SQLite":
                        replay(saver, calls, path, {MARKS[-1]: len(calls)})
                    else:
                        for kind, args in calls:
                            getattr(saver, kind)(*args)
                    savers[backend, name] = saver
            got = get_times(savers, CONFIG)
            for backend in ("SQLite", "PostgreSQL"):
                rows.append((workload, backend, got[backend, "upstream"], got[backend, "ours"]))
            # The latest checkpoint holds the 800 messages, read the same by both.
            for backend in ("SQLite", "PostgreSQL"):
                up, ours = (savers[backend, n].get_tuple(CONFIG).checkpoint for n in ("upstream", "ours"))
                assert up["channel_values"]["messages"] == ours["channel_values"]["messages"]
    print("\n## get_tuple of the latest checkpoint at 800 messages (median, savers taking turns)")
    print(f"{'workload':20} {'backend':11} {'upstream':>10} {'ours':>10} {'speed-up':>9}")
    for workload, backend, up, ours in rows:
        print(f"{workload:20} {backend:11} {fmt(up):>10} {fmt(ours):>10} {up / ours:>8.1f}x")


# -- where the time goes ------------------------------------------------------------------


class CallClock:
    """Seconds of CPU (of the thread that made the call) and of wall time a
    saver spends in each of the methods named, call by call. The async savers
    run ``get_tuple`` on a worker thread, so wrapping it measures that too."""

    def __init__(self, saver: Any, names: tuple[str, ...]) -> None:
        self.calls: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        time_calls(saver, names, lambda name, cpu, wall: self.calls[name].append((cpu, wall)))

    def take(self) -> dict[str, tuple[int, float, float]]:
        """Per method since the last take: (calls, CPU seconds, wall seconds)."""
        out = {name: (len(c), sum(x[0] for x in c), sum(x[1] for x in c)) for name, c in self.calls.items()}
        for c in self.calls.values():
            c.clear()
        return out


class GcClock:
    """Seconds spent in Python's cyclic collector while active (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


def test_where_the_time_goes(tmp_path) -> None:
    """Where ours spends what the floor does not, on SQLite: a new saver per
    request at 200 turns, by saver call (CPU of the thread making it, and wall
    time), and 4 async threads x 100 turns on one saver, by thread and in the
    cyclic GC."""
    graph = agent_graph()
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    floor = floor_saver()
    floor_times, ours_times, by_call = [], [], []
    settle()
    for t in range(MARKS[-1]):
        start = time.perf_counter()
        graph.compile(checkpointer=floor).invoke({"messages": [human(t)]}, config)
        floor_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        with SqliteSaver.from_conn_string(str(tmp_path / "per-request.db")) as saver:
            opened = time.perf_counter()
            clock = CallClock(saver, ("get_tuple", "put", "put_writes"))
            graph.compile(checkpointer=saver).invoke({"messages": [human(t)]}, config)
            closing = time.perf_counter()
        end = time.perf_counter()
        ours_times.append(end - start)
        by_call.append({**clock.take(), "open": (1, 0.0, opened - start), "close": (1, 0.0, end - closing)})
    last = slice(MARKS[-1] - WINDOW, MARKS[-1])
    print(
        f"\n## Where the time goes, SQLite (synchronous NORMAL): a new saver per request, the requests at"
        f" {MARKS[-1]} turns (median)"
    )
    print(f"floor {fmt(statistics.median(floor_times[last]))}, ours {fmt(statistics.median(ours_times[last]))}")
    print(f"{'ours':12} {'calls':>6} {'CPU':>11} {'wall':>11}")
    for name in ("open", "get_tuple", "put", "put_writes", "close"):
        calls, cpu, wall = (statistics.median(r[name][i] for r in by_call[last]) for i in range(3))
        print(f"{name:12} {calls:>6.0f} {fmt(cpu) if cpu else '':>11} {fmt(wall):>11}")
    print("put and put_writes run on LangGraph's background threads, beside the graph's own work")

    async def accounted(saver: Any, clock: CallClock | None) -> dict[str, float]:
        settle()
        main = time.thread_time()
        process = time.process_time()
        with GcClock() as gc_clock:
            rate = await concurrent_runs(saver, 4, 100)
        figures = {
            "wall": 1 / rate,
            "CPU": time.process_time() - process,
            "event loop": time.thread_time() - main,
            "GC": gc_clock.seconds,
        }
        figures["other threads"] = figures["CPU"] - figures["event loop"]
        if clock is not None:
            figures["get_tuple"] = clock.take()["get_tuple"][1]
        return figures

    async def main() -> dict[str, dict[str, float]]:
        out = {"floor": await accounted(floor_saver(), None)}
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "concurrent.db")) as saver:
            out["ours"] = await accounted(saver, CallClock(saver, ("get_tuple",)))
        return out

    figures = asyncio.run(main())
    turns = 4 * 100
    print(
        "\n## Where the time goes, SQLite (synchronous NORMAL): 4 async threads x 100 turns on one"
        " AsyncSqliteSaver, per turn"
    )
    print(f"{'':8} {'wall':>10} {'CPU':>10} {'event loop':>11} {'other threads':>14} {'GC':>10} {'get_tuple':>10}")
    for name, f in figures.items():
        cells = [fmt(f["wall"])] + [fmt(f[k] / turns) for k in ("CPU", "event loop", "other threads", "GC")]
        cells.append(fmt(f["get_tuple"] / turns) if "get_tuple" in f else "")
        print(f"{name:8} {cells[0]:>10} {cells[1]:>10} {cells[2]:>11} {cells[3]:>14} {cells[4]:>10} {cells[5]:>10}")
    print(
        "CPU: the whole process; event loop: the graph, our encoding and the commits' answers; other threads:"
        " LangGraph's workers (its sync nodes, our get_tuple) and our commit thread; GC and get_tuple are"
        " inside those"
    )


def test_plot_deployment_shapes() -> None:
    """The plot of the per-request and concurrent tests (docs/deployment_shapes.png)."""
    if not {"per request, SQLite", "concurrent"} <= set(_figures):
        return  # run alone: nothing measured to draw
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key in zip(axes[:2], ("per request, SQLite", "per request, PostgreSQL"), strict=True):
        times = _figures.get(key)
        if times is None:
            continue
        for name, series in times.items():
            rate = [1 / statistics.median(series[m - WINDOW : m]) for m in MARKS]
            ax.plot(MARKS, rate, marker="o", label=name)
        ax.set(title=f"a saver {key}", xlabel="turns in the thread", ylabel="requests / s", yscale="log")
        ax.legend()
    ax = axes[2]
    rates = _figures["concurrent"]
    labels = [f"{k}\n{t} x {n}" for k, t, n in rates]
    for i, name in enumerate(("upstream", "ours", "floor")):
        ax.bar([x + 0.27 * (i - 1) for x in range(len(labels))], [r[name] for r in rates.values()], 0.27, label=name)
    ax.set_xticks(range(len(labels)), labels)
    ax.set(title="concurrent async runs", ylabel="turns / s (all threads)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"plot written to {PLOT.name}")
