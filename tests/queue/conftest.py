"""Fixtures for queue tests: real `python -m storesync worker` subprocesses on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.queue_handlers import SETUP_SQL

ROOT = Path(__file__).resolve().parents[2]

# Short timings so the tests run fast: the production defaults are in QueueSettings. The lease
# stays well above the event-loop stalls a loaded 2-core machine causes (tests that need a
# short lease set their own).
FAST = {
    "STORESYNC_QUEUE_LEASE_SECONDS": "6",
    "STORESYNC_QUEUE_POLL_INTERVAL": "0.2",
    "STORESYNC_QUEUE_DRAIN_TIMEOUT": "2",
    "STORESYNC_QUEUE_BACKOFF_BASE": "0.05",
    "STORESYNC_QUEUE_BACKOFF_CAP": "0.2",
    "STORESYNC_QUEUE_SCHEDULER_INTERVAL": "0.1",
    # The test server is shared with other test sessions: few connections per worker.
    "STORESYNC_POOL_MAX_SIZE": "4",
}


class WorkerProc:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def qdb(db):
    """The test database with the test handlers' bookkeeping tables."""
    with db.connect(autocommit=True) as conn:
        conn.execute(SETUP_SQL)
    return db


@pytest.fixture
def spawn_worker(qdb, tmp_path) -> Iterator[Callable[..., WorkerProc]]:
    procs: list[WorkerProc] = []

    def spawn(
        *args: str, handlers: str = "tests.support.queue_handlers:registry", env: dict | None = None
    ) -> WorkerProc:
        log = tmp_path / f"worker{len(procs)}.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if "DIRECT_URL" not in k and not k.startswith("STORESYNC_QUEUE_")
        }
        full_env = {
            **base,
            **FAST,
            "DATABASE_URL": qdb.dsn,
            "PYTHONPATH": str(ROOT),
            "STORESYNC_LOG_FORMAT": "json",
            **(env or {}),
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "storesync", "worker", "--handlers", handlers, *args],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        w = WorkerProc(proc, log)
        procs.append(w)
        return w

    yield spawn
    for w in procs:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def scalar(dsn: str, sql: str, params: tuple = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None
