"""One SQLite library by construction, on every kind of ``sqlite3`` users run.

The installed ``_native`` links no SQLite; it binds at run time to the library
Python's ``sqlite3`` uses (``fastcheckpoint.sqlite._library``). Each
configuration below runs in a child process (tests/sqlite_route_child.py):

* the interpreter's own ``sqlite3`` (a shared ``libsqlite3``);
* a ``sqlite3`` whose SQLite is linked statically into its extension module
  and invisible to every other library (pysqlite3-binary standing in for the
  standard library's, as python-build-standalone's is), on each route:
  its own symbols, our module loaded as an extension, and I/O through
  ``sqlite3`` itself (what is left where neither works).

And the check that guards all of it must be able to fail: a deliberately
mis-built ``_native`` carrying a second SQLite is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastcheckpoint import _native
from fastcheckpoint.sqlite import _library
from tests import static_sqlite3 as static_sqlite3_module

ROOT = Path(__file__).resolve().parent.parent
# `make test` builds the mis-built variant (cargo feature `second-sqlite`) here.
SECOND_SQLITE_BUILD = ROOT / "target" / "second-sqlite"


def static_sqlite3(tmp_path: Path) -> Path:
    if not static_sqlite3_module.available():
        if os.environ.get("CI"):
            pytest.fail("pysqlite3-binary is missing: the test extras install it")
        pytest.skip("pysqlite3-binary is not installed")
    return static_sqlite3_module.shim(tmp_path)


def run_child(tmp_path: Path, *args: str, path_first: Path | None = None, route: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (path_first, ROOT) if p is not None)
    env.pop("FASTCHECKPOINT_SQLITE_ROUTE", None)
    if route:
        env["FASTCHECKPOINT_SQLITE_ROUTE"] = route
    done = subprocess.run(
        [sys.executable, "-m", "tests.sqlite_route_child", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_works(report: dict) -> None:
    assert report["version"] == report["python_version"]
    # The put waited for Python's sqlite3 to commit (0.6 s), then landed.
    assert report["waited"] >= 0.5, report
    assert report["sync"] == [f"sync turn {i}" for i in range(12)]
    assert report["async"] == [f"async {i}" for i in range(12)]
    assert report["both"] == {t: [f"{t} turn {i}" for i in range(12)] for t in ("mine", "other")}
    assert report["integrity"] == "ok"


def test_native_links_no_sqlite_and_imports_where_none_is_loaded() -> None:
    dynamic = subprocess.run(["readelf", "-d", _native.__file__], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed and not [n for n in needed if "sqlite" in n], needed
    code = (
        "import sys, fastcheckpoint._native as n\n"
        "from fastcheckpoint.memory import InMemorySaver; InMemorySaver()\n"
        "from fastcheckpoint.serde import RustSerializer\n"
        "s = RustSerializer(); assert s.loads_typed(s.dumps_typed({'a': [1, 'x']})) == {'a': [1, 'x']}\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert sys.modules['sqlite3'] is None\n"
        "assert 'sqlite' not in maps, [line for line in maps.splitlines() if 'sqlite' in line]\n"
        "assert n.sqlite_binding() is None\n"
    )
    # A Python with no sqlite3 at all: the in-memory saver and the serializer still work.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['sqlite3'] = None\n" + code],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("route", [None, "extension"])
def test_the_interpreters_own_sqlite3(tmp_path, route) -> None:
    import sqlite3

    if route == "extension" and not hasattr(sqlite3.Connection, "enable_load_extension"):
        # pyenv's builds leave extension loading out (Debian's /usr/bin/python3 has it).
        pytest.skip("this interpreter's sqlite3 cannot load extensions")
    report = run_child(tmp_path, "check", str(tmp_path / "own.db"), route=route)
    assert report["route"] == (route or "symbols"), report
    assert_works(report)


@pytest.mark.parametrize("route", [None, "extension", "python"])
def test_a_statically_linked_sqlite3(tmp_path, route) -> None:
    """No configuration may end in TwoSqliteLibrariesError: the store reaches
    the static copy by its symbols, as an extension, or through sqlite3."""
    shim = static_sqlite3(tmp_path)
    report = run_child(tmp_path, "check", str(tmp_path / "static.db"), path_first=shim, route=route)
    assert "pysqlite3" in report["sqlite3_module"], report
    # No shared SQLite in the process, and none of its symbols visible globally.
    assert not [m for m in report["mapped"] if "libsqlite3" in m], report
    assert report["global_symbols"] is False
    assert report["route"] == (route or "symbols"), report
    assert_works(report)


def test_io_through_the_interpreters_own_sqlite3(tmp_path) -> None:
    report = run_child(tmp_path, "check", str(tmp_path / "own-python.db"), route="python")
    assert report["route"] == "python" and report["bound"] == "python"
    assert_works(report)


def test_an_unknown_route_is_a_config_error(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASTCHECKPOINT_SQLITE_ROUTE="nope")
    done = subprocess.run(
        [sys.executable, "-c", "from fastcheckpoint.sqlite import _library; _library.bind()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "ConfigError" in done.stderr and "must be one of" in done.stderr


def test_this_process_is_bound_to_pythons_sqlite() -> None:
    import sqlite3

    route = _library.bind()
    binding = _native.sqlite_binding()
    if route == "python":
        assert binding is None
    else:
        assert binding == (sqlite3.sqlite_version, route)


def test_a_build_with_a_second_sqlite_is_refused(tmp_path) -> None:
    """The one-SQLite check can fail: a _native that links its own (bundled)
    SQLite, beside the one Python's sqlite3 uses, must refuse every file."""
    if not (SECOND_SQLITE_BUILD / "fastcheckpoint").is_dir():
        if os.environ.get("CI"):
            pytest.fail("the second-SQLite build is missing: `make test` builds it")
        pytest.skip("the second-SQLite build is missing: run `make second-sqlite-build`")
    report = run_child(tmp_path, "open", str(tmp_path / "two.db"), path_first=SECOND_SQLITE_BUILD)
    assert report["opened"] is False, report
    assert report["error"] == "TwoSqliteLibrariesError", report
    assert "two different copies of the SQLite library" in report["message"]
    assert "route 'linked'" in report["message"]
