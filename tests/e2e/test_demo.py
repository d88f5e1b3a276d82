"""`storesync demo` as a user runs it: a subprocess on the test database (DATABASE_URL)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from storesync.demo.harness import pid_alive

SHOPS = ("parent.myshopify.com", "child-a.myshopify.com", "child-b.myshopify.com", "child-c.myshopify.com")


def _demo_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORESYNC_", "DATABASE_"))}
    return {**env, "DATABASE_URL": dsn, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}


@pytest.mark.timeout(200)
def test_demo_plays_the_story_and_ends_with_every_store_agreeing(db):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "storesync", "demo"], env=_demo_env(db.dsn), capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"demo exited {done.returncode} after {took:.0f}s:\n{out}\n{done.stderr[-3000:]}"
    table = out[out.index("stores compared with the parent"):]
    rows = {shop: line for line in table.splitlines() for shop in SHOPS if shop in line}
    assert set(rows) == set(SHOPS), table
    hashes = {re.search(r"\b[0-9a-f]{12}\b", line).group(0) for line in rows.values()}  # type: ignore[union-attr]
    assert len(hashes) == 1, table  # one catalog hash for all four stores
    assert all("yes" in line for line in rows.values()), table
    assert "all 4 stores agree" in out


@pytest.mark.timeout(120)
def test_ctrl_c_during_the_demo_stops_every_process_it_started(db):
    proc = subprocess.Popen([sys.executable, "-m", "storesync", "demo"], env=_demo_env(db.dsn),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("processes:"):
                pids = [int(p) for p in re.findall(r"=(\d+)", line)]
                break
        assert len(pids) == 4, "".join(seen)
        assert all(pid_alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=40)
        assert proc.returncode == 130 and "interrupted" in rest, rest  # stopped by the signal, not done
        deadline = time.monotonic() + 15
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in pids if pid_alive(p)] == [], rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
