"""The bulk read path (commerce/bulk.py) against the emulator over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from graphql import InlineFragmentNode, get_named_type, parse, validate

from storesync.commerce.bulk import (
    BulkOperationDenied,
    BulkOperationFailed,
    BulkOperationInProgress,
    BulkOperationTimeout,
    bulk_query,
    bulk_query_text,
    reassemble,
    start_bulk_query,
)
from storesync.commerce.errors import UserInputError
from storesync.sync.adapters.shopify import PRODUCT_CHILDREN, ShopifyStoreAPI, bulk_products
from storesync.sync.domain.orders import order_event_from_graphql
from tests.commerce.test_client_emulator import SHOP, client_for, running_emulator
from tests.commerce.test_documents import target_schema
from tests.sync.test_shopify_store import PRODUCT

FAST = {"poll_interval": 0.01, "timeout": 10.0}


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        yield handle


def test_the_bulk_products_query_validates_against_the_target_schema():
    errors = validate(target_schema(), parse(bulk_query_text("products")))
    assert not errors, [e.message for e in errors]


async def test_bulk_products_equal_the_paged_read_with_every_nested_list(emu):
    emu.seed(SHOP, products=60, variants_per_product=3)
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client)
        shirt = await store.product_set(PRODUCT, product_id=None)  # options, metafields, barcode...
        first_ids = [
            p["id"]
            for p in emu.graphql(SHOP, "{ products(first: 4) { nodes { id } } }")["data"]["products"]["nodes"]
        ]
        for title in ("Sale", "New"):
            emu.graphql(
                SHOP,
                "mutation($p: [ID!]) { collectionCreate(input: {title: $t, products: $p}) "
                "{ userErrors { message } } }".replace("$t", f'"{title}"'),
                {"p": first_ids},
            )
        # small first pages: the paged read has to follow every list to its end
        paged = [
            p
            async for p in store.products(
                list_sizes={"variantsFirst": 2, "collectionsFirst": 1, "metafieldsFirst": 1, "mediaFirst": 1}
            )
        ]
        bulk = await bulk_products(client, **FAST)
    assert len(bulk) == 61
    assert bulk == paged
    assert all(len(p.variants) == 3 for p in bulk if p.id != shirt.id)
    assert next(p for p in bulk if p.id == first_ids[0]).collections and len(bulk[0].collections) == 2
    assert next(p for p in bulk if p.id == shirt.id).metafields[0].value == "linen"


async def test_bulk_query_yields_flattened_lines_that_reassemble_to_the_parents(emu):
    emu.seed(SHOP, products=3, variants_per_product=2)
    async with client_for(emu) as client:
        lines = [
            o
            async for o in bulk_query(
                client, "{ products { nodes { id variants { nodes { id } } } } }", **FAST
            )
        ]
    assert len(lines) == 9 and sum("__parentId" in o for o in lines) == 6
    products = reassemble(lines, {"ProductVariant": "variants"})
    assert [len(p["variants"]["nodes"]) for p in products] == [2, 2, 2]
    with pytest.raises(ValueError):
        reassemble(lines, {})  # a child type the caller did not expect is not dropped silently


async def test_a_second_concurrent_bulk_query_is_refused_with_a_retryable_error(emu):
    emu.seed(SHOP, products=5)
    async with client_for(emu) as client:
        first, second = await asyncio.gather(
            bulk_products(client, **FAST), bulk_products(client, **FAST), return_exceptions=True
        )
        outcomes = sorted([first, second], key=lambda o: isinstance(o, Exception))
        assert isinstance(outcomes[0], list) and len(outcomes[0]) == 5
        refused = outcomes[1]
        assert isinstance(refused, BulkOperationInProgress) and refused.retryable
        assert "already running" in str(refused) and refused.user_errors[0].code == "OPERATION_IN_PROGRESS"
        # once the first has ended, the next one runs
        assert len(await bulk_products(client, **FAST)) == 5


@pytest.mark.parametrize(
    ("status", "code", "error", "retryable"),
    [
        ("FAILED", "INTERNAL_SERVER_ERROR", BulkOperationFailed, True),
        ("FAILED", "TIMEOUT", BulkOperationFailed, True),
        ("CANCELED", None, BulkOperationFailed, True),
        ("FAILED", "ACCESS_DENIED", BulkOperationDenied, False),
    ],
)
async def test_an_operation_that_does_not_complete_maps_to_a_typed_error(emu, status, code, error, retryable):
    emu.seed(SHOP, products=2)
    emu.set_bulk_fault(SHOP, status, code)
    async with client_for(emu) as client:
        with pytest.raises(error) as caught:
            await bulk_products(client, **FAST)
        assert caught.value.retryable is retryable and status in str(caught.value)
        if error is BulkOperationFailed:
            assert caught.value.status == status and caught.value.error_code == code
        assert len(await bulk_products(client, **FAST)) == 2  # the fault was for one operation


async def test_a_poll_past_the_timeout_raises_a_retryable_timeout(emu):
    async with client_for(emu) as client:
        with pytest.raises(BulkOperationTimeout) as caught:
            await bulk_products(client, poll_interval=0.05, timeout=0.0)
        assert caught.value.retryable


async def test_an_invalid_bulk_query_is_a_permanent_user_input_error(emu):
    async with client_for(emu) as client:
        with pytest.raises(UserInputError) as caught:
            await start_bulk_query(client, "{ shop { name } }")
        assert not caught.value.retryable and "connection" in str(caught.value)


def test_product_children_cover_every_nested_connection_of_the_bulk_products_query():
    text = bulk_query_text("products")
    assert {f"{key} {{" for key in PRODUCT_CHILDREN.values()} <= {line.strip() for line in text.splitlines()}


def _events(orders: list[dict]) -> list:
    return sorted((order_event_from_graphql(SHOP, o) for o in orders), key=lambda e: e.order_id)


async def test_bulk_orders_read_what_the_paged_read_does_for_fewer_points(emu):
    """The reconciliation's read of a child's orders (`orders_updated_since`: one bulk query,
    refunds' lines and returns' dispositions by id) gives the same events as paging
    `ChildOrdersPage`: a point-of-sale sale partly refunded with restock, an online order
    shipped and returned with restock, a cancelled order, a refund of more lines than a first
    page of refund lines holds. And it asks the bucket for less."""
    emu.seed(SHOP, products=6, variants_per_product=2)
    snap = emu.snapshot(SHOP)
    variants = [v["admin_graphql_api_id"] for p in snap["products"] for v in p["variants"]]
    where = snap["locations"][0]["id"]
    pos = emu.place_order(
        SHOP, [{"variant_id": variants[0], "quantity": 2}, {"variant_id": variants[1], "quantity": 1}], where
    )
    emu.refund_order(
        SHOP,
        pos["id"],
        [{"line_item_id": pos["line_items"][0]["id"], "quantity": 1, "restock_type": "cancel"}],
    )
    web = emu.place_order(SHOP, [{"variant_id": variants[2], "quantity": 3}])
    emu.fulfill_order(SHOP, web["id"])
    emu.return_order(SHOP, web["id"], [{"line_item_id": web["line_items"][0]["id"], "quantity": 2}])
    gone = emu.place_order(SHOP, [{"variant_id": variants[3], "quantity": 1}], where)
    emu.cancel_order(SHOP, gone["id"])
    big = emu.place_order(SHOP, [{"variant_id": v, "quantity": 1} for v in variants], where)
    emu.refund_order(
        SHOP,
        big["id"],
        [{"line_item_id": li["id"], "quantity": 1, "restock_type": "cancel"} for li in big["line_items"]],
    )
    since = datetime.now(UTC) - timedelta(minutes=5)
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client)
        before = emu.throttle(SHOP)["usage"]
        bulk = await store.orders_updated_since(since, poll_interval=0.01)
        middle = emu.throttle(SHOP)["usage"]
        paged = [o async for o in store.paged_orders_updated_since(since)]
        after = emu.throttle(SHOP)["usage"]
    assert _events(bulk) == _events(paged) and len(bulk) == 4
    events = {e.order_id: e for e in _events(bulk)}
    assert [r.quantity for r in events[pos["admin_graphql_api_id"]].restocks] == [1]
    assert [r.quantity for r in events[web["admin_graphql_api_id"]].restocks] == [2]  # the disposition
    assert sum(r.quantity for r in events[gone["admin_graphql_api_id"]].restocks) == 1
    assert len(events[big["admin_graphql_api_id"]].restocks) == len(variants) == 12
    bulk_cost = {op: n for op, n in middle["by_operation"].items() if op not in before["by_operation"]}
    assert set(bulk_cost) == {
        "BulkOperationRunQuery",
        "BulkOperationStatus",
        "RefundLines",
        "ReturnDispositions",
    }
    # points charged: the bulk query and its polls whatever the orders; then only the refunds and
    # returns, by id (the page charges every order's lists)
    assert middle["points"] - before["points"] < after["points"] - middle["points"], (before, middle, after)
    # nothing updated since: the operation completes with no file, and nothing is read
    async with client_for(emu) as client:
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert await ShopifyStoreAPI(client).orders_updated_since(later, poll_interval=0.01) == []


async def test_the_orders_read_waits_for_a_bulk_query_whose_starter_never_came_back(emu):
    """A worker killed between starting a bulk query and reading it leaves the query running:
    the next read of orders waits for it to end instead of failing the child."""
    emu.seed(SHOP, products=1)
    where = emu.snapshot(SHOP)["locations"][0]["id"]
    variant = emu.snapshot(SHOP)["products"][0]["variants"][0]["admin_graphql_api_id"]
    emu.place_order(SHOP, [{"variant_id": variant, "quantity": 1}], where)
    async with client_for(emu) as client:
        orphan = await start_bulk_query(client, "{ products { nodes { id } } }")
        orders = await ShopifyStoreAPI(client).orders_updated_since(
            datetime.now(UTC) - timedelta(minutes=5), poll_interval=0.01
        )
    assert len(orders) == 1
    statuses = emu.graphql(SHOP, "{ bulkOperations(first: 5) { nodes { id status } } }")["data"]
    assert {"id": orphan, "status": "COMPLETED"} in statuses["bulkOperations"]["nodes"]


def _connections(schema, parent, selection_set, depth: int = 0) -> list[int]:
    """The nesting depth of every connection a selection holds (0: the root connection)."""
    found: list[int] = []
    for sel in selection_set.selections:
        if isinstance(sel, InlineFragmentNode):
            inner = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
            found += _connections(schema, inner, sel.selection_set, depth)
            continue
        if sel.name.value == "__typename":
            continue
        named = get_named_type(parent.fields[sel.name.value].type)
        deeper = depth
        if named.name.endswith("Connection"):
            found.append(depth)
            deeper = depth + 1
        if sel.selection_set:
            found += _connections(schema, named, sel.selection_set, deeper)
    return found


def test_the_orders_bulk_query_keeps_within_shopifys_limits():
    """At most five connections, nested at most two levels below the root
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/bulkOperationRunQuery)."""
    schema = target_schema()
    depths = _connections(
        schema, schema.query_type, parse(bulk_query_text("orders")).definitions[0].selection_set
    )
    assert len(depths) <= 5 and max(depths) <= 2, depths
