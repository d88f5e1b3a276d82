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


def test_scrapes_never_touch_the_webhook_pool_and_the_queue_gauges_are_cached(db) -> None:
    settings = db.settings.model_copy(update={"pool_max_size": 1})
    # The chart counts' flush is the webhook pool's one other user: not within this test.
    with serving(settings, ops_cache_s=60, minute_counts_flush_s=60) as s:
        headers, raw = webhook("orders/create", {"id": 1})
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
        webhook_pool_requests = s.app.state.pool.get_stats().get("requests_num", 0)
        scrapes = [httpx.get(s.ops_url + "/metrics", timeout=10) for _ in range(10)]
        details = [httpx.get(s.ops_url + "/readyz", timeout=10) for _ in range(3)]
        assert s.app.state.pool.get_stats().get("requests_num", 0) == webhook_pool_requests
        headers, raw = webhook("orders/create", {"id": 2})
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
        later = httpx.get(s.ops_url + "/metrics", timeout=10).text
    assert {r.status_code for r in scrapes} == {200} and {r.status_code for r in details} == {200}
    queued = 'storesync_queue_jobs{lane="inventory",state="queued"} 1.0'
    # Read once, then reused for ops_cache_s: the second job shows at the next refresh, not now.
    assert queued in scrapes[0].text and queued in later


def test_the_ops_listener_needs_its_token_when_one_is_set(db) -> None:
    token = "ops-" + "x" * 20
    with serving(db.settings, ops_token=token) as s:
        assert httpx.get(s.ops_url + "/metrics", timeout=10).status_code == 401
        wrong = httpx.get(s.ops_url + "/readyz", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and "checks" not in wrong.text
        right = httpx.get(s.ops_url + "/readyz", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert right.status_code == 200 and right.json()["checks"]
        assert httpx.get(s.url + "/metrics", timeout=10).status_code == 404  # never on the webhook port
        # As the dashboard's sign-in: a client that keeps sending wrong tokens is told to wait.
        for _ in range(8):
            httpx.get(s.ops_url + "/metrics", headers={"Authorization": "Bearer guess"}, timeout=10)
        blocked = httpx.get(s.ops_url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1


def test_serve_refuses_an_ops_listener_off_loopback_without_a_token(db) -> None:
    env = {**os.environ, "DATABASE_URL": db.dsn, "STORESYNC_CONFIG_FILE": os.devnull, "COLUMNS": "200"}
    env.pop("STORESYNC_WEB_OPS_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "storesync", "serve", "--port", "0", "--ops-host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "without STORESYNC_WEB_OPS_TOKEN" in " ".join(proc.stderr.split())
