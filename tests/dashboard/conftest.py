"""Dashboard test harness: the real web app (with the dashboard mounted) served by uvicorn on
127.0.0.1:<ephemeral> over a fresh migrated database, and Debian's Chromium driven headless by
playwright (never a downloaded browser)."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from storesync.config import NetworkConfig, Settings
from storesync.db.network_sql import apply_network
from storesync.queue.enqueue import JobSpec, Lane, enqueue
from storesync.web.app import create_app
from tests.e2e.conftest import module_db  # noqa: F401  (a whole system per module: test_store_health_browser)
from tests.support.webhook_receiver import serve_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 5000

# Secrets that live in configuration only: no page may ever show them.
ACCESS_TOKEN = "shpat_dashboard_test_access_token_0001"
WEBHOOK_SECRET = "whsec_dashboard_test_webhook_secret_0001"


def _store(shop: str) -> dict:
    return {
        "shop": shop,
        "admin_api_url": f"http://127.0.0.1:9/stores/{shop}/admin/api/2026-10/graphql.json",
        "access_token": ACCESS_TOKEN,
        "webhook_secrets": [WEBHOOK_SECRET],
    }


NETWORK = NetworkConfig.model_validate(
    {
        "merchants": [
            {
                "id": "acme",
                "name": "Acme Outfitters",
                "parent": _store("acme-hq.myshopify.com"),
                "children": [_store("acme-east.myshopify.com"), _store("acme-west.myshopify.com")],
            },
            {
                "id": "bolt",
                "name": "Bolt Bikes",
                "parent": _store("bolt-hq.myshopify.com"),
                "children": [_store("bolt-outlet.myshopify.com")],
            },
        ]
    }
)


@dataclass
class Dashboard:
    url: str  # http://127.0.0.1:<port>/dashboard
    origin: str
    token: str
    db: object  # tests.conftest.ScratchDatabase

    def sql(self, statement: str, params: object = None) -> list[tuple]:
        with psycopg.connect(self.db.dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def enqueue(self, kind: str, group: str, lane: Lane = Lane.CATALOG, payload: dict | None = None) -> int:
        with psycopg.connect(self.db.dsn) as conn:
            return enqueue(conn, JobSpec(kind=kind, payload=payload or {}, group=group, lane=lane)).job_id

    def bury(self, job_id: int, message: str = "boom", attempts: int = 3) -> None:
        """Make a job dead as the queue's bury does: attempts used, error history, finished."""
        errors = [
            {
                "attempt": n,
                "at": "2026-11-25T12:00:00+00:00",
                "error": "RuntimeError",
                "message": f"{message} (attempt {n})",
                "retryable": n < attempts,
            }
            for n in range(1, attempts + 1)
        ]
        self.sql(
            "UPDATE jobs SET state = 'dead', attempt = %s, max_attempts = %s, errors = %s::jsonb, "
            "finished_at = now() WHERE id = %s",
            (attempts, attempts, json.dumps(errors), job_id),
        )

    def heartbeat(self, worker_id: str, *, state: str = "running", in_flight: int = 2) -> None:
        self.sql(
            "INSERT INTO queue_workers (worker_id, hostname, pid, concurrency, state, in_flight, jobs_done) "
            "VALUES (%s, 'worker-host', 4242, 8, %s, %s, 17)",
            (worker_id, state, in_flight),
        )


@pytest.fixture
def serve_dashboard(db, monkeypatch) -> Iterator[Callable[..., object]]:
    """`with serve_dashboard(token=..., page_size=...) as dash:` the web app over `db` with the
    network applied; token None leaves STORESYNC_DASHBOARD_TOKEN unset; plain http on loopback
    allowed for the session cookie unless `plain_http_loopback=False`."""

    @contextmanager
    def start(
        *,
        token: str | None = "generate",
        page_size: int | None = None,
        settings: Settings | None = None,
        plain_http_loopback: bool = True,
    ) -> Iterator[Dashboard]:
        if token == "generate":
            token = "op-" + secrets.token_hex(16)
        if token is None:
            monkeypatch.delenv("STORESYNC_DASHBOARD_TOKEN", raising=False)
        else:
            monkeypatch.setenv("STORESYNC_DASHBOARD_TOKEN", token)
        # Tests talk plain http on loopback: the session cookie may drop `Secure` only when told so.
        monkeypatch.setenv(
            "STORESYNC_DASHBOARD_PLAIN_HTTP_LOOPBACK", "true" if plain_http_loopback else "false"
        )
        if page_size is None:
            monkeypatch.delenv("STORESYNC_DASHBOARD_PAGE_SIZE", raising=False)
        else:
            monkeypatch.setenv("STORESYNC_DASHBOARD_PAGE_SIZE", str(page_size))
        with psycopg.connect(db.dsn) as conn:
            apply_network(conn, NETWORK)
        app = create_app(settings or db.settings, NETWORK)
        with serve_app(app) as origin:
            yield Dashboard(url=origin + "/dashboard", origin=origin, token=token or "", db=db)

    yield start


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    # Replay/cancel ask for confirmation: an operator clicking OK.
    pg.on("dialog", lambda dialog: dialog.accept())
    try:
        yield pg
    finally:
        context.close()


@contextmanager
def signed_in_client(dash: Dashboard) -> Iterator[httpx.Client]:
    """An httpx client holding a dashboard session cookie (signed in through the form)."""
    with httpx.Client(base_url=dash.origin, timeout=10) as client:
        reply = client.post("/dashboard/login", data={"token": dash.token, "next": "/dashboard/"})
        assert reply.status_code == 303, reply.text
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(page, dash: Dashboard, path: str = "/") -> None:
    """Open `path`, get the sign-in form (401), sign in, land back on `path`."""
    response = page.goto(dash.url + path)
    assert response.status == 401
    page.fill("input[name=token]", dash.token)
    page.click("button[type=submit]")
    page.wait_for_url(dash.url + path)
