"""Speed on every supported CPython: the installed wheel (scripts/install-wheel.sh)
on 3.10-3.13, each interpreter measuring ours and upstream side by side
(benches/versions.py), with our figures also relative to 3.11's. The
interpreters take turns for three rounds and every cell keeps its fastest,
since one run of each, one after another, swung single cells by ~1.5x.

Run: make wheel && .venv/bin/python -m pytest benches/test_bench_versions.py -s
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benches._timing import fmt

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


ROUNDS = 3  # the interpreters take turns; each cell keeps its fastest round, for both savers


def test_speed_on_every_cpython() -> None:
    for version in VERSIONS:
        subprocess.run(["bash", "scripts/install-wheel.sh", version], cwd=ROOT, check=True)
    results: dict[str, dict] = {}
    for _ in range(ROUNDS):
        for version in VERSIONS:
            out = subprocess.run(
                [str(ROOT / f".venv-{version}" / "bin" / "python"), "-m", "benches.versions"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            got = json.loads(out.strip().splitlines()[-1])
            best = results.setdefault(version, got)
            for case, (up, ours) in got["rows"].items():
                best_up, best_ours = best["rows"][case]
                best["rows"][case] = (min(up, best_up), min(ours, best_ours))
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
