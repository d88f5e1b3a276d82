"""Orders as Shopify keeps them, over HTTP: routing to fulfillment orders by location priority,
cancels as refunds of type cancel, refunds, returns, order edits, locations going inactive, and
the webhook ids every control action answers with."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.emulator.helpers import PARENT, gql
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

TOPICS = [
    "ORDERS_CREATE",
    "ORDERS_CANCELLED",
    "ORDERS_UPDATED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    "FULFILLMENT_ORDERS_ORDER_ROUTING_COMPLETE",
    "RETURNS_APPROVE",
    "RETURNS_PROCESS",
    "RETURNS_CLOSE",
    "REVERSE_FULFILLMENT_ORDERS_DISPOSE",
    "INVENTORY_LEVELS_CONNECT",
    "INVENTORY_LEVELS_DISCONNECT",
    "LOCATIONS_DEACTIVATE",
]

LEVELS = """query($i: ID!) { inventoryItem(id: $i) { inventoryLevels(first: 10) { nodes {
  location { name } quantities(names: ["available", "committed", "on_hand"]) { name quantity } } } } }"""

FULFILLMENT_ORDERS = """query($id: ID!) { order(id: $id) { name sourceName displayFulfillmentStatus
  fulfillmentOrders(first: 10) { nodes { id status assignedLocation { name location { id } }
    lineItems(first: 10) { nodes { totalQuantity remainingQuantity sku lineItem { id } } } } }
  lineItems(first: 10) { nodes { id sku quantity currentQuantity unfulfilledQuantity } }
  refunds { refundLineItems(first: 10) { nodes { quantity restockType restocked location { name } } } } } }"""


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
def shop(emulator, rx):
    """Three locations in priority order (Shop location, North, South) and two products:
    MUG at Shop location 1 / North 5, HAT only at South (4)."""
    for topic in TOPICS:
        emulator.subscribe(PARENT, topic, rx.url("/hooks"))
    first = gql(emulator, PARENT, "{ locations(first: 1) { nodes { id } } }")["locations"]["nodes"][0]["id"]
    locs = {"Shop location": first} | {n: emulator.add_location(PARENT, n)["id"] for n in ("North", "South")}
    ids = {}
    for title, sku, stock in (("Mug", "MUG", {"Shop location": 1, "North": 5}), ("Hat", "HAT", {"South": 4})):
        pid = emulator.seed(
            PARENT,
            0,
            catalog=[
                {
                    "title": title,
                    "variants": [{"sku": sku, "available": {locs[n]: q for n, q in stock.items()}}],
                }
            ],
        )["products"][-1]
        v = gql(
            emulator,
            PARENT,
            "query($id: ID!) { product(id: $id) { variants(first: 1) { nodes { id inventoryItem { id } } } } }",
            {"id": pid},
        )
        node = v["product"]["variants"]["nodes"][0]
        ids[sku] = {"variant": node["id"], "item": node["inventoryItem"]["id"]}
    return {"emu": emulator, "rx": rx, "loc": locs, **ids}


def levels(emu, item: str) -> dict[str, dict[str, int]]:
    nodes = gql(emu, PARENT, LEVELS, {"i": item})["inventoryItem"]["inventoryLevels"]["nodes"]
    return {n["location"]["name"]: {q["name"]: q["quantity"] for q in n["quantities"]} for n in nodes}


def hooks(rx: WebhookReceiver, topic: str, count: int, timeout: float = 5.0) -> list[tuple[dict, dict]]:
    """(payload, headers) of the deliveries of `topic`, waiting for `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        got = [(json.loads(r.body), r.headers) for r in rx.received if r.headers["x-shopify-topic"] == topic]
        if len(got) >= count or time.monotonic() > deadline:
            assert len(got) == count, (topic, len(got), [r.headers["x-shopify-topic"] for r in rx.received])
            return got
        time.sleep(0.01)


def order_view(emu, order_id: int) -> dict:
    return gql(emu, PARENT, FULFILLMENT_ORDERS, {"id": f"gid://shopify/Order/{order_id}"})["order"]


def test_orders_are_routed_by_location_priority_and_commit_stock_where_assigned(shop):
    emu, rx = shop["emu"], shop["rx"]
    # Shop location has 1 mug: a 2-mug order goes whole to North, the next location that can.
    whole = emu.place_order(PARENT, [{"variant_id": shop["MUG"]["variant"], "quantity": 2}])
    assert whole["location_id"] is None and whole["source_name"] == "web"
    fos = order_view(emu, whole["id"])["fulfillmentOrders"]["nodes"]
    assert [(fo["status"], fo["assignedLocation"]["name"]) for fo in fos] == [("OPEN", "North")]
    # No location has both: each line goes to the first location that has enough of it.
    split = emu.place_order(
        PARENT,
        [
            {"variant_id": shop["MUG"]["variant"], "quantity": 1},
            {"variant_id": shop["HAT"]["variant"], "quantity": 1},
        ],
    )
    fos = order_view(emu, split["id"])["fulfillmentOrders"]["nodes"]
    assert sorted((fo["assignedLocation"]["name"], fo["lineItems"]["nodes"][0]["sku"]) for fo in fos) == [
        ("Shop location", "MUG"),
        ("South", "HAT"),
    ]
    assert levels(emu, shop["MUG"]["item"]) == {
        "Shop location": {"available": 0, "committed": 1, "on_hand": 1},
        "North": {"available": 3, "committed": 2, "on_hand": 5},
        "South": {"available": 0, "committed": 0, "on_hand": 0},
    }
    # routing ends with one fulfillment_orders/order_routing_complete per fulfillment order,
    # naming it by gid; the control call answers the webhook ids it caused, per topic
    done = hooks(rx, "fulfillment_orders/order_routing_complete", 3)
    assert {p["fulfillment_order"]["id"] for p, _ in done} >= {fo["id"] for fo in fos}
    assert all(p["fulfillment_order"]["status"] == "open" for p, _ in done)
    sent = {h["x-shopify-webhook-id"] for _, h in hooks(rx, "orders/create", 2)}
    assert set(whole["webhooks"]["orders/create"]) | set(split["webhooks"]["orders/create"]) == sent
    assert len(split["webhooks"]["fulfillment_orders/order_routing_complete"]) == 2
    # More than any location has is refused (the variant denies overselling); a point-of-sale
    # order is assigned where it is sold, with its location in the payload.
    bad = emu.control.post(
        f"/_emulator/stores/{PARENT}/orders",
        json={"line_items": [{"variant_id": shop["HAT"]["variant"], "quantity": 9}]},
    )
    assert bad.status_code == 422 and "only 3 available, 9 ordered" in bad.json()["error"]
    pos = emu.place_order(
        PARENT, [{"variant_id": shop["MUG"]["variant"], "quantity": 1}], location_id=shop["loc"]["North"]
    )
    assert pos["location_id"] == int(shop["loc"]["North"].rsplit("/", 1)[1]) and pos["source_name"] == "pos"
    assert order_view(emu, pos["id"])["fulfillmentOrders"]["nodes"][0]["assignedLocation"]["name"] == "North"


def test_cancel_with_restock_is_a_refund_of_type_cancel_at_the_committed_locations(shop):
    emu, rx = shop["emu"], shop["rx"]
    order = emu.place_order(
        PARENT,
        [
            {"variant_id": shop["MUG"]["variant"], "quantity": 1},
            {"variant_id": shop["HAT"]["variant"], "quantity": 2},
        ],
    )
    cancelled = emu.cancel_order(PARENT, order["id"], restock=True)
    assert cancelled["cancelled_at"] and cancelled["financial_status"] == "refunded"
    [refund] = cancelled["refunds"]
    lines = {rl["line_item"]["sku"]: rl for rl in refund["refund_line_items"]}
    assert {k: (v["restock_type"], v["quantity"], v["location_id"]) for k, v in lines.items()} == {
        "MUG": ("cancel", 1, int(shop["loc"]["Shop location"].rsplit("/", 1)[1])),
        "HAT": ("cancel", 2, int(shop["loc"]["South"].rsplit("/", 1)[1])),
    }
    assert all(
        li["current_quantity"] == 0 and li["fulfillable_quantity"] == 0 for li in cancelled["line_items"]
    )
    [(created, headers)] = hooks(rx, "refunds/create", 1)
    assert created["order_id"] == order["id"] and created["id"] == refund["id"] and created["restock"] is True
    assert cancelled["webhooks"]["refunds/create"] == [headers["x-shopify-webhook-id"]]
    assert hooks(rx, "orders/cancelled", 1)[0][0]["refunds"][0]["id"] == refund["id"]
    assert levels(emu, shop["HAT"]["item"])["South"] == {"available": 4, "committed": 0, "on_hand": 4}
    view = order_view(emu, order["id"])
    assert {fo["status"] for fo in view["fulfillmentOrders"]["nodes"]} == {"CANCELLED"}
    assert {(x["restockType"], x["restocked"]) for x in view["refunds"][0]["refundLineItems"]["nodes"]} == {
        ("CANCEL", True)
    }
    # without restock the committed units leave the stock
    other = emu.place_order(PARENT, [{"variant_id": shop["HAT"]["variant"], "quantity": 1}])
    gone = emu.cancel_order(PARENT, other["id"], restock=False)
    assert gone["refunds"][0]["refund_line_items"][0]["restock_type"] == "no_restock"
    assert levels(emu, shop["HAT"]["item"])["South"] == {"available": 3, "committed": 0, "on_hand": 3}


def test_refund_and_return_restock_fulfilled_units_where_told(shop):
    emu, rx = shop["emu"], shop["rx"]
    order = emu.place_order(PARENT, [{"variant_id": shop["MUG"]["variant"], "quantity": 3}])  # to North
    line = order["line_items"][0]["id"]
    early = emu.control.post(
        f"/_emulator/stores/{PARENT}/orders/{order['id']}/returns",
        json={"line_items": [{"line_item_id": line, "quantity": 1}]},
    )
    assert early.status_code == 422 and "only fulfilled items" in early.json()["error"]
    emu.fulfill_order(PARENT, order["id"])
    assert levels(emu, shop["MUG"]["item"])["North"] == {"available": 2, "committed": 0, "on_hand": 2}
    # a refund with restock type return puts a shipped unit back at the location named
    refund = emu.refund_order(
        PARENT,
        order["id"],
        [
            {
                "line_item_id": line,
                "quantity": 1,
                "restock_type": "return",
                "location_id": shop["loc"]["Shop location"],
            }
        ],
    )
    assert refund["refund_line_items"][0]["restock_type"] == "return"
    assert levels(emu, shop["MUG"]["item"])["Shop location"]["available"] == 2
    # the returns flow: created open, disposed (restocked where it shipped from), refunded, closed
    ret = emu.return_order(PARENT, order["id"], [{"line_item_id": line, "quantity": 1}])
    assert ret["status"] == "closed" and ret["return_line_items"][0]["processed_quantity"] == 1
    [(dispose, _)] = hooks(rx, "reverse_fulfillment_orders/dispose", 1)
    [d] = dispose["dispositions"]
    assert (d["type"], d["quantity"], d["location"]["id"]) == (
        "restocked",
        1,
        int(shop["loc"]["North"].rsplit("/", 1)[1]),
    )
    assert d["reverse_fulfillment_order_line_item"]["fulfillment_line_item"]["line_item"]["id"] == line
    assert levels(emu, shop["MUG"]["item"])["North"] == {"available": 3, "committed": 0, "on_hand": 3}
    # the return's refund moves no stock: its restock was the disposition
    refunds = [p for p, _ in hooks(rx, "refunds/create", 2)]
    by_return = next(p for p in refunds if p["return"])
    assert by_return["refund_line_items"][0]["restock_type"] == "no_restock" and by_return["restock"] is False
    assert {t: len(ret["webhooks"][t]) for t in ("returns/approve", "returns/process", "returns/close")} == {
        "returns/approve": 1,
        "returns/process": 1,
        "returns/close": 1,
    }
    # one unit is left with the customer: more can't be refunded as returned
    too_many = emu.control.post(
        f"/_emulator/stores/{PARENT}/orders/{order['id']}/refunds",
        json={"line_items": [{"line_item_id": line, "quantity": 2, "restock_type": "return"}]},
    )
    assert too_many.status_code == 422 and "only 1 fulfilled" in too_many.json()["error"]


def test_order_edit_removes_and_adds_units_and_says_so(shop):
    emu, rx = shop["emu"], shop["rx"]
    order = emu.place_order(PARENT, [{"variant_id": shop["MUG"]["variant"], "quantity": 3}])  # North
    line = order["line_items"][0]["id"]
    edited = emu.edit_order(
        PARENT,
        order["id"],
        changes=[{"line_item_id": line, "quantity": 1}],
        additions=[{"variant_id": shop["HAT"]["variant"], "quantity": 2}],
    )
    edit = edited["order_edit"]["line_items"]
    assert edit["removals"] == [{"id": line, "delta": 2}]
    [added] = edit["additions"]
    assert added["delta"] == 2
    assert levels(emu, shop["MUG"]["item"])["North"] == {"available": 4, "committed": 1, "on_hand": 5}
    assert levels(emu, shop["HAT"]["item"])["South"] == {"available": 2, "committed": 2, "on_hand": 4}
    [(updated, _)] = hooks(rx, "orders/updated", 1)
    quantities = {li["sku"]: (li["quantity"], li["current_quantity"]) for li in updated["line_items"]}
    assert quantities == {"MUG": (3, 1), "HAT": (2, 2)}
    assert len(hooks(rx, "orders/edited", 1)) == 1 and len(edited["webhooks"]["orders/edited"]) == 1
    view = order_view(emu, order["id"])
    assert sorted(fo["assignedLocation"]["name"] for fo in view["fulfillmentOrders"]["nodes"]) == [
        "North",
        "South",
    ]


def test_locations_deactivate_with_their_stock_moved_and_inventory_activation(shop):
    emu, rx = shop["emu"], shop["rx"]
    refused = emu.control.post(
        f"/_emulator/stores/{PARENT}/locations/{shop['loc']['South'].rsplit('/', 1)[1]}/deactivate"
    )
    assert refused.status_code == 422 and "HAS_ACTIVE_INVENTORY_ERROR" in refused.json()["error"]
    gone = emu.deactivate_location(PARENT, shop["loc"]["South"], shop["loc"]["North"])
    assert gone["active"] is False and len(gone["webhooks"]["locations/deactivate"]) == 1
    assert levels(emu, shop["HAT"]["item"]) == {
        "Shop location": {"available": 0, "committed": 0, "on_hand": 0},
        "North": {"available": 4, "committed": 0, "on_hand": 4},
    }
    data = gql(
        emu,
        PARENT,
        """query($i: ID!, $l: ID!) { locations(first: 5, includeInactive: true) { nodes { name isActive } }
        inventoryItem(id: $i) { active: inventoryLevel(locationId: $l) { id }
          kept: inventoryLevel(locationId: $l, includeInactive: true) { isActive } } }""",
        {"i": shop["HAT"]["item"], "l": shop["loc"]["South"]},
    )
    assert {n["name"]: n["isActive"] for n in data["locations"]["nodes"]}["South"] is False
    assert data["inventoryItem"]["active"] is None and data["inventoryItem"]["kept"] == {"isActive": False}
    emu.activate_location(PARENT, shop["loc"]["South"])
    # inventoryDeactivate stops stocking an item at a location; inventoryActivate starts again
    level = gql(
        emu,
        PARENT,
        "query($i: ID!, $l: ID!) { inventoryItem(id: $i) { inventoryLevel(locationId: $l) { id } } }",
        {"i": shop["MUG"]["item"], "l": shop["loc"]["South"]},
    )["inventoryItem"]["inventoryLevel"]["id"]
    off = gql(
        emu,
        PARENT,
        "mutation($id: ID!) { inventoryDeactivate(inventoryLevelId: $id) { userErrors { message } } }",
        {"id": level},
    )
    assert off["inventoryDeactivate"]["userErrors"] == []
    on = gql(
        emu,
        PARENT,
        """mutation($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l, available: 6)
        @idempotent(key: "activate-1") { inventoryLevel { isActive quantities(names: ["available"]) { quantity } }
        userErrors { message } } }""",
        {"i": shop["MUG"]["item"], "l": shop["loc"]["South"]},
    )["inventoryActivate"]
    assert on["userErrors"] == [] and on["inventoryLevel"] == {
        "isActive": True,
        "quantities": [{"quantity": 6}],
    }
    [(disconnect, _)] = hooks(rx, "inventory_levels/disconnect", 1)
    [(connect, _)] = hooks(rx, "inventory_levels/connect", 1)
    south = int(shop["loc"]["South"].rsplit("/", 1)[1])
    assert disconnect["location_id"] == connect["location_id"] == south and connect["available"] == 6


def test_a_stores_own_record_of_orders_accounts_for_every_unit_it_moved(emulator):
    """`demo.comparison.stock_moves` (what bench/chaos judges the parent by) reads a snapshot's
    orders, refunds and returns: per SKU and location, start - sold + restocked is the level now,
    through sales at two locations, a cancel with restock, refunds of unfulfilled (cancel) and
    shipped (return) units, and a return processed with restock."""
    from storesync.demo.comparison import inventory_view, stock_moves

    shop = "child-a.myshopify.com"
    emulator.seed(shop, products=2, quantity=20, locations=["Warehouse"])
    snap = emulator.snapshot(shop)
    start = inventory_view(snap)
    locations = {loc["name"]: loc["id"] for loc in snap["locations"]}
    variants = [v["admin_graphql_api_id"] for p in snap["products"] for v in p["variants"]]

    def order(variant: str, quantity: int, where: str) -> dict:
        return emulator.place_order(shop, [{"variant_id": variant, "quantity": quantity}], locations[where])

    kept = order(variants[0], 2, "Shop location")
    cancelled = order(variants[1], 3, "Warehouse")
    emulator.cancel_order(shop, cancelled["id"], restock=True)
    refunded = order(variants[2], 4, "Warehouse")
    line = refunded["line_items"][0]["id"]
    emulator.refund_order(
        shop, refunded["id"], [{"line_item_id": line, "quantity": 1, "restock_type": "cancel"}]
    )
    emulator.refund_order(
        shop, refunded["id"], [{"line_item_id": line, "quantity": 1, "restock_type": "no_restock"}]
    )
    shipped = order(variants[3], 2, "Shop location")
    emulator.fulfill_order(shop, shipped["id"])
    emulator.refund_order(
        shop,
        shipped["id"],
        [{"line_item_id": shipped["line_items"][0]["id"], "quantity": 1, "restock_type": "return"}],
    )
    returned = order(variants[0], 3, "Warehouse")
    emulator.fulfill_order(shop, returned["id"])
    emulator.return_order(
        shop, returned["id"], [{"line_item_id": returned["line_items"][0]["id"], "quantity": 2}], restock=True
    )

    after = emulator.snapshot(shop)
    moves = stock_moves(after)
    assert sum(moves.sold.values()) == 2 + 3 + 4 + 2 + 3
    assert sum(moves.restocked.values()) == 3 + 1 + 1 + 2
    assert len(moves.sale_lines) == 5 and kept["line_items"][0]["id"] in {
        int(line_id.rsplit("/", 1)[1]) for line_id in moves.sale_lines
    }
    for key, level in start.items():
        assert inventory_view(after)[key] == level - moves.sold.get(key, 0) + moves.restocked.get(key, 0), key
