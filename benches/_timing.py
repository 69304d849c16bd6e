"""Same-process timing helpers: medians and tails over repeated calls, printed as ratios."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any


def settle() -> None:
    """Starts a measured phase from a collected heap, for both savers alike: a
    full collection of what earlier phases left (~50 ms once a Postgres cluster
    has started) would otherwise land inside whichever saver runs next."""
    gc.collect()


def timeit(fn: Callable[[], object], *, repeat: int = 50, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    settle()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {
        "min": samples[0],
        "median": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    return f"{seconds * 1e3:8.2f} ms"


def table(title: str, rows: list[tuple[str, float, float]]) -> str:
    """rows: (label, upstream seconds, ours seconds)."""
    lines = [f"\n## {title}", f"{'case':44} {'upstream':>12} {'ours':>12} {'speed-up':>9}"]
    for label, up, ours in rows:
        lines.append(f"{label:44} {fmt(up):>12} {fmt(ours):>12} {up / ours:8.1f}x")
    out = "\n".join(lines)
    print(out)
    return out


def tail(times: list[float], window: int = 40) -> tuple[float, float]:
    """Median and p95 of the last `window` puts (the cost at that history length)."""
    last = sorted(times[-window:])
    return statistics.median(last), last[int(len(last) * 0.95)]


def time_calls(obj: Any, names: tuple[str, ...], on_call: Callable[[str, float, float], None]) -> None:
    """Wraps ``obj``'s methods ``names`` (on the instance): each call reports
    ``on_call(name, CPU seconds of the calling thread, wall seconds)``. CPU of
    the calling thread leaves out what other threads (the graph) did meanwhile."""

    def wrapped(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                on_call(name, time.thread_time() - cpu, time.perf_counter() - wall)

        return timed

    for name in names:
        setattr(obj, name, wrapped(name, getattr(obj, name)))
