"""The command line as an operator meets it, each command a real subprocess on a real database:
`--version`, `status` on a fresh database, `network check` refusing what cannot sync, `jobs
list` by lane name, `jobs retry --all-dead [--kind]` saying why a replay would not help, one log
format per process on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from storesync.queue.enqueue import JobSpec, Lane, enqueue

ROOT = Path(__file__).resolve().parents[2]

NETWORK = """
[[merchants]]
id = "acme"
[merchants.parent]
shop = "acme-hq.myshopify.com"
admin_api_url = "http://127.0.0.1:1/acme-hq/admin/api/2026-10/graphql.json"
access_token = "shpat_0123456789abcdef"
webhook_secrets = ["3b1f0c9e8d7a6b5c"]
[[merchants.children]]
shop = "acme-eu.myshopify.com"
admin_api_url = "http://127.0.0.1:1/acme-eu/admin/api/2026-10/graphql.json"
access_token = "shpat_fedcba9876543210"
webhook_secrets = ["a1b2c3d4e5f60718"]
location_map = { "gid://shopify/Location/1" = "gid://shopify/Location/101" }
"""


def storesync(*args: str, dsn: str | None = None, config: Path | None = None, **env: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STORESYNC_", "DATABASE_"))}
    base.update({"COLUMNS": "200", "STORESYNC_LOG_FORMAT": "json", **env})
    if dsn:
        base["DATABASE_URL"] = dsn
    base["STORESYNC_CONFIG_FILE"] = str(config) if config else os.devnull
    return subprocess.run(
        [sys.executable, "-m", "storesync", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_version_and_status_on_a_fresh_database(empty_db) -> None:
    shown = storesync("--version")
    assert shown.returncode == 0 and shown.stdout.startswith("storesync ") and "2026-10" in shown.stdout
    fresh = storesync("status", dsn=empty_db.dsn)
    assert fresh.returncode == 1
    assert "no storesync schema yet: run `storesync migrate`" in " ".join(fresh.stdout.split())


def test_network_check_refuses_placeholders_and_a_child_without_locations(tmp_path: Path) -> None:
    example = storesync("network", "check", config=ROOT / "storesync.example.toml")
    assert example.returncode == 1
    assert "apps.network.client_id is a placeholder" in example.stderr
    assert "acme-outlet.myshopify.com: its access token is a placeholder" in example.stderr
    assert "replace" not in example.stderr.replace("placeholder", "")  # no secret value quoted

    good = tmp_path / "storesync.toml"
    good.write_text(NETWORK, encoding="utf-8")
    ok = storesync("network", "check", config=good)
    assert ok.returncode == 0 and "valid (1 merchants)" in ok.stdout, ok.stderr

    unmapped = tmp_path / "unmapped.toml"
    unmapped.write_text(
        NETWORK.replace('location_map = { "gid://shopify/Location/1" = "gid://shopify/Location/101" }', "")
    )
    refused = storesync("network", "check", config=unmapped)
    assert refused.returncode == 1
    assert "acme-eu.myshopify.com: no location_map" in refused.stderr
    assert "storesync network locations" in refused.stderr


def test_jobs_by_lane_name_and_retry_all_dead_says_why_first(db, tmp_path: Path) -> None:
    config = tmp_path / "storesync.toml"
    config.write_text(NETWORK, encoding="utf-8")
    assert (
        storesync("network", "apply", dsn=db.dsn, config=config, STORESYNC_ENCRYPTION_KEY=_key()).returncode
        == 0
    )
    with psycopg.connect(db.dsn) as conn:
        ids = [
            enqueue(conn, JobSpec(kind, payload, group="acme", lane=lane)).job_id
            for kind, payload, lane in [
                (
                    "sync.product_to_child",
                    {"child_shop": "acme-eu.myshopify.com", "cause": "c", "parent_product_id": "p1"},
                    Lane.CATALOG,
                ),
                (
                    "sync.product_to_child",
                    {"child_shop": "acme-eu.myshopify.com", "cause": "c", "parent_product_id": "p2"},
                    Lane.CATALOG,
                ),
                (
                    "sync.fan_out_level",
                    {"parent_item": "i", "parent_location": "l", "cause": "c"},
                    Lane.INVENTORY,
                ),
            ]
        ]
        errors = json.dumps(
            [
                {
                    "attempt": 1,
                    "error": "PermanentError",
                    "message": "CatalogError: blocked",
                    "retryable": False,
                }
            ]
        )
        conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = now(), errors = %s::jsonb WHERE id = ANY(%s)",
            (errors, ids),
        )
        conn.execute(
            "UPDATE stores SET status = 'paused', status_reason = 'app uninstalled' WHERE shop_domain = 'acme-eu.myshopify.com'"
        )
        conn.commit()

    listed = storesync("jobs", "list", "--lane", "inventory", dsn=db.dsn)
    assert listed.returncode == 0 and "sync.fan_out_level" in listed.stdout and "inventory" in listed.stdout
    assert "sync.product_to_child" not in listed.stdout
    assert storesync("jobs", "list", "--lane", "fast", dsn=db.dsn).returncode == 2

    # The copies' store is paused: they are skipped, and why is said (stderr); the fan-out writes
    # the child too (every child): skipped as well. Nothing is replayed without --force.
    kinds = storesync("jobs", "retry", "--all-dead", "--kind", "sync.product_to_child", dsn=db.dsn)
    assert kinds.returncode == 1
    assert "acme-eu.myshopify.com is still paused (app uninstalled)" in kinds.stderr
    assert f"skipped 2 whose store is still paused ({ids[0]}, {ids[1]})" in " ".join(kinds.stdout.split())
    forced = storesync(
        "jobs", "retry", "--all-dead", "--kind", "sync.product_to_child", "--force", dsn=db.dsn
    )
    assert forced.returncode == 0 and "queued again: 2 jobs" in forced.stdout
    with psycopg.connect(db.dsn) as conn:
        states = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall())
        conn.execute("UPDATE stores SET status = 'active', status_reason = NULL")
        conn.commit()
    assert states == {ids[0]: "queued", ids[1]: "queued", ids[2]: "dead"}
    # The store active again: the permanent error is still said first, and the job replayed.
    rest = storesync("jobs", "retry", "--all-dead", dsn=db.dsn)
    assert rest.returncode == 0 and "queued again: 1 jobs" in rest.stdout
    assert "Its last error was permanent (PermanentError: CatalogError: blocked)" in rest.stderr
    assert storesync("jobs", "retry", dsn=db.dsn).returncode == 2  # neither ids nor --all-dead


def test_one_log_format_on_stderr_for_structlog_and_stdlib_records() -> None:
    code = (
        "import logging; from storesync.logs import configure_logging, get_logger;"
        "configure_logging('info', 'json');"
        "get_logger('storesync.x').info('from_structlog', n=1);"
        "logging.getLogger('uvicorn.error').info('from stdlib %s', 'uvicorn');"
        "print('the output')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout == "the output\n"
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [r["event"] for r in records] == ["from_structlog", "from stdlib uvicorn"]
    assert all({"level", "timestamp"} <= set(r) for r in records)
    assert records[1]["logger"] == "uvicorn.error"


def _key() -> str:
    from storesync.db.credentials import generate_key

    return generate_key()
