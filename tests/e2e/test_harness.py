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


def test_production_layout_survives_a_killed_worker_a_restarted_web_tier_and_pgbouncer(db):
    """The harness runs the production layout (pooled path through PgBouncer in transaction mode,
    direct path to Postgres) and can crash and replace a worker, restart the web tier and
    restart PgBouncer; a sale made after all of that still reaches the parent through PgBouncer."""
    from tests.support.postgres import production_layout

    with (
        production_layout(db.server, db.name) as layout,
        running_system(
            layout.database_url,
            direct_url=layout.direct_url,
            children=1,
            products=2,
            workers=1,
            collections=1,
            child_overlap=2,
            overlap_stock=None,
        ) as system,
    ):
        assert system.env["DATABASE_DIRECT_URL"] == db.dsn
        system.cli("link", check=True)
        bouncer = layout.pgbouncer
        assert bouncer is not None
        assert [c for c in bouncer.admin("SHOW CLIENTS") if c["database"] == db.name]

        old = system.workers[0]
        fresh = system.replace_worker(wait=True)
        assert old.popen.returncode == -signal.SIGKILL and fresh.alive() and fresh.pid != old.pid
        web = system.process("web")
        system.restart_web()
        assert not web.alive() and system.process("web").alive()
        bouncer.restart()
        assert system.pids() and all(pid_alive(p) for p in system.pids())

        before = system.level(system.parent, "DEMO-001-S")
        system.place_order(system.children[0], sku="DEMO-001-S", quantity=1)
        system.wait_until(
            lambda: system.level(system.parent, "DEMO-001-S") == before - 1,
            timeout=30,
            message="the sale reached the parent",
        )
        # PgBouncer's counters started with its restart: the sale's work went through it.
        stats = {row["database"]: row for row in bouncer.admin("SHOW STATS")}
        assert stats[db.name]["total_xact_count"] > 0


def test_a_process_started_from_a_thread_that_ends_keeps_running(tmp_path: Path):
    """PR_SET_PDEATHSIG fires when the thread that forked the child ends: a worker replaced from a
    chaos run's thread must not get SIGTERM when that thread finishes."""
    import threading

    from storesync.demo.processes import ProcessSet

    processes = ProcessSet(tmp_path, {**os.environ, "STORESYNC_CONFIG_FILE": os.devnull})
    started = []
    thread = threading.Thread(
        target=lambda: started.append(
            processes.start("emulator", ["emulator", "--port", "0", "--store", "a.myshopify.com"])
        )
    )
    thread.start()
    thread.join()
    try:
        time.sleep(1.5)
        assert started[0].alive(), started[0].log_tail()
    finally:
        processes.stop_all(10)
