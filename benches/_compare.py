"""How a ``make bench`` run's ratios moved against the previous report
(docs/benchmarks.md): every ratio (a figure written ``12.3x``) that changed by
more than ``THRESHOLD``, row by row.

A row is matched by its section (the test's id) and its text with every
number blanked out, in order among rows that read the same; a row that
exists on one side only is skipped. Which way is better depends on the column
(a speed-up should rise, a size over the raw text should fall), so both
directions are listed, each marked.
"""

from __future__ import annotations

import re
from collections import defaultdict

THRESHOLD = 0.20
_RATIO = re.compile(r"(\d[\d,]*(?:\.\d+)?)x\b")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_SECTION = re.compile(r"^## `([^`]+)`\s*$")


def ratios(report: str) -> dict[tuple[str, str, int], list[float]]:
    """``(section, row shape, occurrence) -> the row's ratios`` of a report."""
    out: dict[tuple[str, str, int], list[float]] = {}
    seen: dict[tuple[str, str], int] = defaultdict(int)
    section = ""
    for line in report.splitlines():
        if m := _SECTION.match(line):
            section = m.group(1)
            continue
        found = [float(r.replace(",", "")) for r in _RATIO.findall(line)]
        if not section or not found:
            continue
        shape = " ".join(_NUMBER.sub("#", line).split())
        key = (section, shape)
        out[(section, shape, seen[key])] = found
        seen[key] += 1
    return out


def moved(before: str, after: str, threshold: float = THRESHOLD) -> list[str]:
    """One line per ratio that changed by more than ``threshold``."""
    old, new = ratios(before), ratios(after)
    lines = []
    for key, now in new.items():
        was = old.get(key)
        if was is None or len(was) != len(now):
            continue
        for i, (a, b) in enumerate(zip(was, now, strict=True)):
            if a > 0 and abs(b / a - 1) > threshold:
                section, shape, _ = key
                way = "FELL" if b < a else "rose"
                lines.append(f"{way} {a:g}x -> {b:g}x ({b / a:.2f}) in {section}: {shape} [ratio {i + 1}]")
    return sorted(lines, key=lambda line: not line.startswith("FELL"))
