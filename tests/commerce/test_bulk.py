"""The bulk read path (commerce/bulk.py) against the emulator over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from graphql import parse, validate

from storesync.commerce.bulk import (
    BulkOperationDenied,
    BulkOperationFailed,
    BulkOperationInProgress,
    BulkOperationTimeout,
    bulk_query,
    bulk_query_text,
    reassemble,
    start_bulk_query,
    wait_for_bulk_operation,
)
from storesync.commerce.errors import UserInputError
from storesync.emulator.bulk import bulk_query_violations
from storesync.emulator.schema import build_emulator_schema
from storesync.sync.adapters.shopify import PRODUCT_CHILDREN, ShopifyStoreAPI, bulk_products
from storesync.sync.domain.orders import order_event_from_graphql
from tests.commerce.test_client_emulator import SHOP, client_for, running_emulator
from tests.commerce.test_documents import target_schema
from tests.sync.test_shopify_store import PRODUCT, with_variant_metafields

SHIPPED_BULK_QUERIES = sorted(
    f.name.removesuffix(".graphql")
    for f in resources.files("storesync.commerce").joinpath("bulk_queries").iterdir()
    if f.name.endswith(".graphql")
)

FAST = {"poll_interval": 0.01, "timeout": 10.0}


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        yield handle


@pytest.mark.parametrize("name", SHIPPED_BULK_QUERIES)
def test_every_shipped_bulk_query_is_one_shopify_runs(name):
    """Valid against 2026-10 and within the bulk query rules (five connections, two levels of
    nesting, no top-level node/nodes) the emulator enforces as Shopify documents them."""
    document = parse(bulk_query_text(name))
    errors = validate(target_schema(), document)
    assert not errors, [e.message for e in errors]
    assert bulk_query_violations(target_schema(), document) == []
    assert bulk_query_violations(build_emulator_schema(), document) == []


SIX_CONNECTIONS = """{ products { nodes { id
  variants { nodes { id metafields { nodes { id } } } }
  collections { nodes { id } } metafields { nodes { id } } media { nodes { id } } } } }"""
THREE_LEVELS = """{ products { nodes { id
  collections { nodes { id products { nodes { id variants { nodes { id } } } } } } } } }"""


@pytest.mark.parametrize(
    ("query", "refusal"),
    [
        (SIX_CONNECTIONS, "more than 5 connections"),
        (THREE_LEVELS, "more than 2 levels deep (products.collections.products.variants)"),
        ('{ nodes(ids: ["gid://shopify/Product/1"]) { id } products { nodes { id } } }', "'nodes'"),
    ],
)
async def test_a_bulk_query_outside_shopifys_limits_is_refused_with_a_user_error(emu, query, refusal):
    answer = emu.graphql(
        SHOP,
        "mutation($q: String!) { bulkOperationRunQuery(query: $q) "
        "{ bulkOperation { id } userErrors { field message code } } }",
        {"q": query},
    )["data"]["bulkOperationRunQuery"]
    assert answer["bulkOperation"] is None
    [error] = answer["userErrors"]
    assert error["code"] == "INVALID" and error["field"] == ["query"] and refusal in error["message"]
    async with client_for(emu) as client:
        with pytest.raises(UserInputError) as caught:  # permanent: retrying cannot help
            await start_bulk_query(client, query)
        assert not caught.value.retryable and refusal in str(caught.value)


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


@pytest.mark.parametrize("namespaces", [frozenset({"specs"}), frozenset({"specs", "other"})])
async def test_bulk_products_read_the_synced_variant_metafields_by_a_second_bulk_query(emu, namespaces):
    """The products query has no room for the variants' metafields (five connections): they come
    from a bulk query of their own, only the synced namespaces, merged by variant id, the same
    values the paged read gives."""
    emu.seed(SHOP, products=3, variants_per_product=2)
    product = with_variant_metafields(PRODUCT, 3)
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client, variant_metafield_namespaces=namespaces)
        await store.product_set(product, product_id=None)
        paged = [p async for p in store.products()]
        before = len(
            emu.graphql(SHOP, "{ bulkOperations(first: 50) { nodes { id } } }")["data"]["bulkOperations"][
                "nodes"
            ]
        )
        bulk = await bulk_products(client, variant_metafield_namespaces=namespaces, **FAST)
        plain = await bulk_products(client, **FAST)
        ops = emu.graphql(SHOP, "{ bulkOperations(first: 50) { nodes { id query } } }")["data"][
            "bulkOperations"
        ]["nodes"]
    assert bulk == paged
    metafields = [m for p in bulk for v in p.variants for m in v.metafields]
    assert len(metafields) == 6 and {m.namespace for m in metafields} == {"specs"}
    assert all(v.metafields == () for p in plain for v in p.variants)  # nothing synced: not read
    assert len(ops) - before == 3  # products + variant metafields, then products alone


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


async def test_five_bulk_queries_run_at_once_and_a_sixth_is_refused_with_a_retryable_error(emu):
    emu.seed(SHOP, products=5)
    query = "{ products { nodes { id } } }"
    async with client_for(emu) as client:
        running = [await start_bulk_query(client, query) for _ in range(5)]  # 2026-01+: five per shop
        with pytest.raises(BulkOperationInProgress) as refused:
            await start_bulk_query(client, query)
        assert refused.value.retryable and "already running" in str(refused.value)
        assert refused.value.user_errors[0].code == "OPERATION_IN_PROGRESS"
        for operation_id in running:  # each runs to its end
            done = await wait_for_bulk_operation(client, operation_id, poll_interval=0.01)
            assert done["status"] == "COMPLETED"
        # once they have ended, the next one runs
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
    """Workers killed between starting a bulk query and reading it leave the queries running:
    once they fill the shop's five slots, the next read of orders waits for them to end instead
    of failing the child."""
    emu.seed(SHOP, products=1)
    where = emu.snapshot(SHOP)["locations"][0]["id"]
    variant = emu.snapshot(SHOP)["products"][0]["variants"][0]["admin_graphql_api_id"]
    emu.place_order(SHOP, [{"variant_id": variant, "quantity": 1}], where)
    async with client_for(emu) as client:
        orphans = [await start_bulk_query(client, "{ products { nodes { id } } }") for _ in range(5)]
        orders = await ShopifyStoreAPI(client).orders_updated_since(
            datetime.now(UTC) - timedelta(minutes=5), poll_interval=0.01
        )
    assert len(orders) == 1
    statuses = emu.graphql(SHOP, "{ bulkOperations(first: 10) { nodes { id status } } }")["data"]
    assert all({"id": o, "status": "COMPLETED"} in statuses["bulkOperations"]["nodes"] for o in orphans)
