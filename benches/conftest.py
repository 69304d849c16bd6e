"""Benchmarks print their tables; with ``FC_BENCH_REPORT=path`` (``make bench``)
each test's output is also collected and the whole run written to that file
(docs/benchmarks.md): what ran, where, and the tables as printed. The run then
lists every ratio that moved by more than 20% against the report it replaced
(``benches/_compare.py``)."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches._compare import THRESHOLD, moved  # noqa: E402

_REPORT = os.environ.get("FC_BENCH_REPORT")
_sections: list[tuple[str, str, str]] = []  # (test id, its doc's first paragraph, output)


@pytest.fixture(autouse=True)
def _collect(request, capsys) -> Iterator[None]:
    """Keeps a test's output for the report (with ``-s``, as ``make bench``
    runs them, it is shown as it is printed too)."""
    yield
    if _REPORT is None:
        return
    out = capsys.readouterr().out
    doc = request.function.__doc__ or request.module.__doc__ or ""
    first_paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    _sections.append((request.node.nodeid, first_paragraph, out.strip("\n")))


def pytest_sessionfinish(session, exitstatus) -> None:
    if _REPORT is None or not _sections:
        return
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (every benchmark in `benches/`, upstream and ours side by side",
        "in the same process on the same data); do not edit by hand.",
        "",
        f"- run: {datetime.date.today().isoformat()}, pytest exit status {int(exitstatus)}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- CPython {platform.python_version()}",
        "- durability: each table states it; upstream SqliteSaver runs WAL with synchronous FULL,",
        "  ours defaults to WAL with synchronous NORMAL (FULL shown beside it where it matters)",
        "",
    ]
    for nodeid, doc, out in _sections:
        lines += [f"## `{nodeid}`", ""]
        if doc:
            lines += [doc, ""]
        lines += ["```", out or "(no output)", "```", ""]
    report = Path(_REPORT)
    before = report.read_text() if report.exists() else ""
    after = "\n".join(lines)
    report.write_text(after)
    changes = moved(before, after)
    print(f"\n## Ratios that moved by more than {THRESHOLD:.0%} against the previous {report.name}")
    print("\n".join(changes) if changes else "(none)")
