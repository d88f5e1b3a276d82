"""`storesync demo` as a user runs it: a subprocess on the test database (DATABASE_URL)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import httpx
import pytest

from storesync.demo.processes import pid_alive

SHOPS = ("parent.myshopify.com", "child-a.myshopify.com", "child-b.myshopify.com", "child-c.myshopify.com")


def _demo_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORESYNC_", "DATABASE_"))}
    return {**env, "DATABASE_URL": dsn, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}


@pytest.mark.timeout(220)
def test_demo_plays_the_story_and_ends_with_every_store_agreeing(db):
    """The stores connect by client credentials, with tokens that expire every 4 (scaled)
    seconds: the story crosses many refreshes, and no store is paused, no job dead. With
    --keep the system stays up: its dashboard (signed in with the printed token) and `storesync
    status` (with the printed environment) show every store in step, until Ctrl-C."""
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "storesync", "demo", "--keep", "--token-time-scale", "5e-5"],
        env=_demo_env(db.dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("  storesync status") or time.monotonic() - started > 180:
                break
        out = "".join(lines)
        assert "sign in with:" in out, (
            f"demo ended early:\n{out}\n{demo.stderr.read()[-3000:] if demo.poll() is not None else ''}"
        )  # type: ignore[union-attr]
        url = re.search(r"dashboard:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        token = re.search(r"sign in with:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        page = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False)
        assert page.status_code == 200
        assert page.text.count('data-state="in step"') == 4, page.text[:2000]
        exported = re.search(r"export (.+)", out).group(1)  # type: ignore[union-attr]
        env = {
            **_demo_env(db.dsn),
            **{k: v.strip("'") for k, _, v in (p.partition("=") for p in shlex.split(exported))},
        }
        status = subprocess.run(
            [sys.executable, "-m", "storesync", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0 and "every store in step" in status.stdout, (
            status.stdout + status.stderr
        )
    finally:
        demo.send_signal(signal.SIGINT)
        rest, err = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    took = time.monotonic() - started
    assert demo.returncode == 0, f"demo exited {demo.returncode} after {took:.0f}s:\n{out}\n{err[-3000:]}"
    assert "stopping the demo system" in out
    table = out[out.index("stores compared with the parent") :]
    rows = {shop: line for line in table.splitlines() for shop in SHOPS if shop in line}
    assert set(rows) == set(SHOPS), table
    hashes = {re.search(r"\b[0-9a-f]{12}\b", line).group(0) for line in rows.values()}  # type: ignore[union-attr]
    assert len(hashes) == 1, table  # one catalog hash for all four stores
    assert all("yes" in line for line in rows.values()), table
    assert "all 4 stores agree" in out
    with db.connect() as conn:
        assert (
            conn.execute("SELECT shop_domain, status_reason FROM stores WHERE status = 'paused'").fetchall()
            == []
        )
        assert conn.execute("SELECT kind, errors FROM jobs WHERE state = 'dead'").fetchall() == []
        tokens = conn.execute(
            "SELECT kind, extract(epoch FROM access_token_expires_at - access_token_obtained_at), "
            "extract(epoch FROM now() - access_token_obtained_at) FROM store_credentials"
        ).fetchall()
    assert len(tokens) == 4 and {kind for kind, _, _ in tokens} == {"client_credentials"}
    # 4-second tokens, the last one obtained near the end of a story of well over 4 seconds.
    assert all(lifetime <= 5 for _, lifetime, _ in tokens), tokens


def _processes_with_env_value(value: str) -> list[int]:
    """Live processes whose environment mentions `value` (the demo's work dir is in every
    environment the demo gives its processes: STORESYNC_CONFIG_FILE)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_alive(int(entry)):
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if value.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.timeout(150)
def test_ctrl_c_during_the_initial_sync_stops_every_process_the_demo_started(db):
    proc = subprocess.Popen(
        [sys.executable, "-m", "storesync", "demo"],
        env=_demo_env(db.dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    pids: list[int] = []
    workdir = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        seen = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if workdir is None and (m := re.search(r"logs in (\S+?)/?$", line.strip())):
                workdir = m.group(1)
            if line.startswith("processes:"):
                pids = [int(p) for p in re.findall(r"=(\d+)", line)]
            if "2. initial sync" in line:  # the backfill command runs too now
                break
        assert len(pids) == 4 and workdir, "".join(seen)
        time.sleep(1.0)
        assert all(pid_alive(p) for p in pids), "".join(seen)
        # 2 workers, web, backfill (the emulator runs without the network file; its pid is in pids)
        assert len(_processes_with_env_value(workdir)) >= 4
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=40)
        assert proc.returncode == 130 and "interrupted" in rest, rest  # stopped by the signal, not done
        deadline = time.monotonic() + 15
        while _processes_with_env_value(workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_with_env_value(workdir) == [], rest
        assert [p for p in pids if pid_alive(p)] == [], rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(60)
def test_demo_refuses_a_database_url_that_holds_work_and_changes_nothing(db):
    from storesync.queue.enqueue import JobSpec, enqueue

    with db.connect() as conn:
        enqueue(conn, JobSpec("queue.noop", {}, group="someone"))
        conn.commit()
    done = subprocess.run(
        [sys.executable, "-m", "storesync", "demo"],
        env=_demo_env(db.dsn),
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs an empty database" in done.stdout
    assert "processes:" not in done.stdout  # nothing was started
    with db.connect() as conn:
        assert conn.execute("SELECT kind FROM jobs").fetchall() == [("queue.noop",)]
