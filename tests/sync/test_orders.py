"""Orders as stock movements: the same ledger keys whatever source describes a movement (a webhook
body, another webhook about the same refund, a GraphQL read of the order), each movement applied
once, at the location Shopify moved the stock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from storesync.sync.domain.inventory import EntryKind, Outcome
from storesync.sync.domain.orders import (
    needs_order_read,
    order_event_from_graphql,
    order_event_from_webhook,
    order_state,
    tracked,
    unapplied_part,
)
from storesync.sync.services.sales import apply_order_event
from tests.sync.builders import A_LOC1, A_LOC2, CHILD_A, P_LOC2
from tests.sync.test_inventory import CHILD_VARIANT_NUM, P_ITEM, make_net

VARIANT = f"gid://shopify/ProductVariant/{CHILD_VARIANT_NUM[CHILD_A]}"


def rest_order(qty: int = 2, *, current: int | None = None, refunds=(), location: str | None = None) -> dict:
    line = {"id": 70, "variant_id": CHILD_VARIANT_NUM[CHILD_A], "quantity": qty}
    if current is not None:
        line["current_quantity"] = current
    body = {
        "id": 7,
        "created_at": "2026-11-25T07:00:00-05:00",
        "line_items": [line],
        "refunds": list(refunds),
    }
    if location:
        body["location_id"] = location
    return body


def rest_refund(line_qty: int, qty: int, restock_type: str = "cancel", location: str | None = A_LOC1) -> dict:
    return {
        "id": 90,
        "order_id": 7,
        "refund_line_items": [
            {
                "id": 901,
                "line_item_id": 70,
                "quantity": qty,
                "restock_type": restock_type,
                "location_id": location,
                "line_item": {"id": 70, "variant_id": CHILD_VARIANT_NUM[CHILD_A], "quantity": line_qty},
            }
        ],
    }


def gql_order(
    qty: int = 2, current: int | None = None, *, location: str = A_LOC1, refunds=(), returns=()
) -> dict:
    return {
        "id": "gid://shopify/Order/7",
        "createdAt": "2026-11-25T12:00:00Z",
        "retailLocation": None,
        "lineItems": {
            "nodes": [
                {
                    "id": "gid://shopify/LineItem/70",
                    "quantity": qty,
                    "currentQuantity": qty if current is None else current,
                    "variant": {"id": VARIANT},
                    "product": {"id": "gid://shopify/Product/1"},
                }
            ]
        },
        "fulfillmentOrders": {
            "nodes": [
                {
                    "assignedLocation": {"location": {"id": location}},
                    "lineItems": {
                        "nodes": [{"totalQuantity": qty, "lineItem": {"id": "gid://shopify/LineItem/70"}}]
                    },
                }
            ]
        },
        "refunds": list(refunds),
        "returns": {"nodes": list(returns)},
    }


def gql_refund(qty: int, restock: str = "CANCEL", location: str | None = A_LOC1, rid: int = 901) -> dict:
    return {
        "id": "gid://shopify/Refund/90",
        "refundLineItems": {
            "nodes": [
                {
                    "id": f"gid://shopify/RefundLineItem/{rid}",
                    "quantity": qty,
                    "restockType": restock,
                    "location": {"id": location} if location else None,
                    "lineItem": {"id": "gid://shopify/LineItem/70"},
                }
            ]
        },
    }


def gql_return(disposed: list[tuple[int, str, int, str | None]]) -> dict:
    return {
        "id": "gid://shopify/Return/5",
        "reverseFulfillmentOrders": {
            "nodes": [
                {
                    "lineItems": {
                        "nodes": [
                            {
                                "fulfillmentLineItem": {"lineItem": {"id": "gid://shopify/LineItem/70"}},
                                "dispositions": [
                                    {
                                        "id": f"gid://shopify/ReverseFulfillmentOrderDisposition/{i}",
                                        "type": kind,
                                        "quantity": n,
                                        "location": {"id": loc} if loc else None,
                                    }
                                    for i, kind, n, loc in disposed
                                ],
                            }
                        ]
                    }
                }
            ]
        },
    }


def run(net, event):
    return asyncio.run(apply_order_event(net.ctx(CHILD_A), event, "delivery:x"))


def keys(net) -> list[tuple[str, str, int]]:
    return sorted((e.key.kind, e.key.ref, e.requested_delta) for e in net.ledger.entries.values())


def test_a_cancel_with_restock_seen_in_orders_cancelled_refunds_create_and_a_read_is_one_restock():
    """Shopify cancels with restock as a refund of restock type cancel: orders/cancelled lists it,
    refunds/create and a read of the order describe the same refund line: one entry."""
    net = make_net(10)
    sale = order_event_from_webhook(CHILD_A, "orders/create", rest_order(location=A_LOC1))
    cancelled = order_event_from_webhook(
        CHILD_A, "orders/cancelled", rest_order(refunds=[rest_refund(2, 2)], location=A_LOC1)
    )
    refund = order_event_from_webhook(CHILD_A, "refunds/create", rest_refund(2, 2))
    read = order_event_from_graphql(CHILD_A, gql_order(2, 0, refunds=[gql_refund(2)]))
    for event in (refund, cancelled, read, sale, refund, cancelled):
        state = order_state(asyncio.run(net.ledger.order_entries(CHILD_A, sale.order_id)))
        if needs_order_read(event, state):
            event = read
        run(net, event)
    assert net.level == 10
    assert keys(net) == [("restock", "gid://shopify/RefundLineItem/901", 2), ("sale", "2", -2)]


def test_units_an_edit_adds_are_counted_once_whichever_body_comes_first():
    """The line's quantity only grows: orders/updated after an edit that added a unit tops the
    sale up; an orders/create (the old quantity) delivered late adds nothing."""
    for first, second in (("create", "updated"), ("updated", "create")):
        net = make_net(10)
        bodies = {
            "create": rest_order(2, location=A_LOC1),
            "updated": rest_order(3, current=3, location=A_LOC1),
        }
        for which in (first, second, first):
            run(net, order_event_from_webhook(CHILD_A, f"orders/{which}", bodies[which]))
        assert net.level == 7, (first, second)
        assert sum(d for kind, _, d in keys(net) if kind == "sale") == -3


def test_units_an_edit_removed_are_restocked_where_the_line_was_committed_once():
    net = make_net(10)
    run(net, order_event_from_webhook(CHILD_A, "orders/create", rest_order(3, location=A_LOC1)))
    edited = rest_order(3, current=1, location=A_LOC1)  # two removed by an edit, nothing refunded
    for _ in range(3):
        run(net, order_event_from_webhook(CHILD_A, "orders/updated", edited))
    run(net, order_event_from_graphql(CHILD_A, gql_order(3, 1)))
    assert net.level == 9
    assert ("edit_removal", "2", 2) in keys(net)
    # a refund of the remaining unit is not taken for an edit
    refunded = rest_order(3, current=0, refunds=[rest_refund(3, 1)], location=A_LOC1)
    run(net, order_event_from_webhook(CHILD_A, "orders/updated", refunded))
    assert net.level == 10 and sum(d for k, _, d in keys(net) if k == "edit_removal") == 2


def test_a_return_restocks_each_disposition_once_at_its_location_and_its_refund_moves_nothing():
    net = make_net(10)
    net.parent.levels[(P_ITEM, P_LOC2)] = 4
    run(net, order_event_from_webhook(CHILD_A, "orders/create", rest_order(2, location=A_LOC1)))
    processed = gql_order(
        2,
        0,
        refunds=[gql_refund(2, "NO_RESTOCK", None)],
        returns=[gql_return([(1, "RESTOCKED", 1, A_LOC2), (2, "NOT_RESTOCKED", 1, None)])],
    )
    for _ in range(2):  # returns/process and reverse_fulfillment_orders/dispose both read it
        run(net, order_event_from_graphql(CHILD_A, processed))
    run(net, order_event_from_webhook(CHILD_A, "refunds/create", rest_refund(2, 2, "no_restock", None)))
    assert net.level == 8 and net.parent.levels[(P_ITEM, P_LOC2)] == 5
    assert ("restock", "gid://shopify/ReverseFulfillmentOrderDisposition/1", 1) in keys(net)


def test_a_sale_draws_from_the_parent_location_its_child_location_mirrors():
    net = make_net(10)
    net.parent.levels[(P_ITEM, P_LOC2)] = 4
    run(net, order_event_from_graphql(CHILD_A, gql_order(1, location=A_LOC2)))
    assert net.level == 10 and net.parent.levels[(P_ITEM, P_LOC2)] == 3


def test_an_online_order_names_no_location_so_it_is_read_and_never_guessed():
    online = order_event_from_webhook(CHILD_A, "orders/create", rest_order(1))
    assert needs_order_read(online, {})
    net = make_net(10)
    out = run(net, online)
    assert [o.outcome for o in out] == [Outcome.NO_LOCATION] and net.level == 10
    pos = order_event_from_webhook(CHILD_A, "orders/create", rest_order(1, location=A_LOC1))
    assert not needs_order_read(pos, {})
    # once its sale is in the ledger, later bodies of the order need no read
    run(net, pos)
    state = order_state(asyncio.run(net.ledger.order_entries(CHILD_A, online.order_id)))
    assert not needs_order_read(online, state)
    assert unapplied_part(online, state) is None


def test_an_order_placed_before_the_child_was_tracked_only_gives_back_what_it_restocks():
    net = make_net(10)
    body = rest_order(2, refunds=[rest_refund(2, 1)], location=A_LOC1)
    event = tracked(
        order_event_from_webhook(CHILD_A, "orders/cancelled", body), datetime(2026, 11, 26, tzinfo=UTC)
    )
    assert event.before_tracking
    run(net, event)
    assert net.level == 11 and [k for k, _, _ in keys(net)] == ["restock"]


@pytest.mark.parametrize("topic", ["orders/create", "orders/updated"])
def test_a_line_without_current_quantity_says_nothing_about_edits(topic):
    event = order_event_from_webhook(CHILD_A, topic, rest_order(2, location=A_LOC1))
    assert event.sales[0].edit_removed is None
    assert EntryKind.EDIT_REMOVAL.value == "edit_removal"
