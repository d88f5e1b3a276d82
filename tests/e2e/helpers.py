"""What the end-to-end tests share: SQL on the system's database, waiting for it to settle, and
posting a webhook exactly as Shopify signs it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime

import httpx
import psycopg

WAIT = 20.0  # seconds any propagation may take on a loaded 2-core machine


def sql(system, query: str, params: dict | None = None) -> list[tuple]:
    with psycopg.connect(system.env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(query, params or {}).fetchall()


def idle(system) -> bool:
    """No job is due or running (parked and delayed jobs are not due)."""
    return (
        sql(
            system,
            "SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_at <= now())",
        )[0][0]
        == 0
    )


def empty(system) -> bool:
    """No job left but parked ones: delayed ones (the child debounce) count too."""
    return (
        sql(
            system,
            "SELECT count(*) FROM jobs WHERE state IN ('running', 'queued') "
            "AND payload->>'parked_for' IS NULL",
        )[0][0]
        == 0
    )


def settle(system, timeout: float = WAIT, *, delayed_too: bool = False) -> None:
    """Every delivery handled and the queue idle (with `delayed_too`: empty but parked jobs)."""
    system.drain_webhooks(timeout)
    if delayed_too:
        system.wait_until(lambda: empty(system), timeout, message="queue empty")
    else:
        system.wait_until(lambda: idle(system), timeout, message="queue idle")


def requests_by_operation(system) -> dict[str, dict[str, int]]:
    """shop -> operation -> Admin API requests the emulator answered so far."""
    return {
        shop: {op: row[0] for op, row in system.emulator.throttle(shop)["usage"]["by_operation"].items()}
        for shop in system.shops
    }


def post_webhook(system, shop: str, topic: str, body: dict, *, triggered_at: datetime) -> httpx.Response:
    """A delivery as Shopify sends it: HMAC-signed with the shop's secret, its own webhook id."""
    raw = json.dumps(body).encode()
    _, store = system.network.store(shop)
    secret = store.webhook_secrets[0].get_secret_value().encode()
    signature = base64.b64encode(hmac.new(secret, raw, hashlib.sha256).digest()).decode()
    return httpx.post(
        system.webhook_url,
        content=raw,
        timeout=10,
        trust_env=False,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": triggered_at.isoformat(),
            "X-Shopify-API-Version": "2026-10",
        },
    )
