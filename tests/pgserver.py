"""A throwaway PostgreSQL cluster for the tests and benchmarks.

``cluster()`` runs Debian's ``initdb`` in a temp dir (as the ``postgres`` user
when we are root: the server refuses to run as root), starts the server on a
free loopback port with its socket in that dir, yields a connection URI and
stops and deletes everything afterwards. ``scripts/system-deps.sh`` installs
the ``postgresql`` package when it is missing. ``FC_PG_URI`` points the suite
at an existing server instead.

Run as a script it starts a cluster, prints the URI and waits for Ctrl-C.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL server binaries not found: run scripts/system-deps.sh (installs postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cluster(*, durable: bool = False) -> Iterator[str]:
    """A running server's URI. ``durable=False`` turns fsync off (tests only
    kill clients, never the server); benchmarks use the defaults."""
    if uri := os.environ.get("FC_PG_URI"):
        yield uri
        return
    bin_ = bindir()
    tmp = tempfile.mkdtemp(prefix="fc-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(tmp, "data"), os.path.join(tmp, "log")
    port = _free_port()
    options = f"-k {tmp} -h 127.0.0.1 -p {port} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        subprocess.run(
            [*run_as, f"{bin_}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True,
            capture_output=True,
        )
        started = subprocess.run(
            [*run_as, f"{bin_}/pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
            capture_output=True,
        )
        if started.returncode != 0:
            with open(log) as f:
                raise RuntimeError(f"PostgreSQL did not start: {started.stderr.decode()}\n{f.read()}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(
                [*run_as, f"{bin_}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True
            )
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def database(server_uri: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards): its URI."""
    import uuid

    import psycopg

    name = f"fc_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_uri, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server_uri.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_uri, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    import time

    with cluster() as uri:
        print(uri, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
