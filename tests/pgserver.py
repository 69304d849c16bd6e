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
import time
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
def pgbouncer(server_uri: str, *, pool_size: int = 4) -> Iterator[str]:
    """A PgBouncer in transaction pooling mode in front of ``server_uri``, on a
    free loopback port, stopped (by its PID) and deleted afterwards: yields the
    URI that reaches the same database through it. ``pool_size`` server
    connections per database are shared by every client, as in production."""
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(exe):
        raise RuntimeError("pgbouncer not found: run scripts/system-deps.sh (installs pgbouncer)")
    target = server_uri.split("@", 1)[1]  # host:port/dbname
    host_port, dbname = target.split("/", 1)
    host, port = host_port.rsplit(":", 1)
    tmp = tempfile.mkdtemp(prefix="fc-pgbouncer-")
    as_user: dict = {}
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    listen = _free_port()
    ini = os.path.join(tmp, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write(
            "[databases]\n"
            f"* = host={host} port={port} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir = {tmp}\n"
            "auth_type = any\npool_mode = transaction\nadmin_users = postgres\n"
            "log_connections = 0\nlog_disconnections = 0\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {tmp}/pgbouncer.log\npidfile = {tmp}/pgbouncer.pid\n"
        )
    os.chmod(ini, 0o644)
    # Started directly (not through runuser), so the PID we stop is pgbouncer's.
    # Its log goes to the file only: an unread pipe would fill and stall it.
    proc = subprocess.Popen([exe, "-q", ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_user)
    log = os.path.join(tmp, "pgbouncer.log")
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    with open(log) as f:
                        raise RuntimeError(f"pgbouncer did not start: {f.read()}") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("pgbouncer did not listen within 10 s")
        yield f"postgresql://postgres@127.0.0.1:{listen}/{dbname}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
    with cluster() as uri:
        print(uri, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
