"""`storesync serve` (real uvicorn processes) and `storesync deliveries list|show`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.pgbouncer import free_port
from tests.web.conftest import CHILD, OTHER_PARENT, PARENT, SECRETS, serving, webhook


def _network_toml() -> str:
    def store(table: str, shop: str) -> str:
        secrets = ", ".join(f'"{s}"' for s in SECRETS[shop])
        return (
            f'{table}\nshop = "{shop}"\nadmin_api_url = "http://127.0.0.1:1/{shop}/admin/api/2026-10/graphql.json"\n'
            f'access_token = "token"\nwebhook_secrets = [{secrets}]\n'
        )

    return (
        '[[merchants]]\nid = "acme"\n'
        + store("[merchants.parent]", PARENT)
        + store("[[merchants.children]]", CHILD)
        + '[[merchants]]\nid = "globex"\n'
        + store("[merchants.parent]", OTHER_PARENT)
    )


def _accepted(metrics_text: str) -> float:
    return sum(
        s.value
        for fam in text_string_to_metric_families(metrics_text)
        for s in fam.samples
        if s.name == "storesync_webhook_deliveries_total" and s.labels["outcome"] == "accepted"
    )


def test_serve_with_two_workers_ingests_and_reports_metrics_summed_over_workers(db, tmp_path: Path) -> None:
    config = tmp_path / "storesync.toml"
    config.write_text(_network_toml())
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db.dsn,
        "STORESYNC_CONFIG_FILE": str(config),
        "STORESYNC_LOG_LEVEL": "warning",
    }
    for name in ("DATABASE_DIRECT_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    ops_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "storesync", "serve", "--port", str(port), "--workers", "2"),
            *("--ops-port", str(ops_port)),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "storesync serve did not become ready"
            time.sleep(0.2)
        for n in range(10):
            headers, raw = webhook("orders/create", {"id": n}, shop=CHILD)
            # A new connection each time, so the kernel spreads them over both workers.
            assert (
                httpx.post(base + "/webhooks/shopify", content=raw, headers=headers, timeout=10).status_code
                == 200
            )
        # The ops listener (in the supervising process) reports all ten, whichever worker took them;
        # the webhook port serves no metrics.
        assert httpx.get(base + "/metrics", timeout=10).status_code == 404
        scrapes = [httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=10).text for _ in range(4)]
        assert [_accepted(text) for text in scrapes] == [10.0] * 4
        # Database-wide gauges are not per process: every scrape reports the ten jobs once.
        for text in scrapes:
            queued = [
                s.value
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
                if s.name == "storesync_queue_jobs" and s.labels == {"state": "queued", "lane": "inventory"}
            ]
            assert queued == [10.0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, proc.stderr.read()
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 10


def test_deliveries_list_shows_what_was_kept_for_operators(db) -> None:
    with serving(db.settings) as s:
        for topic, body in (("customers/create", b'{"id": 1}'), ("products/update", b"not json")):
            headers, raw = webhook(topic, body, webhook_id=f"kept-{topic}")
            assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    # In a subprocess: the CLI configures process-wide logging, which must not leak into other tests.
    env = {**os.environ, "DATABASE_URL": db.dsn, "COLUMNS": "200"}
    env.pop("DATABASE_DIRECT_URL", None)

    def storesync(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "storesync", *args], env=env, capture_output=True, timeout=60
        )

    listed = storesync("deliveries", "list", "--status", "unparseable")
    assert listed.returncode == 0, listed.stderr
    assert b"kept-products/update" in listed.stdout and b"kept-customers/create" not in listed.stdout
    everything = storesync("deliveries", "list")
    assert b"kept-customers/create" in everything.stdout and b"ignored" in everything.stdout
    theirs = storesync("deliveries", "list", "--store", "nobody.myshopify.com")
    assert theirs.returncode == 0 and b"kept-" not in theirs.stdout and b"0 deliveries" in theirs.stdout
    assert b"kept-customers/create" in storesync("deliveries", "list", "--store", PARENT).stdout
    shown = storesync("deliveries", "show", "kept-products/update")
    assert shown.returncode == 0 and shown.stdout.rstrip(b"\n") == b"not json"
    bad = storesync("deliveries", "list", "--status", "lost")
    assert bad.returncode == 2 and b"--status must be" in bad.stderr
