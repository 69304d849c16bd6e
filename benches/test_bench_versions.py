"""Speed on every supported CPython: the installed wheel (scripts/install-wheel.sh)
on 3.10-3.13, each interpreter measuring ours and upstream side by side
(benches/versions.py), with our figures also relative to 3.11's. The
interpreters take turns for three rounds and every cell keeps its fastest,
since one run of each, one after another, swung single cells by ~1.5x.

Each interpreter also runs the SqliteSaver rows with a ``sqlite3`` whose SQLite
is linked statically and loaded privately (tests/static_sqlite3.py, the shape
of python-build-standalone's), on each route to that library: its symbols, our
module loaded as an extension, I/O through ``sqlite3``.

Run: make wheel && .venv/bin/python -m pytest benches/test_bench_versions.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from benches._timing import fmt
from tests import static_sqlite3

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


# The interpreters take turns; each cell keeps its fastest round, for both savers.
ROUNDS = int(os.environ.get("FC_BENCH_ROUNDS", "3"))
STATIC_ROUTES = ("symbols", "extension", "python")


def run(version: str, shim: Path | None = None, route: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FASTCHECKPOINT_SQLITE_ROUTE"}
    args = []
    if shim is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(shim), str(ROOT)))
        env["FASTCHECKPOINT_SQLITE_ROUTE"] = route or ""
        args = ["--sqlite-only"]
    out = subprocess.run(
        [str(ROOT / f".venv-{version}" / "bin" / "python"), "-m", "benches.versions", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def keep_fastest(results: dict[str, dict], key: str, got: dict) -> None:
    best = results.setdefault(key, got)
    for case, (up, ours) in got["rows"].items():
        best_up, best_ours = best["rows"][case]
        best["rows"][case] = (min(up, best_up), min(ours, best_ours))


def test_speed_on_every_cpython() -> None:
    for version in VERSIONS:
        subprocess.run(["bash", "scripts/install-wheel.sh", version], cwd=ROOT, check=True)
    results: dict[str, dict] = {}
    routes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shim = static_sqlite3.shim(Path(tmp))
        for _ in range(ROUNDS):
            for version in VERSIONS:
                keep_fastest(results, version, run(version))
                for route in STATIC_ROUTES:
                    got = run(version, shim, route)
                    assert got["route"] == route, got
                    keep_fastest(routes, f"{version} {route}", got)
    print_versions(results)
    print_routes(results, routes)


def print_routes(results: dict[str, dict], routes: dict[str, dict]) -> None:
    print(
        "\n## SqliteSaver on a statically linked sqlite3 (pysqlite3-binary, SQLite "
        f"{routes[f'3.11 {STATIC_ROUTES[0]}'].get('sqlite', '')}), per route to its library: ours, "
        "upstream on the same sqlite3, speed-up; ours / ours on the interpreter's own sqlite3"
    )
    print(f"{'case':34} {'python':>8} {'route':>10} {'ours':>11} {'upstream':>11} {'speed-up':>9} {'vs own':>7}")
    for case in routes[f"3.11 {STATIC_ROUTES[0]}"]["rows"]:
        for version in VERSIONS:
            own = results[version]["rows"][case][1]
            for route in STATIC_ROUTES:
                up, ours = routes[f"{version} {route}"]["rows"][case]
                print(
                    f"{case:34} {version:>8} {route:>10} {fmt(ours):>11} {fmt(up):>11} {up / ours:8.1f}x "
                    f"{ours / own:6.2f}x"
                )


def print_versions(results: dict[str, dict]) -> None:
    base = results["3.11"]["rows"]
    print("\n## Per CPython version (installed wheel): ours, upstream, speed-up; ours / ours on 3.11")
    print(f"{'case':34} {'python':>8} {'ours':>11} {'upstream':>11} {'speed-up':>9} {'vs 3.11':>8}")
    for case in base:
        for version in VERSIONS:
            r = results[version]
            up, ours = r["rows"][case]
            print(
                f"{case:34} {r['python']:>8} {fmt(ours):>11} {fmt(up):>11} {up / ours:8.1f}x "
                f"{ours / base[case][1]:7.2f}x"
            )
