"""The dashboard over real HTTP (httpx): who may see and change what, what is never shown,
failures fed by real signed webhooks, queue filters and pages, the PgBouncer pooled path."""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr

from storesync.config import Settings
from storesync.queue.enqueue import Lane
from storesync.web.ingest import sign
from tests.dashboard.conftest import WEBHOOK_SECRET, csrf_of, signed_in_client

PAGES = ["/", "/queue", "/queue?state=dead", "/failures", "/audit", "/jobs/1", "/deliveries/1"]


def job_state(dash, job_id: int) -> str:
    return dash.sql("SELECT state FROM jobs WHERE id = %s", (job_id,))[0][0]


def test_unauthenticated_or_forged_requests_are_refused_and_change_nothing(serve_dashboard):
    with serve_dashboard() as dash:
        job_id = dash.enqueue("webhook.orders_create", "acme", Lane.INVENTORY)
        dash.bury(job_id)
        with httpx.Client(base_url=dash.origin, timeout=10) as anonymous:
            for path in PAGES:
                reply = anonymous.get("/dashboard" + path)
                assert reply.status_code == 401, path
                assert 'name="token"' in reply.text and "acme-hq.myshopify.com" not in reply.text
            assert anonymous.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": "x"}).status_code == 401
            # A wrong token, a wrong bearer, a forged cookie: all refused.
            assert anonymous.post("/dashboard/login", data={"token": "op-" + "0" * 32}).status_code == 401
            assert (
                anonymous.get(
                    "/dashboard/", headers={"Authorization": "Bearer nope-nope-nope-nope"}
                ).status_code
                == 401
            )
            anonymous.cookies.set("storesync_dashboard", "1999999999.abc.def", path="/dashboard/")
            assert anonymous.get("/dashboard/").status_code == 401
            # An open redirect through `next` is not possible.
            reply = anonymous.post("/dashboard/login", data={"token": dash.token, "next": "//evil.example/"})
            assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/"
        assert job_state(dash, job_id) == "dead"

        with signed_in_client(dash) as operator:
            # Signed in, but without (or with a stale) CSRF token: refused, nothing replayed.
            assert operator.post(f"/dashboard/jobs/{job_id}/replay").status_code == 403
            assert (
                operator.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": "stale"}).status_code == 403
            )
            assert job_state(dash, job_id) == "dead"
            csrf = csrf_of(operator.get(f"/dashboard/jobs/{job_id}").text)
            reply = operator.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": csrf})
            assert reply.status_code == 303 and reply.headers["location"].endswith("notice=replayed")
            assert job_state(dash, job_id) == "queued"
            # Replaying again is refused by the queue (it is queued now), and said so.
            reply = operator.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": csrf})
            assert reply.headers["location"].endswith("notice=not-replayed")
            reply = operator.post(
                f"/dashboard/jobs/{job_id}/cancel", data={"csrf": csrf}, follow_redirects=True
            )
            assert "Job cancelled." in reply.text
            assert job_state(dash, job_id) == "cancelled"
            # Signing out ends the session.
            operator.post("/dashboard/logout", data={"csrf": csrf})
            assert operator.get("/dashboard/").status_code == 401

        # A script with the token as a bearer header may read without a cookie.
        reply = httpx.get(dash.url + "/", headers={"Authorization": f"Bearer {dash.token}"}, timeout=10)
        assert reply.status_code == 200 and "acme-hq.myshopify.com" in reply.text


def test_sessions_end_when_the_operator_token_changes(serve_dashboard):
    with serve_dashboard() as first, signed_in_client(first) as operator:
        cookie = operator.cookies.get("storesync_dashboard")
        assert first.token not in cookie  # the cookie is a MAC, not the token
    with (
        serve_dashboard() as second,  # same database, a new token
        httpx.Client(base_url=second.origin, timeout=10) as client,
    ):
        client.cookies.set("storesync_dashboard", cookie, path="/dashboard/")
        assert client.get("/dashboard/").status_code == 401


@pytest.mark.parametrize("token", [None, "tiny-tok-9"])
def test_dashboard_is_disabled_with_a_clear_message_without_a_valid_token(serve_dashboard, token):
    with serve_dashboard(token=token) as dash:
        for method, path in [("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/queue")]:
            reply = httpx.request(method, dash.url + path, data={"token": "tiny-tok-9"}, timeout=10)
            assert reply.status_code == 503, path
            assert "Dashboard disabled" in reply.text and "STORESYNC_DASHBOARD_TOKEN" in reply.text
            assert "acme" not in reply.text
        if token is not None:
            assert "at least 16 characters" in reply.text and token not in reply.text
        # Webhook ingestion is unaffected.
        assert httpx.get(dash.origin + "/healthz", timeout=10).status_code == 200


def test_job_page_shows_payload_and_errors_but_never_secrets(serve_dashboard):
    with serve_dashboard() as dash:
        job_id = dash.enqueue(
            "sync.product_to_child",
            "acme",
            payload={
                "product": {"title": "Trail Shoe"},
                "access_token": "shpat_should_never_render",
                "nested": [{"webhook_secret": "whsec_should_never_render", "qty": 4}],
            },
        )
        dash.bury(
            job_id, "cannot connect to postgresql://storesync:pg-password-xyz@db.internal:5432/storesync"
        )
        with signed_in_client(dash) as operator:
            html = operator.get(f"/dashboard/jobs/{job_id}").text
        assert "Trail Shoe" in html and "&#34;qty&#34;: 4" in html.replace("&quot;", "&#34;")
        assert "cannot connect to postgresql://storesync:[redacted]@db.internal" in html
        for secret in (
            "shpat_should_never_render",
            "whsec_should_never_render",
            "pg-password-xyz",
            dash.token,
            WEBHOOK_SECRET,
        ):
            assert secret not in html
        assert html.count("[redacted]") >= 3


def _webhook(dash, topic: str, body: bytes, shop: str = "acme-east.myshopify.com") -> str:
    webhook_id = str(uuid.uuid4())
    reply = httpx.post(
        dash.origin + "/webhooks/shopify",
        content=body,
        timeout=10,
        headers={
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": sign(WEBHOOK_SECRET, body),
            "X-Shopify-Api-Version": "2026-10",
            "Content-Type": "application/json",
        },
    )
    assert reply.status_code == 200, reply.text
    return webhook_id


def test_failures_show_dead_jobs_and_unparseable_or_ignored_deliveries_from_real_webhooks(serve_dashboard):
    with serve_dashboard() as dash:
        accepted = _webhook(dash, "products/update", json.dumps({"id": 71, "title": "Tent"}).encode())
        unparseable = _webhook(dash, "orders/create", b"{not json <script>alert(1)</script>")
        ignored = _webhook(dash, "shop/update", json.dumps({"name": "Acme"}).encode())
        (job_id,) = dash.sql("SELECT id FROM jobs WHERE payload ->> 'delivery_id' = %s", (accepted,))[0]
        dash.bury(job_id, "child product vanished")
        ids = dict(dash.sql("SELECT webhook_id, id FROM webhook_deliveries"))

        with signed_in_client(dash) as operator:
            html = operator.get("/dashboard/failures").text
            assert f'data-job="{job_id}"' in html and "child product vanished" in html
            assert f'data-delivery="{ids[unparseable]}"' in html and f'data-delivery="{ids[ignored]}"' in html
            assert f'data-delivery="{ids[accepted]}"' not in html

            page = operator.get(f"/dashboard/deliveries/{ids[unparseable]}").text
            assert "{not json &lt;script&gt;alert(1)" in page and "nothing to replay" in page
            assert "<script>alert" not in page  # shown, never executed

            # The accepted delivery leads to its dead job, and the job back to its delivery.
            page = operator.get(f"/dashboard/deliveries/{ids[accepted]}").text
            assert f'/dashboard/jobs/{job_id}"' in page and "open it to replay" in page
            page = operator.get(f"/dashboard/jobs/{job_id}").text
            assert f'/dashboard/deliveries/{ids[accepted]}"' in page and 'id="replay"' in page
            # Audit causes name deliveries by webhook id: that link resolves too.
            assert operator.get(f"/dashboard/deliveries/webhook/{accepted}").status_code == 200
            assert operator.get("/dashboard/deliveries/999999").status_code == 404


def test_failures_show_what_needs_the_merchants_attention_until_it_is_resolved(serve_dashboard):
    """What storesync reported and did not do (here: a child's own product unlinked when its
    parent product was deleted) is on the failures page, escaped, until it no longer holds."""
    import asyncio

    import psycopg

    from storesync.sync.adapters.postgres import PgAttention

    shop, subject = "acme-1.myshopify.com", "gid://shopify/Product/77"

    async def attention(resolve: bool) -> None:
        async with await psycopg.AsyncConnection.connect(dash.db.dsn, autocommit=True) as conn:
            log = PgAttention(conn)
            if resolve:
                assert await log.resolve(shop, "own_product_unlinked", subject)
            else:
                await log.report(
                    shop, "own_product_unlinked", subject, "kept and unlinked <b>not deleted</b>"
                )

    with serve_dashboard() as dash:
        asyncio.run(attention(resolve=False))
        with signed_in_client(dash) as operator:
            html = operator.get("/dashboard/failures").text
            assert 'data-attention="own_product_unlinked"' in html and subject in html
            assert "&lt;b&gt;not deleted" in html and "<b>not deleted" not in html
            asyncio.run(attention(resolve=True))
            assert 'data-attention="own_product_unlinked"' not in operator.get("/dashboard/failures").text


def test_queue_page_filters_by_state_lane_merchant_kind_and_pages_through_every_job(serve_dashboard):
    with serve_dashboard(page_size=2) as dash:
        inventory = [dash.enqueue("webhook.orders_create", "acme", Lane.INVENTORY) for _ in range(3)]
        catalog = dash.enqueue("webhook.products_update", "acme", Lane.CATALOG)
        bolt = dash.enqueue("webhook.orders_create", "bolt", Lane.INVENTORY)
        dash.bury(catalog)
        everything = sorted([*inventory, catalog, bolt], reverse=True)

        def ids(html: str) -> list[int]:
            return [int(n) for n in re.findall(r'<tr data-job="(\d+)"', html)]

        with signed_in_client(dash) as operator:
            seen, url = [], "/dashboard/queue"
            for _ in range(5):
                html = operator.get(url).text
                seen += ids(html)
                found = re.search(r'href="([^"]+)" rel="next"', html)
                if not found:
                    break
                url = found.group(1).replace("&amp;", "&")
            assert seen == everything  # newest first, each job exactly once

            assert ids(operator.get("/dashboard/queue?state=dead").text) == [catalog]
            assert ids(operator.get("/dashboard/queue?merchant=bolt").text) == [bolt]
            assert ids(operator.get("/dashboard/queue?lane=1").text) == [catalog]
            html = operator.get("/dashboard/queue?kind=webhook.orders_create&merchant=acme").text
            assert ids(html) == sorted(inventory, reverse=True)[:2] and 'rel="next"' in html

            bad = operator.get("/dashboard/queue?state=exploded")
            assert bad.status_code == 400 and "state must be one of" in bad.text


def test_pages_and_replay_work_through_pgbouncer_transaction_mode(serve_dashboard, db, pgbouncer_dsn):
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=4,
    )
    with serve_dashboard(settings=settings) as dash:
        job_id = dash.enqueue("webhook.orders_create", "acme", Lane.INVENTORY)
        dash.bury(job_id)
        with signed_in_client(dash) as operator:
            # Many reads, past psycopg's prepare threshold, multiplexed over PgBouncer.
            for path in ["/", "/queue", "/failures", "/audit", f"/jobs/{job_id}"] * 3:
                reply = operator.get("/dashboard" + path)
                assert reply.status_code == 200, (path, reply.text[:300])
            csrf = csrf_of(reply.text)
            reply = operator.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": csrf})
            assert reply.headers["location"].endswith("notice=replayed")
        assert job_state(dash, job_id) == "queued"


def test_dashboard_reads_leave_the_shared_pool_as_ingestion_needs_it(serve_dashboard, db):
    # One pooled connection: every dashboard read and every webhook share it.
    settings = Settings.load(database_url=SecretStr(db.dsn), pool_min_size=0, pool_max_size=1)
    with serve_dashboard(settings=settings) as dash:
        with signed_in_client(dash) as operator:
            for path in ["/", "/queue", "/failures", "/audit"]:
                assert operator.get("/dashboard" + path).status_code == 200
        _webhook(dash, "orders/create", json.dumps({"id": 5}).encode())
        ready = httpx.get(dash.origin + "/readyz", timeout=10)  # on a pool of its own
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        assert dash.sql("SELECT count(*) FROM jobs WHERE kind = 'webhook.orders_create'") == [(1,)]


def test_slow_pages_are_cut_off_and_bounded_in_connections_with_a_clear_503(serve_dashboard, db, monkeypatch):
    monkeypatch.setenv("STORESYNC_DASHBOARD_STATEMENT_TIMEOUT_MS", "1000")
    monkeypatch.setenv("STORESYNC_DASHBOARD_MAX_CONCURRENT_READS", "1")
    settings = Settings.load(
        database_url=SecretStr(db.dsn), pool_min_size=0, pool_max_size=4, pool_timeout=0.2
    )
    with serve_dashboard(settings=settings) as dash, signed_in_client(dash) as operator:
        with db.connect() as blocker:
            blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")  # held until rollback
            with ThreadPoolExecutor(2) as pool:
                first = pool.submit(operator.get, "/dashboard/queue")
                time.sleep(0.2)
                second = pool.submit(operator.get, "/dashboard/queue")
                slow, crowded = first.result(timeout=10), second.result(timeout=10)
            blocker.rollback()
        assert slow.status_code == 503 and "ran longer than 1000 ms" in slow.text
        assert crowded.status_code == 503 and "other dashboard pages are still loading" in crowded.text
        assert operator.get("/dashboard/queue").status_code == 200  # nothing left held
