"""Helpers for web-tier tests: a real uvicorn serving the app on 127.0.0.1:<ephemeral> in a
background thread, a test network, and signed webhook requests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import uvicorn

from storesync.config import NetworkConfig, Settings
from storesync.web.app import create_app
from storesync.web.ingest import sign
from storesync.web.ops import OpsListener, create_ops_app
from storesync.web.settings import WebSettings

ROOT_DIR = Path(__file__).resolve().parents[2]
PARENT = "parent.myshopify.com"
CHILD = "child-a.myshopify.com"
OTHER_PARENT = "other.myshopify.com"
SECRETS = {
    PARENT: ["parent-secret-new", "parent-secret-old"],
    CHILD: ["child-secret"],
    OTHER_PARENT: ["other-secret"],
}


def network_with(secrets: dict[str, list[str]] | None = None) -> NetworkConfig:
    secrets = {**SECRETS, **(secrets or {})}

    def store(shop: str) -> dict:
        return {
            "shop": shop,
            "admin_api_url": f"http://127.0.0.1:1/stores/{shop}/admin/api/2026-10/graphql.json",
            "access_token": "token",
            "webhook_secrets": secrets[shop],
        }

    return NetworkConfig.model_validate(
        {
            "merchants": [
                {"id": "acme", "parent": store(PARENT), "children": [store(CHILD)]},
                {"id": "globex", "parent": store(OTHER_PARENT)},
            ]
        }
    )


@dataclass
class Served:
    url: str
    app: object
    server: uvicorn.Server
    ops_url: str  # the operations listener: /metrics, detailed /readyz

    @property
    def webhook_url(self) -> str:
        return self.url + "/webhooks/shopify"


@contextmanager
def serving(settings: Settings, network: NetworkConfig | None = None, **web: object) -> Iterator[Served]:
    """Serve the app with uvicorn in a thread until the block ends, and its operations listener
    (as `storesync serve` does) on another ephemeral port."""
    web_settings = WebSettings.load(**web)
    app = create_app(settings, network or network_with(), web_settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits this way when start-up fails
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            thread.join(5)
            raise RuntimeError(f"the web app did not start: {app.state.startup_error or 'see the log'}")
        time.sleep(0.01)
    ops_sock = socket.socket()
    ops_sock.bind(("127.0.0.1", 0))
    ops_sock.listen(64)
    ops_app = create_ops_app(lambda: app.state.settings, web_settings, app.state.metrics)
    ops = OpsListener(ops_app, ops_sock, "warning").start()
    try:
        while not ops.server.started:
            assert ops.thread.is_alive() and time.monotonic() < deadline + 15, (
                "the ops listener did not start"
            )
            time.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", app, server, f"http://127.0.0.1:{ops.port}")
    finally:
        ops.stop(15)
        server.should_exit = True
        thread.join(15)
        sock.close()


def webhook(
    topic: str = "products/update",
    body: dict | bytes | None = None,
    *,
    shop: str = PARENT,
    secret: str | None = None,
    webhook_id: str | None = None,
    omit: tuple[str, ...] = (),
    **extra_headers: str,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a delivery signed like Shopify signs it."""
    if body is None:
        body = {"id": 632910392, "title": "IPod Nano - 8GB", "updated_at": "2026-11-25T12:00:00-05:00"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(secret or SECRETS[shop][0], raw),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-11-25T17:00:00.123456789Z",
        "Content-Type": "application/json",
    }
    headers.update(extra_headers)
    for name in omit:
        headers.pop(name)
    return headers, raw


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    """(delivery rows, job rows)."""
    deliveries = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]
    jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    return deliveries, jobs


@pytest.fixture
def served(db) -> Iterator[Served]:
    with serving(db.settings) as s:
        yield s
