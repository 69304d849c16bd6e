"""This build of ours against an earlier one, at the same time on the same
data: put (median and p95 of the last 100) and get_tuple at 800 messages of
natural-like text on SqliteSaver, InMemorySaver and PostgresSaver (a
throwaway loopback server, default durable settings). The builds take turns,
each in a fresh process, for ``--rounds`` rounds (alternating which goes first).

Ratios against an old docs/benchmarks.md mix our changes with the machine's
mood (the same code has measured 2-3x slower on a slow day); this answers
"did our code get slower" alone.

Run: .venv/bin/python -m benches.baseline BASELINE.whl [--rounds 3]
(from the repository root; the wheel of any earlier commit, e.g. from
``maturin build --release --auditwheel skip`` in a worktree of it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches._workload import CONFIG, thread_checkpoints

BACKENDS = ("SqliteSaver", "InMemorySaver", "PostgresSaver")
FIGURES = ("put p50", "put p95", "get_tuple")


def measure(messages_file: Path, postgres_uri: str) -> dict[str, dict[str, float]]:
    """This process's build: each backend's figures, in seconds. Imports only
    public modules of ours, which every build has."""
    from fastcheckpoint.memory import InMemorySaver
    from fastcheckpoint.postgres import PostgresSaver
    from fastcheckpoint.sqlite import SqliteSaver

    messages = pickle.loads(messages_file.read_bytes())

    def run(saver) -> dict[str, float]:
        puts = []
        for args in thread_checkpoints(saver, messages):
            start = time.perf_counter()
            saver.put(*args)
            puts.append(time.perf_counter() - start)
        gc.collect()
        gets = []
        for _ in range(25):
            start = time.perf_counter()
            saver.get_tuple(CONFIG)
            gets.append(time.perf_counter() - start)
        last = sorted(puts[-100:])
        return {"put p50": statistics.median(last), "put p95": last[94], "get_tuple": statistics.median(gets)}

    out = {}
    with tempfile.TemporaryDirectory() as tmp, SqliteSaver.from_conn_string(f"{tmp}/db.sqlite") as saver:
        out["SqliteSaver"] = run(saver)
    out["InMemorySaver"] = run(InMemorySaver())
    with PostgresSaver.from_conn_string(postgres_uri) as saver:
        saver.setup()
        out["PostgresSaver"] = run(saver)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path, help="the earlier build's wheel")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MESSAGES", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return
    if args.wheel is None:
        parser.error("the baseline wheel is required")

    from fastcheckpoint._text import turn_messages
    from tests.pgserver import cluster, database

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp, cluster(durable=True) as server:
        baseline = Path(tmp) / "baseline"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(baseline), str(args.wheel)],
            check=True,
        )
        messages = Path(tmp) / "messages.pickle"
        messages.write_bytes(pickle.dumps([m for t in range(200) for m in turn_messages(t)]))
        runs: dict[str, list[dict]] = {"this build": [], "baseline": []}
        builds = [("this build", None), ("baseline", baseline)]
        for round_ in range(args.rounds):
            # Alternate which goes first: the server may still be busy with the round before.
            for build, path in builds if round_ % 2 == 0 else builds[::-1]:
                env = dict(os.environ)
                if path is not None:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
                with database(server) as uri:
                    child = subprocess.run(
                        [sys.executable, "-m", "benches.baseline", "--child", str(messages), uri],
                        env=env,
                        cwd=root,
                        capture_output=True,
                        text=True,
                    )
                if child.returncode:
                    sys.exit(f"{build} failed:\n{child.stderr}")
                runs[build].append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(
        f"## This build against {args.wheel.name}, {args.rounds} rounds in turns (median of rounds; every round);"
        " SQLite at synchronous NORMAL, Postgres with durable defaults"
    )
    print(f"{'backend':14} {'figure':10} {'this':>9} {'baseline':>9} {'this / baseline':>16}")
    for backend in BACKENDS:
        for figure in FIGURES:
            this, base = ([r[backend][figure] * 1e3 for r in runs[b]] for b in ("this build", "baseline"))
            ratio = statistics.median(this) / statistics.median(base)
            print(
                f"{backend:14} {figure:10} {statistics.median(this):>7.3f}ms {statistics.median(base):>7.3f}ms"
                f" {ratio:>15.2f}x   this {sorted(round(x, 3) for x in this)}, baseline"
                f" {sorted(round(x, 3) for x in base)}"
            )


if __name__ == "__main__":
    main()
