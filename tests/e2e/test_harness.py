"""The whole-system harness: every part starts as its own process, webhooks reach the web tier
with valid signatures, and no process outlives the harness (normal exit, SIGTERM, SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from storesync.demo.harness import running_system
from storesync.demo.processes import pid_alive

pytestmark = pytest.mark.timeout(120)


def _wait_all_dead(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def test_running_system_serves_webhooks_into_the_queue_and_stops_every_process(db):
    with running_system(db.dsn, children=1, products=4, workers=1, collections=2, child_overlap=1) as system:
        pids = system.pids()
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        assert httpx.get(f"{system.web_url}/readyz", trust_env=False).status_code == 200
        # The network file names every store with its location map by location name.
        child = system.network.merchants[0].children[0]
        assert child.shop == system.children[0]
        assert set(child.location_map) == set(system.locations[system.parent].values())
        # The parent's catalog: 4 products, 2 collections, stock at both locations.
        parent = system.snapshot(system.parent)
        assert len(parent["products"]) == 4 and len(parent["collections"]) == 2
        assert {lvl["location_id"] for lvl in parent["inventory_levels"]} == set(
            system.locations[system.parent].values()
        )
        # A sale in the child becomes a signed delivery the web tier accepts (recorded in Postgres).
        system.place_order(system.children[0], sku="DEMO-001-S", quantity=1)

        def accepted_orders() -> int:
            with db.connect() as conn:
                return conn.execute(
                    "SELECT count(*) FROM webhook_deliveries WHERE topic = 'orders/create' "
                    "AND status = 'accepted'"
                ).fetchone()[0]

        system.wait_until(accepted_orders, timeout=15, message="orders/create accepted by the web tier")
    assert _wait_all_dead(pids) == []


SCRIPT = textwrap.dedent("""
    import json, sys, time
    from storesync.demo.harness import running_system
    with running_system(sys.argv[1], children=1, products=2, workers=2, collections=1) as system:
        print(json.dumps(system.pids()), flush=True)
        time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_harness_stops_every_process_it_started(db, tmp_path: Path, sig):
    script = tmp_path / "hold.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), db.dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        pids = json.loads(line)
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert _wait_all_dead(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
