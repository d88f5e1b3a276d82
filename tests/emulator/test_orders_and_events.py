"""Merchant-side actions (orders, cancels, admin edits) and the webhooks every write emits, in
Shopify's REST payload shapes, delivered over real HTTP to a real receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest

from storesync.commerce.operations import get_operation
from storesync.sync.adapters.shopify import PRODUCT_LIST_SIZES
from tests.emulator.helpers import OPERATIONS, PARENT, available, first_product, gql
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

TOPICS = [
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    "INVENTORY_LEVELS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_CANCELLED",
    "COLLECTIONS_CREATE",
    "COLLECTIONS_UPDATE",
    "COLLECTIONS_DELETE",
]


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
def hooked(emulator, rx):
    """The parent store subscribed to every topic, delivering to the receiver."""
    for topic in TOPICS:
        emulator.subscribe(PARENT, topic, rx.url("/hooks"))
    return emulator


def received(rx: WebhookReceiver, count: int, timeout: float = 5.0) -> list[tuple[str, dict, dict]]:
    """(topic, payload, headers) of the first `count` deliveries, in arrival order."""
    deadline = time.monotonic() + timeout
    while len(rx.received) < count:
        if time.monotonic() > deadline:
            got = [r.headers.get("x-shopify-topic") for r in rx.received]
            raise AssertionError(f"expected {count} webhooks, got {len(got)}: {got}")
        time.sleep(0.01)
    time.sleep(0.05)  # anything extra would show up now
    return [(r.headers["x-shopify-topic"], json.loads(r.body), r.headers) for r in rx.received]


def topics(events) -> list[str]:
    """Topics in emit order is not promised (deliveries run concurrently, as Shopify's do)."""
    return sorted(t for t, _, _ in events)


def payload(events, topic: str) -> dict:
    found = [p for t, p, _ in events if t == topic]
    assert len(found) == 1, (topic, found)
    return found[0]


def test_order_moves_available_to_committed_and_emits_three_topics(hooked, rx):
    hooked.seed(PARENT, products=1, quantity=10)
    p = first_product(hooked)
    v = p["variants"]["nodes"][0]
    item = v["inventoryItem"]["id"]
    order = hooked.place_order(PARENT, [{"variant_id": v["id"], "quantity": 3}], location_id=p["location"])
    assert order["line_items"][0]["quantity"] == 3 and order["line_items"][0]["sku"] == v["sku"]
    assert available(hooked, PARENT, item, p["location"]) == {"available": 7, "on_hand": 10, "committed": 3}

    events = received(rx, 3)
    assert topics(events) == ["inventory_levels/update", "orders/create", "products/update"]
    created = payload(events, "orders/create")
    assert created["admin_graphql_api_id"] == f"gid://shopify/Order/{created['id']}"
    assert created["line_items"][0]["variant_id"] == int(v["id"].rsplit("/", 1)[1])
    level = payload(events, "inventory_levels/update")
    assert level == {
        "inventory_item_id": int(item.rsplit("/", 1)[1]),
        "location_id": int(p["location"].rsplit("/", 1)[1]),
        "available": 7,
        "updated_at": level["updated_at"],
        "admin_graphql_api_id": level["admin_graphql_api_id"],
    }
    product = payload(events, "products/update")
    assert product["admin_graphql_api_id"] == p["id"]
    sold = next(x for x in product["variants"] if x["admin_graphql_api_id"] == v["id"])
    assert sold["inventory_item_id"] == int(item.rsplit("/", 1)[1]) and sold["inventory_quantity"] == 7
    # Each action's event has its own id; headers name the shop and topic.
    assert len({h["x-shopify-event-id"] for _, _, h in events}) == 3
    assert all(h["x-shopify-shop-domain"] == PARENT for _, _, h in events)


def test_webhook_signature_verifies_with_the_stores_secret(hooked, rx):
    hooked.seed(PARENT, products=1)
    p = first_product(hooked)
    hooked.place_order(PARENT, [{"variant_id": p["variants"]["nodes"][0]["id"], "quantity": 1}])
    received(rx, 3)
    secret = hooked.webhook_secret(PARENT).encode()
    for r in rx.received:
        digest = base64.b64encode(hmac.new(secret, r.body, hashlib.sha256).digest()).decode()
        assert hmac.compare_digest(digest, r.headers["x-shopify-hmac-sha256"])


def test_cancel_with_restock_puts_units_back_and_emits_cancelled(hooked, rx):
    hooked.seed(PARENT, products=1, quantity=5)
    p = first_product(hooked)
    v = p["variants"]["nodes"][0]
    order = hooked.place_order(PARENT, [{"variant_id": v["id"], "quantity": 2}])
    received(rx, 3)
    cancelled = hooked.cancel_order(PARENT, order["id"], restock=True)
    assert cancelled["cancelled_at"] and cancelled["cancel_reason"] == "customer"
    assert available(hooked, PARENT, v["inventoryItem"]["id"], p["location"]) == {
        "available": 5,
        "on_hand": 5,
        "committed": 0,
    }
    events = received(rx, 6)[3:]
    assert topics(events) == ["inventory_levels/update", "orders/cancelled", "products/update"]
    assert payload(events, "inventory_levels/update")["available"] == 5


def test_cancel_without_restock_keeps_units_out(emulator):
    emulator.seed(PARENT, products=1, quantity=5)
    p = first_product(emulator)
    v = p["variants"]["nodes"][0]
    order = emulator.place_order(PARENT, [{"variant_id": v["id"], "quantity": 2}])
    emulator.cancel_order(PARENT, order["id"], restock=False)
    assert available(emulator, PARENT, v["inventoryItem"]["id"], p["location"]) == {
        "available": 3,
        "on_hand": 3,
        "committed": 0,
    }
    again = emulator.control.post(f"/_emulator/stores/{PARENT}/orders/{order['id']}/cancel", json={})
    assert again.status_code == 422 and "already cancelled" in again.json()["error"]


def test_order_for_more_than_available_is_refused_and_changes_nothing(emulator):
    emulator.seed(PARENT, products=1, quantity=2)
    p = first_product(emulator)
    v = p["variants"]["nodes"][0]
    resp = emulator.control.post(
        f"/_emulator/stores/{PARENT}/orders", json={"line_items": [{"variant_id": v["id"], "quantity": 3}]}
    )
    assert resp.status_code == 422 and "only 2 available" in resp.json()["error"]
    split = emulator.control.post(
        f"/_emulator/stores/{PARENT}/orders",
        json={"line_items": [{"variant_id": v["id"], "quantity": 2}, {"variant_id": v["id"], "quantity": 1}]},
    )
    assert split.status_code == 422 and "3 ordered" in split.json()["error"]
    unknown = emulator.control.post(
        f"/_emulator/stores/{PARENT}/orders",
        json={"line_items": [{"variant_id": "gid://shopify/ProductVariant/1"}]},
    )
    assert unknown.status_code == 422
    assert emulator.snapshot(PARENT)["orders"] == []
    assert emulator.control.get("/_emulator/stores/nope.myshopify.com/snapshot").status_code == 404


def test_merchant_inventory_edit_and_product_edit_emit_webhooks(hooked, rx):
    hooked.seed(PARENT, products=1, quantity=10)
    p = first_product(hooked)
    v = p["variants"]["nodes"][0]
    hooked.set_inventory(PARENT, v["inventoryItem"]["id"], p["location"], 4)
    events = received(rx, 2)
    assert topics(events) == ["inventory_levels/update", "products/update"]
    assert payload(events, "inventory_levels/update")["available"] == 4
    edited = hooked.edit_product(PARENT, p["id"], title="Renamed", variants=[{"id": v["id"], "price": "5"}])
    assert edited["title"] == "Renamed"
    edit = [p for t, p, _ in received(rx, 3) if t == "products/update" and p["title"] == "Renamed"]
    assert len(edit) == 1 and edit[0]["variants"][0]["price"] == "5.00"
    bad = hooked.control.patch(
        f"/_emulator/stores/{PARENT}/products/{p['id'].rsplit('/', 1)[1]}", json={"colour": "red"}
    )
    assert bad.status_code == 422


def test_api_writes_emit_their_topics_in_rest_shapes(hooked, rx):
    create = gql(
        hooked, PARENT, get_operation("ProductSet").text, {"input": {"title": "Hat"}, **PRODUCT_LIST_SIZES}
    )
    pid = create["productSet"]["product"]["id"]
    coll = gql(hooked, PARENT, 'mutation { collectionCreate(input: {title: "Hats"}) { collection { id } } }')
    cid = coll["collectionCreate"]["collection"]["id"]
    gql(
        hooked,
        PARENT,
        "mutation($id: ID!, $p: [ID!]!) { collectionAddProducts(id: $id, productIds: $p) { userErrors { message } } }",
        {"id": cid, "p": [pid]},
    )
    gql(hooked, PARENT, (OPERATIONS / "collection_delete.graphql").read_text(), {"id": cid})
    gql(hooked, PARENT, (OPERATIONS / "product_delete.graphql").read_text(), {"id": pid})
    events = received(rx, 5)
    assert topics(events) == [
        "collections/create",
        "collections/delete",
        "collections/update",
        "products/create",
        "products/delete",
    ]
    product = payload(events, "products/create")
    assert product["id"] == int(pid.rsplit("/", 1)[1]) and product["handle"] == "hat"
    assert (
        product["variants"][0]["title"] == "Default Title" and "inventory_item_id" in product["variants"][0]
    )
    assert payload(events, "collections/create")["handle"] == "hats"
    assert "updated_at" in payload(events, "collections/update")
    assert payload(events, "collections/delete")["id"] == int(cid.rsplit("/", 1)[1])
    assert payload(events, "products/delete") == {"id": int(pid.rsplit("/", 1)[1])}


def test_inventory_mutation_emits_level_update_and_replay_emits_nothing(hooked, rx):
    hooked.seed(PARENT, products=1, quantity=10)
    p = first_product(hooked)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    inp = {
        "reason": "correction",
        "name": "available",
        "changes": [{"inventoryItemId": item, "locationId": p["location"], "delta": -1}],
    }
    adjust = (OPERATIONS / "inventory_adjust_quantities.graphql").read_text()
    gql(hooked, PARENT, adjust, {"input": inp, "idempotencyKey": "x"})
    gql(hooked, PARENT, adjust, {"input": inp, "idempotencyKey": "x"})
    events = received(rx, 2)
    assert topics(events) == ["inventory_levels/update", "products/update"]
    assert payload(events, "inventory_levels/update")["available"] == 9


def test_snapshot_holds_the_full_state(emulator):
    emulator.seed(PARENT, products=2, quantity=3)
    p = first_product(emulator)
    emulator.place_order(PARENT, [{"variant_id": p["variants"]["nodes"][0]["id"], "quantity": 1}])
    snap = emulator.snapshot(PARENT)
    assert snap["shop"] == PARENT and snap["plan"] == "standard"
    assert len(snap["products"]) == 2 and len(snap["orders"]) == 1
    assert len(snap["inventory_levels"]) == 4
    sold = next(lvl for lvl in snap["inventory_levels"] if lvl["sku"] == p["variants"]["nodes"][0]["sku"])
    assert (sold["available"], sold["committed"], sold["on_hand"]) == (2, 1, 3)
    assert emulator.snapshot("child-a.myshopify.com")["products"] == []


def test_seed_catalog_creates_products_exactly_as_given(emulator):
    loc = emulator.snapshot(PARENT)["locations"][0]["id"]
    out = emulator.seed(
        PARENT,
        products=0,
        catalog=[
            {"title": "Mug", "handle": "mug", "variants": [{"sku": "MUG-1", "price": "8", "available": 4}]},
            {
                "title": "Tee",
                "variants": [
                    {"sku": "TEE-S", "options": {"Size": "S"}, "available": {loc: 2}},
                    {"sku": "TEE-M", "options": {"Size": "M"}},
                ],
            },
        ],
    )
    assert len(out["products"]) == 2
    data = gql(
        emulator,
        PARENT,
        """{ products(first: 5) { nodes { handle options { name values }
        variants(first: 5) { nodes { sku price inventoryQuantity } } } } }""",
    )["products"]["nodes"]
    assert data[0] == {
        "handle": "mug",
        "options": [{"name": "Title", "values": ["Default Title"]}],
        "variants": {"nodes": [{"sku": "MUG-1", "price": "8.00", "inventoryQuantity": 4}]},
    }
    assert data[1]["options"] == [{"name": "Size", "values": ["S", "M"]}]
    assert [v["inventoryQuantity"] for v in data[1]["variants"]["nodes"]] == [2, 0]
    bad = emulator.control.post(
        f"/_emulator/stores/{PARENT}/seed", json={"catalog": [{"title": "Mug", "handle": "mug"}]}
    )
    assert bad.status_code == 422 and "exists" in bad.json()["error"]


def test_rest_timestamps_carry_the_shop_offset_and_match_graphql_utc(hooked, rx):
    from datetime import datetime

    hooked.seed(PARENT, products=1)
    p = first_product(hooked)
    v = p["variants"]["nodes"][0]
    hooked.set_inventory(PARENT, v["inventoryItem"]["id"], p["location"], 3)
    level = payload(received(rx, 2), "inventory_levels/update")
    assert not level["updated_at"].endswith("Z") and level["updated_at"][-6] in "+-"
    graphql = gql(
        hooked,
        PARENT,
        """query($i: ID!, $l: ID!) { inventoryItem(id: $i) {
        inventoryLevel(locationId: $l) { updatedAt } } shop { ianaTimezone } }""",
        {"i": v["inventoryItem"]["id"], "l": p["location"]},
    )
    utc = graphql["inventoryItem"]["inventoryLevel"]["updatedAt"]
    assert utc.endswith("Z") and graphql["shop"]["ianaTimezone"] == "America/New_York"
    assert datetime.fromisoformat(level["updated_at"]) == datetime.fromisoformat(utc.replace("Z", "+00:00"))


def test_a_receiver_500_gets_the_same_webhook_again_and_duplicates_follow_the_faults(emulator, rx):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    emulator.subscribe(PARENT, "ORDERS_CREATE", rx.url("/flaky"))
    rx.script("/flaky", 500, 500)
    emulator.place_order(PARENT, [{"variant_id": p["variants"]["nodes"][0]["id"], "quantity": 1}])
    attempts = received(rx, 3)
    assert [r.answered for r in rx.received] == [500, 500, 200]
    assert len({h["x-shopify-webhook-id"] for _, _, h in attempts}) == 1
    assert len({r.body for r in rx.received}) == 1

    emulator.set_faults(webhooks={"duplicate_p": 1.0, "seed": 3})
    emulator.place_order(PARENT, [{"variant_id": p["variants"]["nodes"][0]["id"], "quantity": 1}])
    dupes = received(rx, 5)[3:]
    assert dupes[0][2]["x-shopify-webhook-id"] == dupes[1][2]["x-shopify-webhook-id"]
    assert emulator.drain(5)


def test_product_set_with_inventory_quantities_stocks_the_new_variants_and_emits_their_levels(hooked, rx):
    """productSet's `variants[].inventoryQuantities` (what a backfill's copy sends): the created
    variants are stocked at those locations, each level emits inventory_levels/update, and the
    call costs what Shopify charges (10 + the objects selected: stock adds nothing)."""
    hooked._ok(hooked.control.post(f"/_emulator/stores/{PARENT}/locations", json={"name": "Warehouse"}))
    locations = gql(hooked, PARENT, "{ locations(first: 5) { nodes { id } } }")["locations"]["nodes"]
    loc1, loc2 = locations[0]["id"], locations[1]["id"]
    create = (OPERATIONS / "product_create_id.graphql").read_text()
    variables = {
        "identifier": None,
        "input": {
            "title": "Stocked",
            "handle": "stocked",
            "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
            "variants": [
                {
                    "optionValues": [{"optionName": "Size", "name": "S"}],
                    "sku": "ST-S",
                    "price": "5",
                    "inventoryQuantities": [
                        {"locationId": loc1, "name": "available", "quantity": 4},
                        {"locationId": loc2, "name": "available", "quantity": 0},
                    ],
                },
                {
                    "optionValues": [{"optionName": "Size", "name": "M"}],
                    "sku": "ST-M",
                    "price": "5",
                    "inventoryQuantities": [{"locationId": loc1, "name": "available", "quantity": 9}],
                },
            ],
        },
    }
    body = hooked.graphql(PARENT, create, variables)
    assert "errors" not in body and body["data"]["productSet"]["userErrors"] == []
    cost = body["extensions"]["cost"]
    # mutation 10 + product 1, whatever the variants and their stock; userErrors 1 more requested
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (12, 11)
    product = gql(
        hooked,
        PARENT,
        "query($id: ID!) { product(id: $id) { variants(first: 5) { nodes { sku inventoryItem { id } } } } }",
        {"id": body["data"]["productSet"]["product"]["id"]},
    )
    nodes = product["product"]["variants"]["nodes"]
    assert [n["sku"] for n in nodes] == ["ST-S", "ST-M"]
    s_item, m_item = (n["inventoryItem"]["id"] for n in nodes)
    assert available(hooked, PARENT, s_item, loc1)["available"] == 4
    assert available(hooked, PARENT, s_item, loc2)["available"] == 0
    assert available(hooked, PARENT, m_item, loc1)["available"] == 9

    events = received(rx, 3)  # a new level set to 0 changes nothing: no inventory_levels/update
    assert topics(events) == ["inventory_levels/update"] * 2 + ["products/create"]
    levels = sorted(
        (p["inventory_item_id"], p["available"]) for t, p, _ in events if t == "inventory_levels/update"
    )
    assert levels == sorted([(int(s_item.rsplit("/", 1)[1]), 4), (int(m_item.rsplit("/", 1)[1]), 9)])

    missing = hooked.graphql(
        PARENT,
        create,
        {
            **variables,
            "identifier": {"handle": "stocked-2"},
            "input": {
                **variables["input"],
                "handle": "stocked-2",
                "variants": [
                    {
                        **variables["input"]["variants"][0],
                        "inventoryQuantities": [
                            {
                                "locationId": "gid://shopify/Location/999999",
                                "name": "available",
                                "quantity": 1,
                            }
                        ],
                    },
                    variables["input"]["variants"][1],
                ],
            },
        },
    )
    errors = missing["data"]["productSet"]["userErrors"]
    assert errors and errors[0]["field"] == [
        "input",
        "variants",
        "0",
        "inventoryQuantities",
        "0",
        "locationId",
    ]
