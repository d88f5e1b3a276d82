"""The Admin client against the emulator over real HTTP: queries, pagination, throttling (200
THROTTLED and 429), 5xx and lost answers, typed errors, and two worker processes sharing one
store's bucket through Postgres."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient, idempotency_key
from storesync.commerce.errors import (
    ApiUnavailableError,
    MaxCostExceededError,
    StaleQuantityError,
    StoreUnauthorized,
    UserInputError,
)
from storesync.commerce.operations import get_operation
from storesync.commerce.throttle import CostEstimator, static_cost
from storesync.commerce.variables import adjust_quantities_input, set_quantities_input
from storesync.config import StoreConfig
from tests.support.emulator import running_emulator

SHOP = "parent.myshopify.com"
ROOT = Path(__file__).resolve().parents[2]
SIZES = {"variantsFirst": 10, "collectionsFirst": 5, "metafieldsFirst": 5, "mediaFirst": 5}


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        yield handle


def store_config(emu, shop: str = SHOP, token: str | None = None) -> StoreConfig:
    return StoreConfig(
        shop=shop,
        admin_api_url=emu.graphql_url(shop),
        access_token=SecretStr(token or emu.token(shop)),
        webhook_secrets=[SecretStr(emu.webhook_secret(shop))],
    )


def client_for(emu, **kwargs) -> AdminClient:
    kwargs.setdefault("budget", LocalBudget())
    kwargs.setdefault("backoff_base", 0.02)
    kwargs.setdefault("backoff_cap", 0.2)
    return AdminClient(store_config(emu), **kwargs)


def first_level(emu) -> tuple[str, str, int]:
    """(inventory item, location, available) of the seeded catalog's first level."""
    level = emu.snapshot(SHOP)["inventory_levels"][0]
    return level["inventory_item_id"], level["location_id"], level["available"]


def available(emu, item: str, location: str) -> int:
    for level in emu.snapshot(SHOP)["inventory_levels"]:
        if (level["inventory_item_id"], level["location_id"]) == (item, location):
            return level["available"]
    raise AssertionError("level not found")


async def adjust_many(client: AdminClient, item: str, location: str, n: int, run: str = "t") -> None:
    async def one(i: int) -> None:
        await client.execute(
            "InventoryAdjustQuantities",
            {"input": adjust_quantities_input([(item, location, 1)], reason="correction")},
            idempotency_key=idempotency_key(run, "adjust", i),
        )

    await asyncio.gather(*(one(i) for i in range(n)))


# --------------------------------------------------------------------------- reads


async def test_pages_walk_the_whole_catalog_and_estimates_match_the_server(emu):
    emu.seed(SHOP, products=7)
    async with client_for(emu) as client:
        pages = [p async for p in client.pages("ProductsPage", SIZES, connection="products", page_size=3)]
        info = await client.execute("ShopInfo", {"locationsFirst": 10})
    assert [len(p.nodes) for p in pages] == [3, 3, 1]
    handles = [n["handle"] for p in pages for n in p.nodes]
    assert len(set(handles)) == 7
    assert (
        pages[0]
        .nodes[0]["variants"]["nodes"][0]["inventoryItem"]["id"]
        .startswith("gid://shopify/InventoryItem/")
    )
    assert info["shop"]["myshopifyDomain"] == SHOP and info["locations"]["nodes"]
    assert info.cost.requested == static_cost(get_operation("ShopInfo"), {"locationsFirst": 10})


async def test_page_size_shrinks_to_fit_the_query_cost_limit(emu):
    emu.seed(SHOP, products=5)
    big = {"variantsFirst": 50, "collectionsFirst": 25, "metafieldsFirst": 25, "mediaFirst": 25}
    async with client_for(emu) as client:
        pages = [p async for p in client.pages("ProductsPage", big, connection="products", page_size=50)]
    assert sum(len(p.nodes) for p in pages) == 5
    assert all(p.page_size < 50 for p in pages)


async def test_reads_fit_a_bucket_smaller_than_the_query_limit(emu):
    """With the store's bucket lowered to 100 points (Shopify "may temporarily reduce API rate
    limits"), a read of many levels is split into calls the bucket can pay for: none is sized
    for the 1,000-point query limit, so none waits for points the bucket can never hold."""
    from storesync.sync.adapters.shopify import ShopifyStoreAPI

    emu.seed(SHOP, products=30, variants_per_product=2, quantity=5)
    items = sorted({lvl["inventory_item_id"] for lvl in emu.snapshot(SHOP)["inventory_levels"]})
    emu.set_plan(SHOP, bucket_size=100, restore_rate=50)
    async with client_for(emu, max_budget_wait=3.0) as client:
        await client.execute("ShopInfo", {"locationsFirst": 10})  # learns the bucket
        assert client.largest_call_cost == 100
        levels = await ShopifyStoreAPI(client).read_levels(items)
    assert {item for item, _ in levels} == set(items)
    usage = emu.throttle(SHOP)["usage"]["by_operation"]["InventoryLevels"]
    assert usage[0] > 1 and usage[1] / usage[0] <= 100  # several calls, none above the bucket


async def test_a_call_bigger_than_a_lowered_bucket_comes_back_later_without_burning_attempts(emu):
    """A store whose bucket was lowered below what one call needs (an order read: ~331 points,
    the bucket 100): the store answers THROTTLED (no charge); no wait can make it fit, so the
    client says come back later (`BudgetBusy`: a job is deferred, its attempt not counted)
    after one try instead of nine, and the call goes through once the limits are back."""
    from storesync.commerce.client import ABOVE_BUCKET_RETRY_S
    from storesync.commerce.errors import BudgetBusy

    emu.set_plan(SHOP, bucket_size=100, restore_rate=50)
    async with client_for(emu) as client:
        with pytest.raises(BudgetBusy) as refused:
            await client.execute("ChildOrder", {"id": "gid://shopify/Order/1"})
        assert refused.value.retry_after == ABOVE_BUCKET_RETRY_S
        assert client.stats.requests == 1 and client.stats.throttled == 1
        emu.set_plan(SHOP, "standard")
        result = await client.execute("ChildOrder", {"id": "gid://shopify/Order/1"})
    assert result["order"] is None  # read: there is no such order


async def test_server_max_cost_exceeded_halves_the_page_and_relearns(emu):
    """An estimator that learned a too-low ratio sends a page the server refuses; the paginator
    halves it and the server's requestedQueryCost corrects the estimator."""
    emu.seed(SHOP, products=4)
    op = get_operation("ProductsPage")
    big = {"variantsFirst": 50, "collectionsFirst": 25, "metafieldsFirst": 25, "mediaFirst": 25}
    estimator = CostEstimator()
    estimator.learn(op, {**big, "first": 1}, requested=static_cost(op, {**big, "first": 1}) / 10)
    async with client_for(emu, estimator=estimator) as client:
        with pytest.raises(MaxCostExceededError) as err:
            await client.execute(op, {**big, "first": 20})
        assert err.value.requested and err.value.requested > 1000 and not err.value.retryable
        estimator.learn(op, {**big, "first": 1}, requested=static_cost(op, {**big, "first": 1}) / 10)
        pages = [p async for p in client.pages(op, big, connection="products", page_size=40)]
    assert sum(len(p.nodes) for p in pages) == 4
    assert client.stats.by_status[200] >= 3  # at least one refused page before the good ones


# --------------------------------------------------------------------------- throttling


async def test_throttled_calls_recover_without_losing_or_duplicating_work(emu):
    """A client that believes the bucket is full (standard plan) meets a tiny one: the first calls
    are THROTTLED, the model adopts the server's throttleStatus, and every adjustment lands once."""
    emu.seed(SHOP, products=1)
    emu.set_plan(SHOP, "standard", bucket_size=60, restore_rate=200)
    item, location, before = first_level(emu)
    async with client_for(emu) as client:
        await adjust_many(client, item, location, 20)
    assert available(emu, item, location) == before + 20
    # one burst of THROTTLED (20 calls at once on a 60-point bucket: 4 fit), then the retries are
    # spaced by the corrected model and none is throttled again
    assert 1 <= client.stats.throttled <= 17


async def test_http_429_with_retry_after_recovers(emu):
    emu.seed(SHOP, products=1)
    item, location, before = first_level(emu)
    emu.set_faults(graphql={"http_429_p": 0.4, "retry_after_s": 0.05, "seed": 7})
    async with client_for(emu) as client:
        await adjust_many(client, item, location, 12)
    assert client.stats.http_429 >= 1
    assert available(emu, item, location) == before + 12


async def test_throttling_answered_as_429_recovers():
    with running_emulator(stores=[SHOP], throttle_http_429=True) as emu:
        emu.seed(SHOP, products=1)
        emu.set_plan(SHOP, "standard", bucket_size=40, restore_rate=400)
        item, location, before = first_level(emu)
        async with client_for(emu) as client:
            await adjust_many(client, item, location, 10)
        assert client.stats.http_429 >= 1
        assert available(emu, item, location) == before + 10


# --------------------------------------------------------------------------- faults


async def test_5xx_and_lost_answers_are_retried_and_applied_exactly_once(emu):
    emu.seed(SHOP, products=1)
    item, location, before = first_level(emu)
    emu.set_faults(graphql={"error_5xx_p": 0.25, "timeout_p": 0.15, "timeout_hang_s": 0.6, "seed": 3})
    async with client_for(emu, timeout=0.3, max_attempts=8) as client:
        await adjust_many(client, item, location, 15)
    assert client.stats.server_errors >= 1 and client.stats.network_errors >= 1
    # lost answers executed on the store; their retries replayed under the same key
    assert available(emu, item, location) == before + 15


async def test_persistent_5xx_raises_a_retryable_error_after_bounded_attempts(emu):
    emu.set_faults(graphql={"error_5xx_p": 1.0})
    async with client_for(emu, max_attempts=3) as client:
        with pytest.raises(ApiUnavailableError) as err:
            await client.execute("ShopInfo", {"locationsFirst": 5})
    assert err.value.retryable
    assert client.stats.requests == 3


async def test_rejected_token_is_store_unauthorized(emu):
    async with AdminClient(store_config(emu, token="shpat_revoked"), budget=LocalBudget()) as client:
        with pytest.raises(StoreUnauthorized) as err:
            await client.execute("ShopInfo", {"locationsFirst": 5})
    assert err.value.status == 401 and client.stats.requests == 1


# --------------------------------------------------------------------------- typed userErrors


async def test_stale_change_from_quantity_is_a_retryable_stale_quantity_error(emu):
    emu.seed(SHOP, products=1)
    item, location, before = first_level(emu)
    async with client_for(emu) as client:
        with pytest.raises(StaleQuantityError) as err:
            await client.execute(
                "InventorySetQuantities",
                {"input": set_quantities_input([(item, location, 3, before + 1)], reason="correction")},
                idempotency_key=idempotency_key(1, "set", before + 1),
            )
        assert err.value.retryable and "CHANGE_FROM_QUANTITY_STALE" in err.value.codes
        # re-read, new key (the input changed): it applies
        await client.execute(
            "InventorySetQuantities",
            {"input": set_quantities_input([(item, location, 3, before)], reason="correction")},
            idempotency_key=idempotency_key(1, "set", before),
        )
    assert available(emu, item, location) == 3


async def test_product_set_upserts_by_handle_and_user_errors_are_permanent(emu):
    product = {
        "title": "Red shirt",
        "handle": "red-shirt",
        "status": "ACTIVE",
        "productOptions": [{"name": "Size", "values": [{"name": "M"}]}],
        "variants": [
            {"sku": "RS-M", "price": "19.90", "optionValues": [{"optionName": "Size", "name": "M"}]}
        ],
    }
    async with client_for(emu) as client:
        first = await client.execute(
            "ProductSet", {"identifier": {"handle": "red-shirt"}, "input": product, **SIZES}
        )
        again = await client.execute(
            "ProductSet",
            {"identifier": {"handle": "red-shirt"}, "input": {**product, "title": "Red shirt v2"}, **SIZES},
        )
        assert first["productSet"]["product"]["id"] == again["productSet"]["product"]["id"]
        with pytest.raises(UserInputError) as err:
            await client.execute(
                "ProductSet",
                {
                    "input": {
                        **product,
                        "variants": [
                            {"sku": "X", "price": "-1", "optionValues": [{"optionName": "Size", "name": "M"}]}
                        ],
                    },
                    **SIZES,
                },
            )
        assert not err.value.retryable
    titles = [p["title"] for p in emu.snapshot(SHOP)["products"]]
    assert titles == ["Red shirt v2"]


async def test_an_idempotent_mutation_needs_its_key():
    with pytest.raises(ValueError, match="idempotency key"):
        client = AdminClient(
            StoreConfig(
                shop=SHOP,
                admin_api_url="http://127.0.0.1:9/admin/api/2026-10/graphql.json",
                access_token=SecretStr("t"),
                webhook_secrets=[SecretStr("s")],
            )
        )
        try:
            await client.execute("InventoryAdjustQuantities", {"input": {}})
        finally:
            await client.aclose()


def test_idempotency_keys_are_deterministic_per_job_and_step():
    assert idempotency_key(42, "adjust") == idempotency_key(42, "adjust")
    assert (
        len(
            {
                idempotency_key(42, "adjust"),
                idempotency_key(43, "adjust"),
                idempotency_key(42, "set"),
                idempotency_key(42, "adjust", 7),
            }
        )
        == 4
    )


# --------------------------------------------------------------------------- processes


def test_two_worker_processes_share_one_store_within_its_bucket(emu, db):
    """Two processes drain one backlog against a small bucket (60 points, 150/s; a mutation
    requests 15). Sharing the budget through Postgres, they spend the restore rate without
    colliding: every adjustment lands once, and THROTTLED stays at most a stray one."""
    emu.seed(SHOP, products=1)
    emu.set_plan(SHOP, "standard", bucket_size=60, restore_rate=150)
    item, location, before = first_level(emu)
    per_worker = 25
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.commerce.adjust_worker",
                "--url",
                emu.graphql_url(SHOP),
                "--token",
                emu.token(SHOP),
                "--shop",
                SHOP,
                "--item",
                item,
                "--location",
                location,
                "--mode",
                "smart",
                "--dsn",
                db.dsn,
                "--count",
                str(per_worker),
                "--worker",
                f"w{w}",
                "--margin",
                "15",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["done"] for r in results) == 2 * per_worker
    assert available(emu, item, location) == before + 2 * per_worker
    throttled = sum(r["throttled"] + r["http_429"] for r in results)
    assert throttled <= 2, results


# --------------------------------------------------------------------------- cost estimate


SAMPLE_VARIABLES = {
    "ShopInfo": {"locationsFirst": 20},
    "ProductsPage": {"first": 3, **SIZES},
    "ProductById": {"id": "gid://shopify/Product/1", **SIZES},
    "ProductByHandle": {"handle": "x", **SIZES},
    "ProductsByQuery": {"query": "sku:X", "first": 5, "variantsFirst": 10},
    "ProductVariantsPage": {"id": "gid://shopify/Product/1", "first": 7},
    "ProductCollectionsPage": {"id": "gid://shopify/Product/1", "first": 7},
    "ProductMetafieldsPage": {"id": "gid://shopify/Product/1", "first": 7},
    "ProductSet": {"input": {"title": "x"}, **SIZES},
    "ProductSetIds": {"input": {"title": "x"}, "variantsFirst": 3},
    "ProductCreateId": {"input": {"title": "x", "handle": "x"}, "identifier": {"handle": "x"}},
    "ProductIdByHandle": {"handle": "x"},
    "ProductDelete": {"id": "gid://shopify/Product/1"},
    "ProductVariantsBulkUpdate": {"productId": "gid://shopify/Product/1", "variants": []},
    "InventoryLevels": {"inventoryItemIds": ["gid://shopify/InventoryItem/1"] * 3, "locationsFirst": 4},
    "InventoryLevelAtLocation": {
        "inventoryItemId": "gid://shopify/InventoryItem/1",
        "locationId": "gid://shopify/Location/1",
    },
    "InventorySetQuantities": {
        "input": set_quantities_input([], reason="correction"),
        "idempotencyKey": "k1",
    },
    "InventoryAdjustQuantities": {
        "input": adjust_quantities_input([], reason="correction"),
        "idempotencyKey": "k2",
    },
    "CollectionsPage": {"first": 10},
    "CollectionCreate": {"collection": {"title": "x"}},
    "CollectionUpdate": {"collection": {"id": "gid://shopify/Collection/1", "title": "x"}},
    "CollectionDelete": {"id": "gid://shopify/Collection/1"},
    "CollectionById": {"id": "gid://shopify/Collection/1", "withProducts": True, "productsFirst": 250},
    "CollectionProductsPage": {"id": "gid://shopify/Collection/1", "first": 100},
    "CollectionsByHandle": {"query": "handle:'x'"},
    "WebhookSubscriptions": {"first": 10},
    "WebhookSubscriptionCreate": {
        "topic": "PRODUCTS_UPDATE",
        "webhookSubscription": {"uri": "https://example.com/webhooks"},
    },
    "WebhookSubscriptionDelete": {"id": "gid://shopify/WebhookSubscription/1"},
    "BulkOperationRunQuery": {"query": "{ products { edges { node { id } } } }"},
    "BulkOperationStatus": {"query": "id:1"},
    "AppAccessScopes": {},
    "OrdersByName": {"query": "name:#1001"},
    "ProductMediaPage": {"id": "gid://shopify/Product/1", "first": 7},
    "ProductVariantMetafields": {
        "id": "gid://shopify/Product/1",
        "variantsFirst": 3,
        "metafieldsFirst": 10,
        "namespace": "specs",
    },
    "VariantMetafieldsPage": {"id": "gid://shopify/ProductVariant/1", "first": 50},
    "MetafieldsSet": {"metafields": []},
    "MetafieldsDelete": {"metafields": []},
    "ProductSetMedia": {
        "identifier": {"id": "gid://shopify/Product/1"},
        "input": {"files": []},
        "mediaFirst": 2,
    },
    "ProductUpdateFields": {"identifier": {"id": "gid://shopify/Product/1"}, "input": {"status": "ARCHIVED"}},
    "Publications": {"first": 50},
    "PublishableChannels": {"id": "gid://shopify/Product/1"},
    "PublishablePublish": {"id": "gid://shopify/Product/1", "input": []},
    "ChildOrder": {"id": "gid://shopify/Order/1"},
    "ChildOrdersPage": {"first": 3, "query": "updated_at:>='2026-01-01T00:00:00Z'"},
    "ReturnDispositions": {"id": "gid://shopify/Return/1", "lines": 10},
    "RefundLines": {"ids": ["gid://shopify/Refund/1"] * 3, "lines": 10},
    "StoreLocations": {"first": 20},
}


def test_static_estimate_equals_the_servers_requested_cost_for_every_operation(emu):
    """The client reserves what the server will ask for, before the first call teaches it."""
    from storesync.commerce.operations import all_operations

    assert set(SAMPLE_VARIABLES) == set(all_operations())
    for name, variables in SAMPLE_VARIABLES.items():
        op = get_operation(name)
        body = emu.graphql(SHOP, op.text, variables)
        requested = body["extensions"]["cost"]["requestedQueryCost"]
        assert requested == static_cost(op, variables), (name, body.get("errors"))


def test_a_field_left_out_by_its_directive_is_not_priced_by_client_or_emulator(emu):
    """CollectionById without its members (`@include(if: $withProducts)` false) costs what the
    collection alone costs, on both sides: a backfill creating collections pays no member read."""
    op = get_operation("CollectionById")
    base = {"id": "gid://shopify/Collection/1", "productsFirst": 250}
    costs = {}
    for with_products in (True, False):
        variables = {**base, "withProducts": with_products}
        requested = emu.graphql(SHOP, op.text, variables)["extensions"]["cost"]["requestedQueryCost"]
        assert requested == static_cost(op, variables)
        costs[with_products] = requested
    assert costs[True] - costs[False] == 2 + 250  # the connection and its 250 nodes
    assert costs[False] < 10
