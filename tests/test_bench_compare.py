"""``make bench``'s comparison with the previous report (benches/_compare.py)."""

from __future__ import annotations

from benches._compare import moved

BEFORE = """# Benchmarks

## `benches/test_a.py::test_one`

```
case            upstream   ours  speed-up
put, median      4.00 ms   100 µs  40.0x
put, median      4.00 ms   100 µs  40.0x
get_tuple        9.00 ms   3.00 ms  3.0x
size             1,200x smaller
```

## `benches/test_b.py::test_two`

```
get_tuple        9.00 ms   3.00 ms  3.0x
```
"""


# The second "put, median" row fell 25%, test_two's get_tuple rose 50%; the
# rest moved by less than 20% (test_one's get_tuple 10%, the size 8%).
AFTER = """# Benchmarks

## `benches/test_a.py::test_one`

```
case            upstream   ours  speed-up
put, median      4.00 ms   100 µs  40.0x
put, median      4.00 ms   133 µs  30.0x
get_tuple        9.00 ms   2.70 ms  3.3x
size             1,100x smaller
```

## `benches/test_b.py::test_two`

```
get_tuple  9 ms  2 ms  4.5x
```
"""


def test_ratios_that_moved_past_the_threshold_are_listed_by_row() -> None:
    lines = moved(BEFORE, AFTER)
    assert len(lines) == 2, lines
    assert lines[0].startswith("FELL 40x -> 30x (0.75) in benches/test_a.py::test_one: put, median")
    assert lines[1].startswith("rose 3x -> 4.5x (1.50) in benches/test_b.py::test_two: get_tuple")


def test_nothing_moved_and_new_rows_are_skipped() -> None:
    assert moved(BEFORE, BEFORE) == []
    assert moved("", BEFORE) == []
