"""The `/_emulator/` webhook and fault routes, served by uvicorn with the sender on its loop."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storesync.emulator.control_webhooks import control_routes
from storesync.emulator.faults import GraphQLFaults
from storesync.emulator.webhooks import WebhookSender
from tests.support.webhook_receiver import WebhookReceiver, running_receiver, serve_app

PARENT = "parent.myshopify.com"
SECRET = "parent-secret"


@dataclass
class Harness:
    control: httpx.Client
    rx: WebhookReceiver
    sender: WebhookSender
    graphql_faults: GraphQLFaults


@pytest.fixture
def harness() -> Iterator[Harness]:
    sender = WebhookSender(lambda shop: SECRET, time_scale=1e-4)
    graphql_faults = GraphQLFaults()

    @asynccontextmanager
    async def lifespan(app):
        await sender.start()
        yield
        await sender.stop()

    async def emit(request: Request) -> JSONResponse:
        # Stand-in for a GraphQL mutation that triggers a webhook.
        body = await request.json()
        ids = await sender.emit(body["shop"], body["topic"], body["payload"])
        return JSONResponse({"webhook_ids": ids})

    routes = [
        *control_routes(sender, None, graphql_faults, shop_exists=lambda shop: shop == PARENT),
        Route("/test/emit", emit, methods=["POST"]),
    ]
    with (
        running_receiver() as rx,
        serve_app(Starlette(routes=routes, lifespan=lifespan)) as base_url,
        httpx.Client(base_url=base_url, timeout=10, trust_env=False) as control,
    ):
        yield Harness(control, rx, sender, graphql_faults)


def test_faults_put_replaces_both_sets_and_get_shows_them(harness):
    c = harness.control
    assert c.get("/_emulator/faults").json()["graphql"]["error_5xx_p"] == 0.0
    r = c.put(
        "/_emulator/faults",
        json={
            "graphql": {"latency_s": 0.1, "fail_nth": {"productSet": 2}},
            "webhooks": {"drop_p": 0.5, "seed": 4},
        },
    )
    assert r.status_code == 200
    assert harness.graphql_faults.config.fail_nth["productSet"].n == 2
    assert harness.sender.faults.drop_p == 0.5 and harness.sender.faults.seed == 4
    got = c.get("/_emulator/faults").json()
    assert got["graphql"]["latency_s"] == 0.1 and got["webhooks"]["drop_p"] == 0.5
    # A section left out resets to no faults.
    c.put("/_emulator/faults", json={"graphql": {"timeout_p": 0.1}})
    assert harness.sender.faults.drop_p == 0.0 and harness.graphql_faults.config.timeout_p == 0.1


def test_bad_faults_are_rejected_and_change_nothing(harness):
    c = harness.control
    c.put("/_emulator/faults", json={"webhooks": {"duplicate_p": 0.25}})
    r = c.put("/_emulator/faults", json={"webhooks": {"duplicate_p": 2}})
    assert r.status_code == 422 and r.json()["details"][0]["loc"] == "webhooks.duplicate_p"
    r = c.put("/_emulator/faults", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert harness.sender.faults.duplicate_p == 0.25


def test_subscriptions_created_listed_and_deleted_through_the_control_api(harness):
    c = harness.control
    r = c.post(
        "/_emulator/webhooks/subscriptions",
        json={"shop": PARENT, "topic": "products/update", "callback_url": harness.rx.url("/hooks")},
    )
    assert r.status_code == 201
    sub = r.json()
    assert sub["topic"] == "PRODUCTS_UPDATE" and sub["source"] == "config"
    assert sub["id"].startswith("gid://shopify/WebhookSubscription/")
    listed = c.get("/_emulator/webhooks/subscriptions", params={"shop": PARENT}).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]]

    bad = [
        ({"shop": PARENT, "topic": "PRODUCTS_EXPLODE", "callback_url": "http://x/y"}, 422),
        ({"shop": PARENT, "topic": "PRODUCTS_UPDATE", "callback_url": "not a url"}, 422),
        ({"shop": PARENT, "topic": "PRODUCTS_UPDATE", "callback_url": "\x1f"}, 422),  # httpx.InvalidURL
        ({"shop": PARENT, "topic": "PRODUCTS_UPDATE"}, 422),
        ({"shop": "ghost.myshopify.com", "topic": "PRODUCTS_UPDATE", "callback_url": "http://x/y"}, 404),
    ]
    for body, status in bad:
        assert c.post("/_emulator/webhooks/subscriptions", json=body).status_code == status, body
    assert len(c.get("/_emulator/webhooks/subscriptions").json()["subscriptions"]) == 1

    numeric = sub["id"].rsplit("/", 1)[1]
    assert c.delete(f"/_emulator/webhooks/subscriptions/{numeric}").status_code == 200
    assert c.delete(f"/_emulator/webhooks/subscriptions/{sub['id']}").status_code == 404
    listing = c.get("/_emulator/webhooks/subscriptions").json()
    assert listing["subscriptions"] == [] and listing["removed"][0]["id"] == sub["id"]


def test_drain_then_deliveries_show_what_was_sent(harness):
    c, rx = harness.control, harness.rx
    rx.script("/hooks", 500, then=200)
    c.post(
        "/_emulator/webhooks/subscriptions",
        json={"shop": PARENT, "topic": "ORDERS_CREATE", "callback_url": rx.url("/hooks")},
    )
    [webhook_id] = c.post(
        "/test/emit", json={"shop": PARENT, "topic": "orders/create", "payload": {"id": 1}}
    ).json()["webhook_ids"]
    drained = c.post("/_emulator/webhooks/drain", params={"timeout": 5}).json()
    assert drained == {"drained": True, "pending": 0}

    [d] = c.get("/_emulator/webhooks/deliveries", params={"shop": PARENT, "topic": "ORDERS_CREATE"}).json()[
        "deliveries"
    ]
    assert (d["id"], d["status"], d["attempts"], d["topic"]) == (webhook_id, "delivered", 2, "orders/create")
    assert c.get("/_emulator/webhooks/deliveries", params={"status": "failed"}).json()["deliveries"] == []
    assert c.get("/_emulator/webhooks/deliveries", params={"topic": "nope"}).status_code == 400
    assert c.post("/_emulator/webhooks/drain", params={"timeout": "soon"}).status_code == 400

    body = rx.received[-1].body
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert rx.received[-1].headers["x-shopify-hmac-sha256"] == expected
