"""A real PgBouncer in transaction mode in front of the test server (Debian's `pgbouncer`)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if not found:
        # make test installs it (scripts/install-system-deps.sh); a missing binary is a setup error.
        pytest.fail("pgbouncer is not installed: run `make test` (it installs Debian's pgbouncer)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as(host: str) -> str | None:
    """PgBouncer refuses to run as root; run it as the user that may reach the server's socket."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


@contextmanager
def run_pgbouncer(
    host: str,
    port: int,
    user: str,
    password: str | None,
    dbname: str,
    *,
    pool_size: int = 5,
    settings: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Start PgBouncer (pool_mode=transaction) and yield a DSN for `dbname` through it.
    `settings` replace or add [pgbouncer] settings (e.g. a deployment's own); where it listens
    and the files it writes stay the test's."""
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    workdir.chmod(0o777)
    listen_port = free_port()
    (workdir / "userlist.txt").write_text(f'"{user}" "{password or ""}"\n')
    backend = f"host={host} port={port} user={user}" + (f" password={password}" if password else "")
    ini = {
        "auth_type": "trust",
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": "500",
        "ignore_startup_parameters": "extra_float_digits",
        **(settings or {}),
        "listen_addr": "127.0.0.1",
        "listen_port": str(listen_port),
        "unix_socket_dir": "",
        "auth_file": f"{workdir}/userlist.txt",
        "logfile": f"{workdir}/pgbouncer.log",
        "pidfile": f"{workdir}/pgbouncer.pid",
    }
    (workdir / "pgbouncer.ini").write_text(
        f"[databases]\n* = {backend}\n[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in ini.items())
    )
    for f in workdir.iterdir():
        f.chmod(0o666)
    cmd = [pgbouncer_binary()]
    run_as = _run_as(host)
    if run_as:
        cmd += ["-u", run_as]
    cmd.append(str(workdir / "pgbouncer.ini"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dsn = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=listen_port, user=user, dbname=dbname, password=password or None
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (workdir / "pgbouncer.log").read_text()
                        if (workdir / "pgbouncer.log").exists()
                        else ""
                    )
                    out = proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""
                    raise RuntimeError(f"pgbouncer did not start: {out}\n{log}") from None
                time.sleep(0.05)
        yield dsn
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
