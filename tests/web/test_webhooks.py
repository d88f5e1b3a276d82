"""POST /webhooks/shopify over real HTTP into a real database."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import httpx
import pytest

from tests.web.conftest import CHILD, OTHER_PARENT, PARENT, SECRETS, counts, network_with, serving, webhook


def test_valid_delivery_records_one_row_and_enqueues_one_job(db, served) -> None:
    headers, raw = webhook("products/update", {"id": 42, "title": "Shirt"}, webhook_id="wh-1")
    headers = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "accepted"
    with db.connect() as conn:
        assert counts(conn) == (1, 1)
        row = conn.execute(
            "SELECT webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version,"
            " payload, status FROM webhook_deliveries"
        ).fetchone()
        job = conn.execute(
            "SELECT id, kind, lane, group_key, singleton_key, lock_key, payload FROM jobs"
        ).fetchone()
    webhook_id, shop, merchant, topic, event_id, triggered_at, api_version, payload, status = row
    assert (webhook_id, shop, merchant, topic, api_version, status) == (
        "wh-1",
        PARENT,
        "acme",
        "products/update",
        "2026-10",
        "accepted",
    )
    assert event_id == headers["x-shopify-event-id"]
    assert bytes(payload) == raw  # the raw bytes, exactly as signed
    assert triggered_at.isoformat().startswith("2026-11-25T17:00:00.123456")
    job_id, kind, lane, group, singleton, lock, job_payload = job
    assert r.json()["job_id"] == job_id
    assert (kind, lane, group) == ("webhook.products_update", 1, "acme")
    assert singleton == lock == f"product:{PARENT}:42"
    assert job_payload["delivery_id"] == "wh-1"
    assert job_payload["body"] == {"id": 42, "title": "Shirt"}
    assert {"shop", "topic", "event_id", "triggered_at"} <= job_payload.keys()


def test_order_goes_to_the_inventory_lane_without_collapsing(db, served) -> None:
    for n in range(2):
        headers, raw = webhook(
            "orders/create", {"id": 1001, "line_items": [{"variant_id": 7, "quantity": n + 1}]}, shop=CHILD
        )
        assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    with db.connect() as conn:
        jobs = conn.execute("SELECT kind, lane, group_key, singleton_key FROM jobs ORDER BY id").fetchall()
    assert jobs == [("webhook.orders_create", 0, "acme", None)] * 2


def test_burst_of_updates_to_one_product_collapses_into_one_waiting_job(db, served) -> None:
    for n in range(5):
        headers, raw = webhook("products/update", {"id": 77, "title": f"v{n}"})
        assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    with db.connect() as conn:
        assert counts(conn) == (5, 1)  # every delivery kept, one job to run
        assert conn.execute("SELECT payload->'body'->>'title' FROM jobs").fetchone()[0] == "v4"


async def test_fifty_concurrent_copies_of_one_webhook_make_exactly_one_job(db, served) -> None:
    headers, raw = webhook("products/update", {"id": 5}, webhook_id="same-webhook")
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        replies = await asyncio.gather(
            *(client.post(served.webhook_url, content=raw, headers=headers) for _ in range(50))
        )
        metrics = (await client.get(served.url + "/metrics")).text
    assert [r.status_code for r in replies] == [200] * 50
    outcomes = sorted(r.json()["outcome"] for r in replies)
    assert outcomes == ["accepted"] + ["duplicate"] * 49
    with db.connect() as conn:
        assert counts(conn) == (1, 1)
    assert 'storesync_webhook_duplicates_total{topic="products/update"} 49.0' in metrics


def test_signed_but_unparseable_and_unhandled_topics_are_kept_without_a_job(db, served) -> None:
    cases = [
        (webhook("products/update", b"{not json"), "unparseable"),
        (webhook("products/update", b"[1, 2]"), "unparseable"),
        # JSON to Python, but not to Postgres jsonb: enqueueing would fail on every retry.
        (webhook("products/update", b'{"id": 1, "price": NaN}'), "unparseable"),
        (webhook("products/update", b'{"id": 1, "title": "a\\u0000b"}'), "unparseable"),
        (webhook("products/update", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "unparseable"),
        (webhook("customers/create", {"id": 3}), "ignored"),
    ]
    for (headers, raw), outcome in cases:
        r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
        assert (r.status_code, r.json()["outcome"]) == (200, outcome)
        again = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
        assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    with db.connect() as conn:
        assert counts(conn) == (len(cases), 0)
        kept = conn.execute("SELECT status, payload FROM webhook_deliveries ORDER BY id").fetchall()
    assert [(s, bytes(p)) for s, p in kept] == [(outcome, raw) for (_, raw), outcome in cases]


# ------------------------------------------------------------------------------------ rejections


def _bad_hmac(h: dict) -> None:
    h["X-Shopify-Hmac-Sha256"] = base64.b64encode(b"\0" * 32).decode()


REJECTIONS = {
    # name: (mutate headers, expected status, metric reason)
    "unknown_shop": (
        lambda h: h.update({"X-Shopify-Shop-Domain": "stranger.myshopify.com"}),
        401,
        "unknown_shop",
    ),
    "missing_shop": (lambda h: h.pop("X-Shopify-Shop-Domain"), 401, "unknown_shop"),
    "bad_hmac": (_bad_hmac, 401, "bad_hmac"),
    "missing_hmac": (lambda h: h.pop("X-Shopify-Hmac-Sha256"), 401, "bad_hmac"),
    "another_stores_secret": (lambda h: h.update({"X-Shopify-Shop-Domain": OTHER_PARENT}), 401, "bad_hmac"),
    "missing_topic": (lambda h: h.pop("X-Shopify-Topic"), 400, "missing_header"),
    "missing_webhook_id": (lambda h: h.pop("X-Shopify-Webhook-Id"), 400, "missing_header"),
    "malformed_triggered_at": (
        lambda h: h.update({"X-Shopify-Triggered-At": "yesterday"}),
        400,
        "bad_header",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejected_request_gets_its_status_and_writes_nothing(db, served, case) -> None:
    mutate, status, reason = REJECTIONS[case]
    headers, raw = webhook("products/update")
    mutate(headers)
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status
    with db.connect() as conn:
        assert counts(conn) == (0, 0)
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    assert f'storesync_webhook_rejections_total{{reason="{reason}"}} 1.0' in metrics


def _raw_request(url: str, head: bytes, first_body_bytes: bytes) -> tuple[int, float]:
    """Send the head and only the start of the body, then read the answer: it must come without
    the rest of the body ever being sent. Returns (status, seconds to answer)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head + first_body_bytes)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def _head(url: str, headers: dict[str, str], extra: str) -> bytes:
    lines = ["POST /webhooks/shopify HTTP/1.1", f"Host: {url.removeprefix('http://')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + [extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_declared_oversized_body_is_refused_before_it_is_read(db) -> None:
    with serving(db.settings, max_body_bytes=1000) as s:
        headers, _ = webhook("products/update")
        status, elapsed = _raw_request(
            s.url, _head(s.url, headers, f"Content-Length: {50 * 1024 * 1024}"), b"{" + b" " * 100
        )
        metrics = httpx.get(s.url + "/metrics", timeout=10).text
    assert status == 413 and elapsed < 5
    assert 'storesync_webhook_rejections_total{reason="too_large"} 1.0' in metrics
    with db.connect() as conn:
        assert counts(conn) == (0, 0)


def test_streamed_oversized_body_is_refused_once_the_limit_is_passed(db) -> None:
    with serving(db.settings, max_body_bytes=1000) as s:
        headers, _ = webhook("products/update")
        chunk = b"x" * 600
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)
        )  # 1200 bytes, never terminated
        status, elapsed = _raw_request(s.url, _head(s.url, headers, "Transfer-Encoding: chunked"), chunked)
    assert status == 413 and elapsed < 5
    with db.connect() as conn:
        assert counts(conn) == (0, 0)


def test_body_at_the_limit_is_accepted(db) -> None:
    body = json.dumps({"id": 1, "pad": "p" * 990}).encode()
    with serving(db.settings, max_body_bytes=len(body)) as s:
        headers, raw = webhook("products/update", body)
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200


def test_secret_rotation_accepts_old_and_new_then_only_new(db) -> None:
    old, new = "rotating-old", "rotating-new"
    with serving(db.settings, network_with({PARENT: [new, old]})) as s:
        for n, secret in enumerate((old, new)):
            headers, raw = webhook(body={"id": n}, secret=secret)
            assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    # Shopify's retry window has passed: the old secret is removed from the config and the tier rolled.
    with serving(db.settings, network_with({PARENT: [new]})) as s:
        headers, raw = webhook(secret=old)
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 401
        headers, raw = webhook(body={"id": 2}, secret=new)
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    with db.connect() as conn:
        assert counts(conn) == (3, 3)


def test_each_store_verifies_with_its_own_secret(db, served) -> None:
    headers, raw = webhook(shop=CHILD, secret=SECRETS[PARENT][0])
    assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 401
    headers, raw = webhook(shop=CHILD)
    assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200


async def test_concurrent_deliveries_share_transactions_but_each_job_commits_with_its_row(db) -> None:
    deliveries = [webhook("orders/create", {"id": n}, shop=CHILD) for n in range(40)]
    with serving(db.settings, batches_in_flight=1) as s:
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=80)) as client:
            replies = await asyncio.gather(
                *(client.post(s.webhook_url, content=raw, headers=headers) for headers, raw in deliveries * 2)
            )
    assert [r.status_code for r in replies] == [200] * 80
    assert sorted(r.json()["outcome"] for r in replies) == ["accepted"] * 40 + ["duplicate"] * 40
    with db.connect() as conn:
        assert counts(conn) == (40, 40)
        transactions = conn.execute("SELECT count(DISTINCT xmin::text) FROM webhook_deliveries").fetchone()[0]
        # Each job was written by the very transaction that inserted its delivery row.
        unmatched = conn.execute(
            "SELECT count(*) FROM jobs j JOIN webhook_deliveries d ON d.webhook_id = j.payload->>'delivery_id'"
            " WHERE j.xmin::text <> d.xmin::text"
        ).fetchone()[0]
        job_ids = sorted(r.json()["job_id"] for r in replies if r.json()["outcome"] == "accepted")
        assert job_ids == sorted(r[0] for r in conn.execute("SELECT id FROM jobs"))
    assert transactions < 40  # group commit: fewer transactions than deliveries
    assert unmatched == 0


def test_a_delivery_of_another_api_version_is_recorded_logged_and_counted(db, served) -> None:
    headers, raw = webhook("products/update", {"id": 43}, **{"X-Shopify-API-Version": "2025-07"})
    assert httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    with db.connect() as conn:
        assert conn.execute("SELECT api_version FROM webhook_deliveries").fetchall() == [("2025-07",)]
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    assert 'storesync_webhook_api_version_mismatch_total{version="2025-07"} 1.0' in metrics
