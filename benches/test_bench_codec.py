"""RustSerializer vs JsonPlusSerializer, same process, same data; results checked equal.

Run: make bench
"""

from __future__ import annotations

import dataclasses
import datetime

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from benches._timing import table, timeit
from fastcheckpoint.serde import RustSerializer
from tests.corpus import corpus
from tests.graphs import react_turn_messages


@dataclasses.dataclass
class Task:
    id: int
    title: str
    due: datetime.datetime
    tags: list


def chat_history(turns: int = 200) -> list:
    return [m for t in range(turns) for m in react_turn_messages(t)]


def mixed_state() -> dict:
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return {
        "tasks": [Task(i, f"task {i}", now + datetime.timedelta(hours=i), ["a", "b"]) for i in range(300)],
        "counts": {f"k{i}": i for i in range(300)},
        "matrix": [[float(i * j) for j in range(20)] for i in range(20)],
        "when": [now + datetime.timedelta(days=i) for i in range(100)],
    }


def compare(name: str, value, repeat: int = 30) -> list[tuple[str, float, float]]:
    up, ours = JsonPlusSerializer(), RustSerializer()
    up_b, our_b = up.dumps_typed(value), ours.dumps_typed(value)
    assert up.loads_typed(our_b) == up.loads_typed(up_b)
    assert ours.loads_typed(up_b) == up.loads_typed(up_b)
    enc_up = timeit(lambda: up.dumps_typed(value), repeat=repeat)["median"]
    enc_ours = timeit(lambda: ours.dumps_typed(value), repeat=repeat)["median"]
    dec_up = timeit(lambda: up.loads_typed(up_b), repeat=repeat)["median"]
    dec_ours = timeit(lambda: ours.loads_typed(our_b), repeat=repeat)["median"]
    return [(f"{name}: encode", enc_up, enc_ours), (f"{name}: decode", dec_up, dec_ours)]


def test_codec_throughput() -> None:
    rows = compare("800-message chat history", chat_history())
    rows += compare("mixed state (dataclasses, datetimes, dicts)", mixed_state())
    table("Codec: JsonPlusSerializer vs RustSerializer (median)", rows)


def test_codec_not_slower_on_any_corpus_type() -> None:
    rows = []
    for value in corpus():
        up, ours = JsonPlusSerializer(), RustSerializer()
        if up.dumps_typed(value)[0] != "msgpack":
            continue
        n = 200
        enc_up = timeit(lambda v=value, up=up, n=n: [up.dumps_typed(v) for _ in range(n)], repeat=7)["median"] / n
        enc_ours = (
            timeit(lambda v=value, ours=ours, n=n: [ours.dumps_typed(v) for _ in range(n)], repeat=7)["median"] / n
        )
        b = up.dumps_typed(value)
        dec_up = timeit(lambda b=b, up=up, n=n: [up.loads_typed(b) for _ in range(n)], repeat=7)["median"] / n
        dec_ours = timeit(lambda b=b, ours=ours, n=n: [ours.loads_typed(b) for _ in range(n)], repeat=7)["median"] / n
        rows.append((f"{type(value).__name__}: encode", enc_up, enc_ours))
        rows.append((f"{type(value).__name__}: decode", dec_up, dec_ours))
    table("Codec per corpus type (median per call)", rows)
    slower = [r for r in rows if r[2] > r[1] * 1.1]
    print(f"\ncorpus rows where ours is >10% slower: {len(slower)} of {len(rows)}")
    for r in slower:
        print("  slower:", r[0], f"{r[1] / r[2]:.2f}x")
