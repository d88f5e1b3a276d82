import asyncio

from storesync.queue.payloads import decode, encode
from storesync.sync.domain.conflicts import LevelDecision
from storesync.sync.domain.linking import match_collections
from storesync.sync.domain.model import Collection, Link, LinkKind, LinkMap, MatchedBy
from storesync.sync.domain.orders import order_event_from_webhook
from storesync.sync.domain.payloads import SaleJob
from storesync.sync.domain.routing import (
    JOB_FAN_OUT_LEVEL,
    JOB_PRODUCT_TO_CHILD,
    JOB_SALE,
    route_level_decision,
    route_order_event,
    route_product_webhook,
)
from tests.sync.builders import B_LOC1, CHILD_A, CHILD_B, CHILD_C, P_LOC1, PARENT, merchant
from tests.sync.test_inventory import CHILD_ITEMS, P_ITEM, link_map, make_net, order


def test_a_parent_product_change_becomes_one_collapsing_job_per_child():
    routed = route_product_webhook(merchant(), PARENT, {"id": 7}, None, "delivery:1")
    assert [(j.kind, j.payload.child_shop, j.singleton_key) for j in routed.jobs] == [
        (JOB_PRODUCT_TO_CHILD, s, f"product:{s}:gid://shopify/Product/7") for s in (CHILD_A, CHILD_B, CHILD_C)
    ]
    assert all(j.lock_key == j.singleton_key and j.lane == "catalog" for j in routed.jobs)


def test_a_child_product_change_resyncs_it_from_its_parent_product_and_child_only_ones_are_left_alone():
    links = LinkMap(
        CHILD_A,
        [
            Link(
                LinkKind.PRODUCT,
                CHILD_A,
                "gid://shopify/Product/7",
                "gid://shopify/Product/70",
                MatchedBy.SKU,
            )
        ],
    )
    routed = route_product_webhook(
        merchant(), CHILD_A, {"admin_graphql_api_id": "gid://shopify/Product/70"}, links, "d"
    )
    assert [(j.payload.child_shop, j.payload.parent_product_id) for j in routed.jobs] == [
        (CHILD_A, "gid://shopify/Product/7")
    ]
    assert route_product_webhook(merchant(), CHILD_A, {"id": 71}, links, "d").ignored


def test_a_child_order_becomes_one_locked_sale_job_per_parent_item():
    body = order(CHILD_A, 1, qty=2)
    body["line_items"].append({"id": 11, "variant_id": 555, "quantity": 1})  # not linked
    routed = route_order_event(
        merchant(),
        CHILD_A,
        order_event_from_webhook(CHILD_A, "orders/create", body),
        link_map(CHILD_A),
        "delivery:9",
    )
    (job,) = routed.jobs
    assert (job.kind, job.lock_key, job.lane) == (JOB_SALE, f"inventory:{P_ITEM}", "inventory")
    assert routed.unlinked == ["gid://shopify/ProductVariant/555"]
    # the job's payload is everything its handler needs
    net = make_net(10)
    from storesync.sync.services.sales import apply_order_event

    asyncio.run(
        apply_order_event(net.ctx(CHILD_A), decode(SaleJob, encode(job.payload)).event, job.payload.cause)
    )
    assert net.level == 8


def test_the_parents_own_orders_are_not_routed():
    event = order_event_from_webhook(PARENT, "orders/create", order(CHILD_A, 1))
    assert route_order_event(merchant(), PARENT, event, None, "d").ignored


def test_order_events_survive_the_job_payload():
    ev = order_event_from_webhook(
        CHILD_A,
        "orders/cancelled",
        order(
            CHILD_A,
            3,
            qty=2,
            refunds=[
                {
                    "id": 1,
                    "refund_line_items": [
                        {"id": 9, "line_item_id": 30, "quantity": 1, "restock_type": "cancel"}
                    ],
                }
            ],
        ),
    )
    assert decode(SaleJob, encode(SaleJob(CHILD_A, ev, P_ITEM, "delivery:1"))).event == ev


def test_level_decisions_route_to_fan_out_or_a_delayed_reassert():
    m = merchant()
    assert (
        route_level_decision(
            m, PARENT, LevelDecision.ECHO, item=P_ITEM, location=P_LOC1, child_links=None, cause="d"
        ).ignored
        == "echo"
    )
    (fan,) = route_level_decision(
        m, PARENT, LevelDecision.FAN_OUT, item=P_ITEM, location=P_LOC1, child_links=None, cause="d"
    ).jobs
    assert (fan.kind, fan.payload.only, fan.lock_key) == (JOB_FAN_OUT_LEVEL, None, f"inventory:{P_ITEM}")
    (re,) = route_level_decision(
        m,
        CHILD_B,
        LevelDecision.REASSERT,
        item=CHILD_ITEMS[CHILD_B],
        location=B_LOC1,
        child_links=link_map(CHILD_B),
        cause="d",
    ).jobs
    assert list(re.payload.only) == [CHILD_B] and re.delay_s > 0 and re.singleton_key != fan.singleton_key
    assert re.payload.parent_item == P_ITEM and re.payload.parent_location == P_LOC1


def test_collections_link_by_handle_and_missing_ones_are_listed():
    parent = [
        Collection("gid://shopify/Collection/1", "summer"),
        Collection("gid://shopify/Collection/2", "sale"),
    ]
    child = [
        Collection("gid://shopify/Collection/9", "summer"),
        Collection("gid://shopify/Collection/8", "mine"),
    ]
    links, missing = match_collections(parent, child, CHILD_A)
    assert [(lk.parent_id, lk.child_id, lk.kind) for lk in links] == [
        ("gid://shopify/Collection/1", "gid://shopify/Collection/9", LinkKind.COLLECTION)
    ]
    assert missing == ["gid://shopify/Collection/2"]
