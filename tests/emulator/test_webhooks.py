"""The emulator's webhook sender against a real HTTP receiver on loopback.

Signatures are checked with hashlib/hmac directly, never with the sender's own signing code.
time_scale=1e-4 turns Shopify's 4-hour retry schedule into about 1.4 s.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import pytest

from storesync.emulator.webhooks import (
    TOPIC_ENUM_BY_REST,
    TOPIC_REST_BY_ENUM,
    DeliveryFaults,
    SubscriptionStore,
    UnknownTopicError,
    WebhookSender,
    enum_topic,
    rest_topic,
    retry_schedule,
)
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

PARENT = "parent.myshopify.com"
CHILD = "child-a.myshopify.com"
SECRETS = {PARENT: "parent-secret-Ω", CHILD: "child-secret"}
SCALE = 1e-4


def expected_hmac(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    s = WebhookSender(SECRETS.__getitem__, time_scale=SCALE, min_timeout_s=0.2)
    await s.start()
    yield s
    await s.stop()


# --------------------------------------------------------------------------- subscriptions


def test_topics_map_between_graphql_enum_and_rest_forms():
    assert rest_topic("PRODUCTS_UPDATE") == "products/update"
    assert rest_topic("products/update") == "products/update"
    assert enum_topic("inventory_levels/update") == "INVENTORY_LEVELS_UPDATE"
    assert enum_topic("ORDERS_CANCELLED") == "ORDERS_CANCELLED"
    for enum, rest in TOPIC_REST_BY_ENUM.items():
        assert TOPIC_ENUM_BY_REST[rest] == enum
        # orders/partially_fulfilled, fulfillment_orders/order_routing_complete: "/" is the
        # only separator that tells resource from action, so compare that way round
        assert rest.replace("/", "_").upper() == enum and rest.count("/") == 1
    with pytest.raises(UnknownTopicError):
        rest_topic("products/explode")


def test_subscription_store_adds_lists_and_removes_per_shop():
    store = SubscriptionStore()
    a = store.add(PARENT, "PRODUCTS_UPDATE", "http://127.0.0.1:1/a")
    b = store.add(PARENT, "inventory_levels/update", "http://127.0.0.1:1/b")
    c = store.add(CHILD, "products/update", "http://127.0.0.1:1/c")
    assert a.id == "gid://shopify/WebhookSubscription/1" and c.legacy_id == 3
    assert a.topic == "products/update" and a.topic_enum == "PRODUCTS_UPDATE" and a.format == "JSON"
    assert store.list(PARENT) == [a, b]
    assert store.list(topic="PRODUCTS_UPDATE") == [a, c]
    assert store.list(CHILD, "products/update") == [c]
    assert store.remove(a.id, shop=CHILD) is None  # another shop's subscription is not yours
    assert store.remove(a.id, shop=PARENT) == a
    assert store.remove(a.id) is None
    assert store.list(PARENT) == [b]
    assert [s for s, _ in store.removed()] == [a]


def test_subscription_store_rejects_bad_topic_url_and_format():
    store = SubscriptionStore()
    with pytest.raises(UnknownTopicError):
        store.add(PARENT, "PRODUCTS_EXPLODE", "http://127.0.0.1:1/a")
    with pytest.raises(ValueError, match="absolute http"):
        store.add(PARENT, "PRODUCTS_UPDATE", "/relative")
    with pytest.raises(ValueError, match="format"):
        store.add(PARENT, "PRODUCTS_UPDATE", "http://127.0.0.1:1/a", format="XML")
    assert store.list() == []


def test_retry_schedule_doubles_and_spans_four_hours():
    gaps = retry_schedule(8)
    assert len(gaps) == 7
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(gaps))
    assert sum(gaps) == pytest.approx(4 * 3600)


# --------------------------------------------------------------------------- delivery


async def test_delivery_carries_shopify_headers_and_a_signature_over_the_raw_body(rx, sender):
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
    payload = {"id": 632910392, "title": "Ipod Nano \u2013 8GB", "variants": [{"id": 1, "price": "199.00"}]}
    ids = await sender.emit(PARENT, "products/update", payload, event_id="evt-1")
    assert await sender.drain(5)

    [got] = rx.received
    h = got.headers
    assert h["x-shopify-hmac-sha256"] == expected_hmac(got.body, SECRETS[PARENT])
    assert h["x-shopify-hmac-sha256"] != expected_hmac(got.body, SECRETS[CHILD])
    assert json.loads(got.body) == payload
    assert h["x-shopify-topic"] == "products/update"
    assert h["x-shopify-shop-domain"] == PARENT
    assert h["x-shopify-api-version"] == "2026-10"
    assert h["x-shopify-webhook-id"] == ids[0]
    assert h["x-shopify-event-id"] == "evt-1"
    assert h["content-type"] == "application/json"
    triggered = datetime.fromisoformat(h["x-shopify-triggered-at"].replace("Z", "+00:00"))
    assert abs(triggered.timestamp() - time.time()) < 60

    [d] = sender.deliveries()
    assert (d.status, d.attempts, d.webhook_id, d.topic, d.shop) == (
        "delivered",
        1,
        ids[0],
        "products/update",
        PARENT,
    )


async def test_emit_goes_only_to_the_shops_subscriptions_for_that_topic(rx, sender):
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/parent-products"))
    sender.subscriptions.add(PARENT, "ORDERS_CREATE", rx.url("/parent-orders"))
    sender.subscriptions.add(CHILD, "PRODUCTS_UPDATE", rx.url("/child-products"))
    await sender.emit(CHILD, "PRODUCTS_UPDATE", {"id": 1})
    assert await sender.emit(CHILD, "ORDERS_CREATE", {"id": 2}) == []
    assert await sender.drain(5)
    assert [r.path for r in rx.received] == ["/child-products"]
    assert rx.received[0].headers["x-shopify-hmac-sha256"] == expected_hmac(
        rx.received[0].body, SECRETS[CHILD]
    )


async def test_one_action_shares_its_event_id_across_subscriptions_with_distinct_webhook_ids(rx, sender):
    sender.subscriptions.add(PARENT, "INVENTORY_LEVELS_UPDATE", rx.url("/engine"))
    sender.subscriptions.add(PARENT, "INVENTORY_LEVELS_UPDATE", rx.url("/audit"))
    await sender.emit(PARENT, "inventory_levels/update", {"inventory_item_id": 7, "available": 3})
    await sender.emit(PARENT, "inventory_levels/update", {"inventory_item_id": 7, "available": 2})
    assert await sender.drain(5)

    got = rx.received
    assert len(got) == 4
    by_event: dict[str, list] = {}
    for r in got:
        by_event.setdefault(r.headers["x-shopify-event-id"], []).append(r)
    assert len(by_event) == 2
    for deliveries in by_event.values():
        assert sorted(r.path for r in deliveries) == ["/audit", "/engine"]
        assert len({r.headers["x-shopify-webhook-id"] for r in deliveries}) == 2
        assert len({r.body for r in deliveries}) == 1  # serialised once
    assert len({r.headers["x-shopify-webhook-id"] for r in got}) == 4


async def test_emit_returns_before_the_receiver_answers(rx, sender):
    rx.script("/slow", ("hang", 0.5))
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/slow"))
    started = time.monotonic()
    await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 1})
    returned_after = time.monotonic() - started
    assert rx.received == [] and sender.pending == 1
    await rx.wait_for(1)
    # Whatever the machine load, emit returned before the receiver even had the request.
    assert returned_after < time.monotonic() - started
    assert await sender.drain(10)


# --------------------------------------------------------------------------- retries


async def test_receiver_500_is_retried_with_the_same_webhook_id_and_body(rx, sender):
    rx.script("/hooks", 500, 503, 200)
    sender.subscriptions.add(PARENT, "ORDERS_CREATE", rx.url("/hooks"))
    [webhook_id] = await sender.emit(PARENT, "ORDERS_CREATE", {"id": 450789469, "line_items": []})
    assert await sender.drain(10)

    got = rx.received
    assert [r.answered for r in got] == [500, 503, 200]
    assert {r.headers["x-shopify-webhook-id"] for r in got} == {webhook_id}
    assert len({r.headers["x-shopify-event-id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    assert all(r.headers["x-shopify-hmac-sha256"] == expected_hmac(r.body, SECRETS[PARENT]) for r in got)
    # Backoff: the second gap is twice the first (scaled), give or take scheduling noise.
    gap1, gap2 = got[1].at - got[0].at, got[2].at - got[1].at
    assert gap1 >= retry_schedule()[0] * SCALE * 0.9 and gap2 > gap1
    [d] = sender.deliveries()
    assert (d.status, d.attempts, d.last_error) == ("delivered", 3, None)


async def test_a_receiver_slower_than_the_timeout_gets_the_delivery_again(rx, sender):
    rx.script("/hooks", ("hang", 0.8), 200)
    sender.subscriptions.add(PARENT, "PRODUCTS_CREATE", rx.url("/hooks"))
    [webhook_id] = await sender.emit(PARENT, "PRODUCTS_CREATE", {"id": 1})
    assert await sender.drain(10)
    got = rx.received
    assert len(got) == 2
    assert {r.headers["x-shopify-webhook-id"] for r in got} == {webhook_id}
    [d] = sender.deliveries()
    assert d.status == "delivered" and d.attempts == 2


async def test_eight_failed_attempts_record_a_failure_and_remove_the_api_subscription(rx, sender):
    rx.script("/api", then=500)
    rx.script("/config", then=500)
    api_sub = sender.subscriptions.add(PARENT, "PRODUCTS_DELETE", rx.url("/api"), source="api")
    config_sub = sender.subscriptions.add(PARENT, "PRODUCTS_DELETE", rx.url("/config"), source="config")
    await sender.emit(PARENT, "PRODUCTS_DELETE", {"id": 1})
    assert await sender.drain(15)

    assert len(rx.on("/api")) == 8 and len(rx.on("/config")) == 8
    for d in sender.deliveries():
        assert (d.status, d.attempts, d.last_error, d.last_status_code) == ("failed", 8, "HTTP 500", 500)
    # Shopify deletes subscriptions created through the Admin API after repeated failures.
    assert sender.subscriptions.list(PARENT) == [config_sub]
    [(removed, reason)] = sender.subscriptions.removed()
    assert removed == api_sub and "failed" in reason

    # Nothing more goes to the removed subscription.
    rx.script("/config", then=200)
    await sender.emit(PARENT, "PRODUCTS_DELETE", {"id": 2})
    assert await sender.drain(5)
    assert len(rx.on("/api")) == 8 and len(rx.on("/config")) == 9


async def test_unreachable_callback_is_retried_then_failed(sender):
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", "http://127.0.0.1:9/nothing-listens-here")
    await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 1})
    assert await sender.drain(15)
    [d] = sender.deliveries()
    assert d.status == "failed" and d.attempts == 8 and "ConnectError" in (d.last_error or "")


# --------------------------------------------------------------------------- faults


async def test_duplicate_fault_delivers_the_same_webhook_id_twice(rx, sender):
    sender.set_faults(DeliveryFaults(duplicate_p=1.0, seed=1))
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
    ids = [
        *(await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 1})),
        *(await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 2})),
    ]
    assert await sender.drain(5)

    got = rx.received
    assert len(got) == 4
    for webhook_id in ids:
        copies = [r for r in got if r.headers["x-shopify-webhook-id"] == webhook_id]
        assert len(copies) == 2
        assert copies[0].body == copies[1].body
        assert copies[0].headers["x-shopify-hmac-sha256"] == copies[1].headers["x-shopify-hmac-sha256"]
    assert sorted(d.duplicate for d in sender.deliveries()) == [False, False, True, True]


async def test_reorder_fault_lets_a_later_event_arrive_before_an_earlier_one(rx, sender):
    sender.subscriptions.add(PARENT, "INVENTORY_LEVELS_UPDATE", rx.url("/hooks"))
    sender.set_faults(DeliveryFaults(reorder_p=1.0))
    [first] = await sender.emit(PARENT, "INVENTORY_LEVELS_UPDATE", {"available": 5})
    sender.set_faults(DeliveryFaults())
    [second] = await sender.emit(PARENT, "INVENTORY_LEVELS_UPDATE", {"available": 4})
    await rx.wait_for(2, timeout=5)
    assert await sender.drain(5)

    assert [r.headers["x-shopify-webhook-id"] for r in rx.received] == [second, first]
    assert [json.loads(r.body)["available"] for r in rx.received] == [4, 5]
    held = next(d for d in sender.deliveries() if d.webhook_id == first)
    assert held.reordered and held.status == "delivered"


async def test_a_held_delivery_still_goes_out_when_nothing_follows_it(rx):
    sender = WebhookSender(
        SECRETS.__getitem__, time_scale=SCALE, faults=DeliveryFaults(reorder_p=1.0, reorder_window_s=0.1)
    )
    try:
        sender.subscriptions.add(PARENT, "INVENTORY_LEVELS_UPDATE", rx.url("/hooks"))
        await sender.emit(PARENT, "INVENTORY_LEVELS_UPDATE", {"available": 5})
        await rx.wait_for(1, timeout=5)  # not drained: the window alone released it
    finally:
        await sender.stop()


async def test_drop_fault_never_delivers_and_is_logged(rx, sender):
    sender.set_faults(DeliveryFaults(drop_p=1.0))
    sender.subscriptions.add(PARENT, "ORDERS_CREATE", rx.url("/hooks"))
    [webhook_id] = await sender.emit(PARENT, "ORDERS_CREATE", {"id": 1})
    assert await sender.drain(2)
    await asyncio.sleep(0.1)
    assert rx.received == []
    [d] = sender.deliveries()
    assert (d.webhook_id, d.status, d.attempts) == (webhook_id, "dropped", 0)


async def test_faults_with_a_seed_repeat_the_same_choices(rx):
    async def run() -> list[tuple[str, bool]]:
        # A generous response timeout: on a loaded machine a 0.2 s timeout makes the sender retry
        # (at-least-once, as Shopify does), and the retry is not what this test is about.
        s = WebhookSender(
            SECRETS.__getitem__,
            time_scale=SCALE,
            min_timeout_s=10.0,
            faults=DeliveryFaults(0.3, 0.0, 0.05, 0.4, seed=42),
        )
        try:
            s.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
            for i in range(30):
                await s.emit(PARENT, "PRODUCTS_UPDATE", {"id": i})
            assert await s.drain(10)
            return [(d.status, d.duplicate, d.attempts) for d in s.deliveries()]
        finally:
            await s.stop()

    first, second = await run(), await run()
    assert [(st, dup) for st, dup, _ in first] == [(st, dup) for st, dup, _ in second]
    statuses = {status for status, _, _ in first}
    assert statuses == {"delivered", "dropped"}  # both happened, so the seed really chose
    assert any(dup for _, dup, _ in first)
    # Every attempt of a delivered webhook reached the receiver; a dropped one never did.
    attempts = sum(n for status, _, n in first + second if status == "delivered")
    assert len(rx.received) == attempts >= 2 * sum(1 for st, _, _ in first if st == "delivered")


async def test_delay_fault_delays_but_delivers_everything(rx, sender):
    sender.set_faults(DeliveryFaults(delay_max_s=0.3, seed=3))
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
    ids = set()
    for i in range(10):
        ids.update(await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": i}))
    assert await sender.drain(5)
    assert {r.headers["x-shopify-webhook-id"] for r in rx.received} == ids


# --------------------------------------------------------------------------- lifecycle


async def test_drain_reports_false_while_a_delivery_is_still_pending(rx, sender):
    rx.script("/slow", ("hang", 0.6))
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/slow"))
    await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 1})
    assert await sender.drain(0.05) is False
    assert await sender.drain(10) is True


async def test_stop_cancels_pending_deliveries_cleanly(rx, recwarn):
    rx.script("/hooks", then=500)
    sender = WebhookSender(SECRETS.__getitem__, time_scale=1.0)  # real 4-hour schedule
    sender.subscriptions.add(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
    await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 1})
    await rx.wait_for(1)
    await asyncio.sleep(0.05)
    await sender.stop()
    [d] = sender.deliveries()
    assert d.status == "cancelled" and d.attempts == 1
    assert sender.pending == 0
    assert [str(w.message) for w in recwarn] == []
    with pytest.raises(RuntimeError, match="stopped"):
        await sender.emit(PARENT, "PRODUCTS_UPDATE", {"id": 2})
