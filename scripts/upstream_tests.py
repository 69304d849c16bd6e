"""Upstream's own saver tests, run against our classes.

The sdists of langgraph-checkpoint, -sqlite and -postgres on PyPI ship their
``tests/``. This fetches the sdists of the versions installed in the
interpreter running it, unpacks them in a temp dir, installs their test
dependencies, and runs each package's saver and serializer tests with
``scripts/upstream_swap.py`` loaded: LangGraph's ``InMemorySaver``,
``SqliteSaver``, ``AsyncSqliteSaver``, ``PostgresSaver``,
``AsyncPostgresSaver`` and ``JsonPlusSerializer`` are ours there. The
Postgres tests run against a throwaway cluster (``tests/pgserver.py``). No
upstream code is kept in this repository.

Usage: ``python scripts/upstream_tests.py`` (exit status: pytest's, failing
when a package collects no test).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pgserver import cluster  # noqa: E402

# Each package's test dependency group, as far as its saver tests need it.
TEST_DEPENDENCIES = ["pytest-mock", "dataclasses-json", "numpy", "pandas", "pycryptodome", "aiosqlite"]

# Per package: its test files that are not saver or serializer tests (LangGraph's
# stores and caches, which we do not replace).
PACKAGES: dict[str, list[str]] = {
    "langgraph-checkpoint": ["tests/test_store.py", "tests/test_redis_cache.py"],
    "langgraph-checkpoint-sqlite": ["tests/test_store.py", "tests/test_async_store.py", "tests/test_ttl.py"],
    "langgraph-checkpoint-postgres": ["tests/test_store.py", "tests/test_async_store.py"],
}


def fetch(dist: str, into: Path) -> Path:
    """The unpacked sdist of the installed version of ``dist``."""
    version = importlib.metadata.version(dist)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(into),
            f"{dist}=={version}",
        ],
        check=True,
    )
    name = dist.replace("-", "_")
    (archive,) = into.glob(f"{name}-{version}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / f"{name}-{version}"


def main() -> int:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *TEST_DEPENDENCIES], check=True)
    status = 0
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fc-upstream-")))
        pg_uri = stack.enter_context(cluster())
        for dist, skipped in PACKAGES.items():
            source = fetch(dist, work)
            env = {
                **os.environ,
                # Upstream's `tests` package, not ours, must be importable.
                "PYTHONPATH": str(ROOT / "scripts"),
                "FC_UPSTREAM_PG_URI": pg_uri,
            }
            args = ["-p", "upstream_swap", "-q", "-p", "no:cacheprovider", "tests"]
            args += [f"--ignore={f}" for f in skipped]
            print(f"== {dist} {importlib.metadata.version(dist)}: upstream's tests, our classes", flush=True)
            rc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=source, env=env).returncode
            if rc == 5:
                print(f"{dist}: no tests collected", file=sys.stderr)
            status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
