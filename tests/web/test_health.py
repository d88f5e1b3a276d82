"""/healthz, /readyz, /metrics and refusing to start against a schema that is behind."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from storesync.config import Settings
from storesync.db.migrate import head_version
from tests.web.conftest import ROOT_DIR, serving, webhook


def test_healthz_answers_while_the_process_lives(served) -> None:
    r = httpx.get(served.url + "/healthz", timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_readyz_lists_each_check_and_is_ready_on_a_migrated_database(served) -> None:
    # The public port says ready or not, nothing more; the checks are on the ops listener.
    public = httpx.get(served.url + "/readyz", timeout=10)
    assert (public.status_code, public.json()) == (200, {"ready": True})
    r = httpx.get(served.ops_url + "/readyz", timeout=10)
    assert r.status_code == 200, r.text
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert r.json()["ready"] is True
    assert checks["pooled"]["ok"] and checks["direct"]["ok"]
    assert checks["schema"] == {
        "name": "schema",
        "ok": True,
        "current": head_version(),
        "head": head_version(),
    }
    # The queue's worker table exists (migration 0002); no worker runs in this test.
    assert checks["worker_heartbeat"]["informational"] and checks["worker_heartbeat"]["workers"] == 0


def test_readyz_is_503_when_the_schema_falls_behind(db, served) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (head_version(),))
    assert httpx.get(served.url + "/readyz", timeout=10).json() == {"ready": False}
    r = httpx.get(served.ops_url + "/readyz", timeout=10)
    assert r.status_code == 503
    schema = next(c for c in r.json()["checks"] if c["name"] == "schema")
    assert schema["ok"] is False and "storesync migrate" in schema["error"]


def test_readyz_is_503_when_the_direct_path_is_unreachable(db) -> None:
    with serving(db.settings) as s:
        # Break only the direct path while running: the app re-reads settings on each check.
        s.app.state.settings = db.settings.model_copy(
            update={"database_direct_url": SecretStr("postgresql://nobody@127.0.0.1:1/none")}
        )
        r = httpx.get(s.ops_url + "/readyz", timeout=10)
    assert r.status_code == 503
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["pooled"]["ok"] and not checks["direct"]["ok"] and not checks["schema"]["ok"]


def test_metrics_count_deliveries_by_topic_and_outcome_and_report_the_pool(served) -> None:
    for topic in ("products/update", "orders/create", "carts/update"):
        headers, raw = webhook(topic, {"id": 1})
        assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    text = httpx.get(served.ops_url + "/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert (
        samples[
            ("storesync_webhook_deliveries_total", (("outcome", "accepted"), ("topic", "products/update")))
        ]
        == 1
    )
    assert (
        samples[("storesync_webhook_deliveries_total", (("outcome", "accepted"), ("topic", "orders/create")))]
        == 1
    )
    assert samples[("storesync_webhook_deliveries_total", (("outcome", "ignored"), ("topic", "other")))] == 1
    assert samples[("storesync_webhook_request_seconds_count", (("status", "200"),))] == 3
    assert samples[("storesync_db_pool_max", ())] == served.app.state.pool.max_size
    assert samples[("storesync_db_pool_size", ())] >= 1
    # The whole queue's state, read from the database on the scrape: the two handled topics
    # each left one queued job (inventory lane for the order, catalog lane for the product).
    assert samples[("storesync_queue_jobs", (("lane", "inventory"), ("state", "queued")))] == 1
    assert samples[("storesync_queue_jobs", (("lane", "catalog"), ("state", "queued")))] == 1


def test_serve_refuses_to_start_when_the_schema_is_behind(empty_db) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": empty_db.dsn,
        "STORESYNC_WEB_PORT": "0",
        "STORESYNC_CONFIG_FILE": str(ROOT_DIR / "storesync.example.toml"),
    }
    env.pop("DATABASE_DIRECT_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "storesync", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "refusing to serve" in proc.stderr and "storesync migrate" in proc.stderr


def test_app_startup_refuses_a_schema_that_is_behind(empty_db) -> None:
    settings = Settings.load(database_url=SecretStr(empty_db.dsn), pool_min_size=0)
    try:
        with serving(settings):
            raise AssertionError("the app served a database whose schema is behind")
    except RuntimeError as err:
        assert "refusing to serve: database schema is at version 0" in str(err)
        assert "run `storesync migrate` first" in str(err)
