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
        metrics = (await client.get(served.ops_url + "/metrics")).text
    assert [r.status_code for r in replies] == [200] * 50
    outcomes = sorted(r.json()["outcome"] for r in replies)
    assert outcomes == ["accepted"] + ["duplicate"] * 49
    with db.connect() as conn:
        assert counts(conn) == (1, 1)
    assert 'storesync_webhook_duplicates_total{topic="products/update"} 49.0' in metrics


# Signed bodies Postgres cannot store in a job (jsonb), each of which once answered 5xx or failed
# its whole batch: kept byte for byte as `unparseable`, answered 200.
HOSTILE_BODIES = {
    "not_json": b"{not json",
    "not_an_object": b"[1, 2]",
    "nan": b'{"id": 1, "price": NaN}',
    "nul": b'{"id": 1, "title": "a\\u0000b"}',
    "lone_surrogate": b'{"id": 1, "title": "\\ud800"}',
    "lone_low_surrogate_in_a_key": b'{"\\uDC00": 1}',
    "nul_nested_300_deep": b'{"a": ' + b"[" * 300 + b'"\\u0000"' + b"]" * 300 + b"}",
    "nested_100_000_deep": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested_200_deep": b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}",
    "invalid_utf8": b'{"id": 1, "title": "\xff\xfe"}',
    "utf8_encoded_surrogate": b'{"id": 1, "title": "\xed\xa0\x80"}',
    "float_beyond_range": b'{"id": 1, "price": 1e999}',
    "int_of_10000_digits": b'{"id": ' + b"9" * 10_000 + b"}",
}


def test_signed_but_unstorable_or_unhandled_bodies_are_kept_without_a_job(db, served) -> None:
    cases = [(webhook("products/update", body), "unparseable") for body in HOSTILE_BODIES.values()]
    cases.append((webhook("customers/create", {"id": 3, "email": "a@example.com"}), "ignored"))
    for (headers, raw), outcome in cases:
        r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
        assert (r.status_code, r.json()["outcome"]) == (200, outcome), raw[:60]
        again = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
        assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    with db.connect() as conn:
        assert counts(conn) == (len(cases), 0)
        kept = conn.execute("SELECT status, payload FROM webhook_deliveries ORDER BY id").fetchall()
    # Unparseable: the exact bytes, for an operator to read. Ignored (a topic we do not use, which
    # may carry anything personal): only its headers.
    expected = [(outcome, raw if outcome == "unparseable" else b"") for (_, raw), outcome in cases]
    assert [(s, bytes(p)) for s, p in kept] == expected


def test_big_numbers_that_jsonb_can_store_are_accepted(db, served) -> None:
    body = b'{"id": ' + b"9" * 4000 + b', "price": 1e300, "tiny": 1e-400}'
    headers, raw = webhook("products/update", body)
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert (r.status_code, r.json()["outcome"]) == (200, "accepted")
    with db.connect() as conn:
        assert conn.execute("SELECT length(payload->'body'->>'id') FROM jobs").fetchone()[0] == 4000


def test_order_bodies_are_stored_without_the_customers_personal_data(db, served) -> None:
    order = {
        "id": 820982911946154508,
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "name": "#9999",
        "email": "jon@example.com",
        "contact_email": "jon@example.com",
        "phone": "+15555550100",
        "browser_ip": "203.0.113.7",
        "note": "leave at the back door",
        "note_attributes": [{"name": "gift", "value": "for Jane Doe"}],
        "customer": {"id": 1, "email": "jon@example.com", "first_name": "Jon", "last_name": "Snow"},
        "billing_address": {"name": "Jon Snow", "address1": "1 Castle Black", "phone": "555"},
        "shipping_address": {"name": "Jon Snow", "address1": "1 Castle Black"},
        "client_details": {"browser_ip": "203.0.113.7", "user_agent": "Mozilla"},
        "location_id": 55,
        "updated_at": "2026-11-25T12:00:00-05:00",
        "line_items": [
            {
                "id": 466157049,
                "variant_id": 39072856,
                "product_id": 632910392,
                "quantity": 2,
                "sku": "IPOD-342-N",
                "properties": [{"name": "engraving", "value": "Jon Snow"}],
                "origin_location": {"address1": "1 Warehouse Way"},
            }
        ],
        "refunds": [
            {
                "id": 1,
                "note": "Jon changed his mind",
                "user_id": 7,
                "refund_line_items": [
                    {"id": 2, "line_item_id": 466157049, "quantity": 1, "restock_type": "return"}
                ],
                "transactions": [{"id": 3, "gateway": "bogus", "receipt": {"card": "4242"}}],
            }
        ],
    }
    headers, raw = webhook("orders/create", order, shop=CHILD)
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert (r.status_code, r.json()["outcome"]) == (200, "accepted")
    with db.connect() as conn:
        stored = bytes(conn.execute("SELECT payload FROM webhook_deliveries").fetchone()[0])
        job_body = conn.execute("SELECT payload->'body' FROM jobs").fetchone()[0]
    assert json.loads(stored) == job_body
    for personal in (
        b"jon@example.com",
        b"Jon",
        b"Castle",
        b"555",
        b"203.0.113.7",
        b"door",
        b"Jane",
        b"4242",
    ):
        assert personal not in stored, personal
    # What sync needs is all there.
    assert job_body == {
        "id": 820982911946154508,
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "name": "#9999",
        "location_id": 55,
        "updated_at": "2026-11-25T12:00:00-05:00",
        "line_items": [
            {
                "id": 466157049,
                "variant_id": 39072856,
                "product_id": 632910392,
                "quantity": 2,
                "sku": "IPOD-342-N",
            }
        ],
        "refunds": [
            {
                "id": 1,
                "refund_line_items": [
                    {"id": 2, "line_item_id": 466157049, "quantity": 1, "restock_type": "return"}
                ],
            }
        ],
    }


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
    "malformed_hmac": (lambda h: h.update({"X-Shopify-Hmac-Sha256": "not base64!"}), 401, "bad_hmac"),
    "another_stores_secret": (lambda h: h.update({"X-Shopify-Shop-Domain": OTHER_PARENT}), 401, "bad_hmac"),
    "missing_topic": (lambda h: h.pop("X-Shopify-Topic"), 401, "missing_header"),
    "missing_webhook_id": (lambda h: h.pop("X-Shopify-Webhook-Id"), 401, "missing_header"),
    "webhook_id_with_spaces": (lambda h: h.update({"X-Shopify-Webhook-Id": "a b"}), 401, "missing_header"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejected_request_gets_its_status_and_writes_nothing(db, served, case) -> None:
    mutate, status, reason = REJECTIONS[case]
    headers, raw = webhook("products/update")
    mutate(headers)
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert r.status_code == status, r.text
    # One body for every authentication failure: which check failed is not told (no shop enumeration).
    assert r.json() == {"status": 401, "message": "unauthorized"}
    with db.connect() as conn:
        assert counts(conn) == (0, 0)
    metrics = httpx.get(served.ops_url + "/metrics", timeout=10).text
    assert f'storesync_webhook_rejections_total{{reason="{reason}"}} 1.0' in metrics


def test_a_malformed_triggered_at_is_dropped_not_a_reason_to_refuse_a_signed_delivery(db, served) -> None:
    headers, raw = webhook("products/update", {"id": 8}, **{"X-Shopify-Triggered-At": "yesterday"})
    r = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert (r.status_code, r.json()["outcome"]) == (200, "accepted")
    with db.connect() as conn:
        assert conn.execute("SELECT triggered_at FROM webhook_deliveries").fetchone() == (None,)
        assert conn.execute("SELECT payload->'triggered_at' FROM jobs").fetchone() == (None,)
    metrics = httpx.get(served.ops_url + "/metrics", timeout=10).text
    assert 'storesync_webhook_ignored_headers_total{header="x-shopify-triggered-at"} 1.0' in metrics


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


def _answer_status(sock: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_headers_are_checked_before_the_body_whose_read_has_a_deadline_and_excess_gets_503(db) -> None:
    with serving(db.settings, max_concurrent=2, body_timeout_s=2.0) as s:
        headers, raw = webhook("products/update", {"id": 1})
        # A stranger's request is refused on its headers: the body it announces never comes.
        stranger = {**headers, "X-Shopify-Shop-Domain": "stranger.myshopify.com"}
        status, elapsed = _raw_request(s.url, _head(s.url, stranger, f"Content-Length: {len(raw)}"), b"")
        assert (status, elapsed < 1.5) == (401, True)
        # Two senders that trickle their bodies hold both slots until their deadline...
        slow = [
            socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=10) for _ in "ab"
        ]
        for sock in slow:
            sock.sendall(_head(s.url, headers, f"Content-Length: {len(raw)}") + raw[:3])
        time.sleep(0.5)
        # ...so a third request is turned away at once, told when to come back.
        started = time.monotonic()
        turned_away = httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10)
        assert (turned_away.status_code, turned_away.headers.get("retry-after")) == (503, "1")
        assert time.monotonic() - started < 1.0
        # The trickling senders get 408 once their bodies are late; then there is room again.
        assert [_answer_status(sock) for sock in slow] == [408, 408]
        for sock in slow:
            sock.close()
        accepted = httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10)
        assert accepted.status_code == 200, accepted.text
        metrics = httpx.get(s.ops_url + "/metrics", timeout=10).text
    for reason in ("overloaded", "slow_body", "unknown_shop"):
        assert f'storesync_webhook_rejections_total{{reason="{reason}"}} ' in metrics, reason
    with db.connect() as conn:
        assert counts(conn) == (1, 1)


def test_declared_oversized_body_is_refused_before_it_is_read(db) -> None:
    with serving(db.settings, max_body_bytes=1000) as s:
        headers, _ = webhook("products/update")
        status, elapsed = _raw_request(
            s.url, _head(s.url, headers, f"Content-Length: {50 * 1024 * 1024}"), b"{" + b" " * 100
        )
        metrics = httpx.get(s.ops_url + "/metrics", timeout=10).text
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
    metrics = httpx.get(served.ops_url + "/metrics", timeout=10).text
    assert 'storesync_webhook_api_version_mismatch_total{version="2025-07"} 1.0' in metrics


async def test_a_delivery_postgres_refuses_never_fails_its_batch_mates(db) -> None:
    """The batch's backstop: a job payload jsonb refuses (here a lone surrogate that got past
    `parse_body`) fails its shared transaction; the others are recorded again one by one and the
    refused one is kept, without its job, as `unparseable`."""
    from psycopg_pool import AsyncConnectionPool

    from storesync.web.batcher import DeliveryBatcher
    from storesync.web.ingest import ACCEPTED, Delivery
    from storesync.web.topics import job_spec

    def delivery(n: int, title: str) -> Delivery:
        body = {"id": n, "title": title}
        job = job_spec(
            topic="products/update",
            shop=PARENT,
            merchant_id="acme",
            webhook_id=f"wh-{n}",
            event_id=None,
            triggered_at=None,
            api_version=None,
            body=body,
        )
        raw = json.dumps(body).encode()
        return Delivery(f"wh-{n}", PARENT, "acme", "products/update", None, None, None, raw, ACCEPTED, job)

    async with AsyncConnectionPool(db.dsn, min_size=1, max_size=2, open=False) as pool:
        batcher = DeliveryBatcher(pool, statement_timeout_ms=5000, max_batch=64, max_in_flight=1)
        # The first starts a transaction of its own; the rest wait for it and share the next one.
        deliveries = [delivery(0, "first")] + [delivery(n, "\ud800" if n == 3 else "ok") for n in range(1, 6)]
        results = await asyncio.gather(*(batcher.record(d) for d in deliveries))
        await batcher.close()
    assert [(r.first, r.status) for r in results] == [(True, "accepted")] * 3 + [(True, "unparseable")] + [
        (True, "accepted")
    ] * 2
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT webhook_id, status FROM webhook_deliveries ORDER BY webhook_id"
        ).fetchall()
        jobs = sorted(r[0] for r in conn.execute("SELECT payload->>'delivery_id' FROM jobs"))
    assert rows == [(f"wh-{n}", "unparseable" if n == 3 else "accepted") for n in range(6)]
    assert jobs == [f"wh-{n}" for n in range(6) if n != 3]
