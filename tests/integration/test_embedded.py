"""The embedded server: shared by processes, stopped by the last one, robust to kill -9 and SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from storesync.db.embedded import EmbeddedPostgres

HOLD = """
import sys, time
from storesync.db.embedded import EmbeddedPostgres, own_signals
with own_signals():
    print(EmbeddedPostgres(__import__('pathlib').Path(sys.argv[1])).start(), flush=True)
    time.sleep(120)
"""
START_AND_EXIT = """
import sys
from storesync.db.embedded import EmbeddedPostgres
print(EmbeddedPostgres(__import__('pathlib').Path(sys.argv[1])).start(), flush=True)
"""


def _spawn(script: str, pgdata: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(pgdata)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_stopped(emb: EmbeddedPostgres, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not emb.status().running:
            return True
        time.sleep(0.1)
    return False


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pgdata():
    # Not under pytest's tmp_path: pytest keeps its base directory 0700 (and re-applies that when
    # another session starts), so the unprivileged server user could not reach it.
    path = ROOT / ".storesync" / f"test-embedded-{uuid.uuid4().hex[:10]}" / "pgdata"
    path.parent.mkdir(parents=True)
    yield path
    EmbeddedPostgres(path).stop()
    shutil.rmtree(path.parent, ignore_errors=True)


def test_kill_9_of_the_owner_leaves_nothing_that_blocks_the_next_run(pgdata: Path) -> None:
    owner = _spawn(HOLD, pgdata)
    dsn = owner.stdout.readline().strip()
    assert dsn, owner.stderr.read()
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE survived (id int)")
        conn.commit()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    emb = EmbeddedPostgres(pgdata)
    assert owner.pid in emb._read_handles()  # the dead owner is still registered...

    nxt = _spawn(START_AND_EXIT, pgdata)
    _out, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, err
    # ...the next run pruned it, reused the orphaned server with its data, and as the last user stopped it.
    assert owner.pid not in emb._read_handles()
    assert _wait_stopped(emb)
    again = _spawn(START_AND_EXIT, pgdata)
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    emb.start()
    with psycopg.connect(emb.url()) as conn:
        assert conn.execute("SELECT to_regclass('survived')").fetchone()[0] == "survived"
        assert conn.execute("SHOW max_connections").fetchone()[0] == "300"  # our settings applied


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_of_the_only_user_stops_the_server(pgdata: Path, sig: signal.Signals) -> None:
    owner = _spawn(HOLD, pgdata)
    assert owner.stdout.readline().strip(), owner.stderr.read()
    emb = EmbeddedPostgres(pgdata)
    assert emb.status().running
    owner.send_signal(sig)
    owner.wait(30)
    assert _wait_stopped(emb)


def test_server_outlives_a_user_while_another_still_uses_it(pgdata: Path) -> None:
    first = _spawn(HOLD, pgdata)
    dsn = first.stdout.readline().strip()
    second = _spawn(START_AND_EXIT, pgdata)
    second.communicate(timeout=60)
    emb = EmbeddedPostgres(pgdata)
    assert emb.status().running
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    first.send_signal(signal.SIGTERM)
    first.wait(30)
    assert _wait_stopped(emb)


def test_db_cli_start_url_status_stop(pgdata: Path) -> None:
    env = {**os.environ, "STORESYNC_PGDATA": str(pgdata)}
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "storesync", "db"]
    try:
        started = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        url = subprocess.run(
            [*cli, "url"], env=env, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        # Detached: the server keeps running after `db start` exited, and psql accepts the url.
        psql = subprocess.run(
            ["psql", url, "-tAc", "SELECT current_database()"], capture_output=True, text=True
        )
        assert psql.stdout.strip() == "storesync", psql.stderr
        assert subprocess.run([*cli, "status"], env=env, capture_output=True, timeout=30).returncode == 0
    finally:
        stopped = subprocess.run([*cli, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.stdout.strip() == "stopped", stopped.stderr
    assert subprocess.run([*cli, "status"], env=env, capture_output=True, timeout=30).returncode == 1
    assert subprocess.run([*cli, "url"], env=env, capture_output=True, timeout=30).returncode == 1


def test_db_commands_refuse_when_database_url_is_set() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://u@h/d"}
    res = subprocess.run(
        [sys.executable, "-m", "storesync", "db", "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "DATABASE_URL is set" in res.stderr


def test_only_the_servers_own_user_can_reach_its_socket(pgdata: Path) -> None:
    """The cluster trusts whoever connects; the socket is owner-only, so other OS users cannot."""
    emb = EmbeddedPostgres(pgdata)
    emb.start(detached=True)
    status = emb.status()
    socket_path = Path(status.socket_dir) / ".s.PGSQL.5432"
    assert socket_path.is_socket()
    assert socket_path.stat().st_mode & 0o777 == 0o700
