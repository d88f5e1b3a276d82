"""A real PgBouncer in transaction mode in front of a Postgres server (Debian's `pgbouncer`), as
docs/operations.md tells people to deploy: tests, the e2e suite's production layout and
bench/chaos use it. `PgBouncer` can be stopped (immediately, as a crash would) and started
again on the same port; `run_pgbouncer` is the one-shot context manager."""

from __future__ import annotations

import contextlib
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


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if not found:
        # make test installs it (scripts/install-system-deps.sh); a missing binary is a setup error.
        raise RuntimeError("pgbouncer is not installed: run `make test` (it installs Debian's pgbouncer)")
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


class PgBouncer:
    """PgBouncer (pool_mode=transaction) for every database of one server, on a fixed loopback
    port: `dsn(dbname)` reaches a database through it; `admin()` is its console (SHOW ...)."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str | None,
        *,
        pool_size: int = 5,
        max_client_conn: int = 500,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """`settings` replace or add [pgbouncer] settings (e.g. a deployment's own); where it
        listens and the files it writes stay this object's."""
        self.host, self.port, self.user, self.password = host, port, user, password
        self.workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.workdir.chmod(0o777)
        self.listen_port = free_port()
        self.log_path = self.workdir / "pgbouncer.log"
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        (self.workdir / "userlist.txt").write_text(f'"{user}" "{password or ""}"\n')
        backend = f"host={host} port={port} user={user}" + (f" password={password}" if password else "")
        ini = {
            "auth_type": "trust",
            "admin_users": user,
            "pool_mode": "transaction",
            "default_pool_size": str(pool_size),
            "max_client_conn": str(max_client_conn),
            "ignore_startup_parameters": "extra_float_digits",
            **(settings or {}),
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.listen_port),
            "unix_socket_dir": "",
            "auth_file": f"{self.workdir}/userlist.txt",
            "logfile": str(self.log_path),
            "pidfile": f"{self.workdir}/pgbouncer.pid",
        }
        (self.workdir / "pgbouncer.ini").write_text(
            f"[databases]\n* = {backend}\n[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in ini.items())
        )
        for f in self.workdir.iterdir():
            f.chmod(0o666)

    def dsn(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.listen_port,
            user=self.user,
            dbname=dbname,
            password=self.password or None,
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        cmd = [pgbouncer_binary()]
        run_as = _run_as(self.host)
        if run_as:
            cmd += ["-u", run_as]
        cmd.append(str(self.workdir / "pgbouncer.ini"))
        # Its output to a file, never a pipe: a long run's log lines would fill a pipe nobody
        # reads, and PgBouncer would block on it.
        with open(self.workdir / "stderr.log", "ab") as out:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # The console answers once PgBouncer listens (no server connection needed).
                self.admin("SHOW VERSION")
                return
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    logs = [self.workdir / "stderr.log", self.log_path]
                    text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{text[-3000:]}") from None
                time.sleep(0.05)

    def stop(self, *, immediate: bool = True) -> None:
        """SIGTERM: an immediate shutdown, every client connection cut (SIGINT would wait for
        them to finish their transactions)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM if immediate else signal.SIGINT)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop at once, stay down `down_s` seconds, start again on the same port."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()
        self.restarts += 1

    def admin(self, command: str) -> list[dict]:
        """A command on PgBouncer's console (`SHOW CLIENTS`, `SHOW STATS`...): rows as dicts."""
        with psycopg.connect(
            self.dsn("pgbouncer"), autocommit=True, connect_timeout=2, prepare_threshold=None
        ) as conn:
            cur = conn.execute(command, prepare=False)
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def running_pgbouncer(
    host: str,
    port: int,
    user: str,
    password: str | None,
    *,
    pool_size: int = 5,
    settings: Mapping[str, str] | None = None,
) -> Iterator[PgBouncer]:
    """A started `PgBouncer`, stopped and its files removed on the way out."""
    bouncer = PgBouncer(host, port, user, password, pool_size=pool_size, settings=settings)
    try:
        bouncer.start()
        yield bouncer
    finally:
        with contextlib.suppress(Exception):
            bouncer.close()


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
    `settings` replace or add [pgbouncer] settings (e.g. a deployment's own)."""
    with running_pgbouncer(host, port, user, password, pool_size=pool_size, settings=settings) as bouncer:
        yield bouncer.dsn(dbname)
