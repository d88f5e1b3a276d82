"""`ShopifyStoreAPI`, the sync domain's store port over the Admin client (`sync/adapters/shopify.py`), against the emulator."""

from __future__ import annotations

from decimal import Decimal

import pytest

from storesync.commerce.client import idempotency_key
from storesync.sync.adapters.shopify import ShopifyStoreAPI
from storesync.sync.domain.ports import HandleTaken, StaleQuantity
from tests.commerce.test_client_emulator import SHOP, available, client_for, first_level, running_emulator


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        yield handle


PRODUCT = {
    "title": "Linen shirt",
    "handle": "linen-shirt",
    "vendor": "Acme",
    "productType": "Shirts",
    "tags": ["linen", "summer"],
    "status": "ACTIVE",
    "descriptionHtml": "<p>Cool</p>",
    "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
    "variants": [
        {"sku": "LS-S", "price": "30.00", "optionValues": [{"optionName": "Size", "name": "S"}]},
        {
            "sku": "LS-M",
            "price": "32.50",
            "compareAtPrice": "40.00",
            "barcode": "123",
            "optionValues": [{"optionName": "Size", "name": "M"}],
        },
    ],
    "metafields": [
        {"namespace": "custom", "key": "fabric", "type": "single_line_text_field", "value": "linen"}
    ],
}


async def test_product_set_read_and_find_round_trip_into_domain_values(emu):
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client)
        created = await store.product_set(PRODUCT, product_id=None)
        assert created.id and created.handle == "linen-shirt"
        assert [v.sku for v in created.variants] == ["LS-S", "LS-M"]
        assert created.variants[1].price == Decimal("32.50") and created.variants[
            1
        ].compare_at_price == Decimal("40.00")
        assert created.variants[1].option_values == (("Size", "M"),)
        assert created.options[0].name == "Size" and created.options[0].values == ("S", "M")
        assert created.metafields[0].value == "linen"
        assert created.variants[0].inventory_item_id.startswith("gid://shopify/InventoryItem/")

        read = await store.read_product(created.id)
        assert read == created
        assert await store.find_product_by_handle("linen-shirt") == created
        assert await store.find_product_by_handle("no-such-handle") is None

        updated = await store.product_set({**PRODUCT, "title": "Linen shirt II"}, product_id=created.id)
        assert updated.id == created.id and updated.title == "Linen shirt II"

        await store.delete_product(created.id)
        assert await store.read_product(created.id) is None
        await store.delete_product(created.id)  # already gone: not an error


async def test_inventory_levels_cas_adjust_and_replay(emu):
    emu.seed(SHOP, products=1)
    item, location, before = first_level(emu)
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client)
        level = await store.read_level(item, location)
        assert level.available == before

        assert (
            await store.set_level(
                item, location, before + 5, change_from=before, idempotency_key=idempotency_key(1, "set")
            )
            == before + 5
        )
        with pytest.raises(StaleQuantity):
            await store.set_level(
                item, location, 0, change_from=before, idempotency_key=idempotency_key(2, "set")
            )

        key = idempotency_key(3, "adjust")
        after = await store.adjust_level(item, location, -2, idempotency_key=key)
        assert after == before + 3
        # a retried job replays: nothing applied twice, the original answer comes back
        assert await store.adjust_level(item, location, -2, idempotency_key=key) == before + 3
        with pytest.raises(StaleQuantity):
            await store.adjust_level(
                item, location, -1, change_from=before, idempotency_key=idempotency_key(4, "a")
            )
    assert available(emu, item, location) == before + 3


async def test_reads_follow_every_list_past_its_first_page(emu):
    """productSet replaces lists wholesale: a read cut at the page size would delete the rest
    on the store it is written to, so reads page through every list."""
    async with client_for(emu) as client:
        created = await ShopifyStoreAPI(client).product_set(
            {
                **PRODUCT,
                "metafields": [
                    {"namespace": "custom", "key": f"k{i}", "type": "single_line_text_field", "value": str(i)}
                    for i in range(3)
                ],
            },
            product_id=None,
        )
        for title in ("Summer", "Shirts", "Sale"):
            await client.execute(
                "CollectionCreate",
                {
                    "collection": {
                        "title": title,
                        "sources": [
                            {
                                "source": {
                                    "title": title,
                                    "inclusion": {"selections": [{"productId": created.id}]},
                                }
                            }
                        ],
                    }
                },
            )
        full = await ShopifyStoreAPI(client).read_product(created.id)
        tiny = ShopifyStoreAPI(
            client,
            list_sizes={"variantsFirst": 1, "collectionsFirst": 1, "metafieldsFirst": 1, "mediaFirst": 1},
        )
        assert len(full.variants) == 2 and len(full.collections) == 3 and len(full.metafields) == 3
        assert await tiny.read_product(created.id) == full
        assert await tiny.find_product_by_handle(full.handle) == full
        listed = [p async for p in tiny.products(page_size=1)]
        assert listed == [full]


async def test_store_clients_serve_each_configured_store_through_the_shared_budget(db):
    from storesync.commerce.budget_sql import BUDGET_ROW
    from storesync.commerce.clients import StoreClients
    from storesync.config import NetworkConfig
    from storesync.db.pools import async_pooled_pool

    child = "child-a.myshopify.com"
    with running_emulator(stores=[SHOP, child]) as emu:
        network = NetworkConfig.model_validate(
            {
                "merchants": [
                    {
                        "id": "acme",
                        "parent": {
                            "shop": SHOP,
                            "admin_api_url": emu.graphql_url(SHOP),
                            "access_token": emu.token(SHOP),
                            "webhook_secrets": ["s"],
                        },
                        "children": [
                            {
                                "shop": child,
                                "admin_api_url": emu.graphql_url(child),
                                "access_token": emu.token(child),
                                "webhook_secrets": ["s"],
                            }
                        ],
                    }
                ]
            }
        )
        pool = async_pooled_pool(db.settings, name="clients-test", min_size=0, max_size=4)
        await pool.open(wait=True)
        try:
            async with StoreClients(network, pool=pool) as clients:
                assert clients.client(SHOP) is clients.client(SHOP)
                for shop in (SHOP, child):
                    assert await ShopifyStoreAPI(clients.client(shop)).find_product_by_handle("none") is None
                with pytest.raises(LookupError):
                    clients.client("stranger.myshopify.com")
        finally:
            await pool.close()
    with db.connect() as conn:  # each store's bucket is in Postgres, every reservation settled
        for shop in (SHOP, child):
            capacity, rate, _, _ = conn.execute(BUDGET_ROW, {"shop": shop}).fetchone()
            assert (capacity, rate) == (2000, 100)
        assert conn.execute("SELECT count(*) FROM api_budget_reservations").fetchone()[0] == 0


async def test_read_levels_batches_items_under_the_query_cost_limit(emu):
    emu.seed(SHOP, products=40, variants_per_product=2, locations=["Shop floor"])
    snapshot = emu.snapshot(SHOP)["inventory_levels"]
    items = sorted({lvl["inventory_item_id"] for lvl in snapshot})
    assert len(items) == 80
    async with client_for(emu) as client:
        levels = await ShopifyStoreAPI(client).read_levels([*items, "gid://shopify/InventoryItem/999999"])
        calls = client.stats.requests
    assert {k: v.available for k, v in levels.items()} == {
        (lvl["inventory_item_id"], lvl["location_id"]): lvl["available"] for lvl in snapshot
    }
    assert 1 < calls <= 5  # several items per query, never over the 1,000-point limit


async def test_read_levels_follows_items_stocked_at_more_locations_than_a_page(emu):
    emu.seed(SHOP, products=1, variants_per_product=1, locations=[f"Store {i}" for i in range(12)])
    snapshot = emu.snapshot(SHOP)["inventory_levels"]
    assert len(snapshot) >= 12
    async with client_for(emu) as client:
        levels = await ShopifyStoreAPI(client).read_levels(
            [snapshot[0]["inventory_item_id"]], locations_first=5
        )
    assert len(levels) == len(snapshot)


async def test_a_create_resent_after_a_lost_answer_makes_one_product(emu):
    """The first create's answer is lost (the emulator executes, then holds the answer past the
    client's timeout); the client resends, and the store still has one product."""
    emu.set_faults(graphql={"fail_nth": {}, "timeout_p": 1.0, "timeout_hang_s": 0.5, "seed": 1})
    async with client_for(emu, timeout=0.2, max_attempts=2) as client:
        with pytest.raises(Exception):  # noqa: B017 - whichever error the lost answer surfaces as
            await ShopifyStoreAPI(client).product_set(PRODUCT, product_id=None)
    emu.set_faults(graphql={})
    async with client_for(emu) as client:
        created = await ShopifyStoreAPI(client).product_set(PRODUCT, product_id=None)  # the job's retry
    products = emu.snapshot(SHOP)["products"]
    assert [p["handle"] for p in products] == ["linen-shirt"]
    assert products[0]["id"] in (created.id, int(created.id.rsplit("/", 1)[-1]))


async def test_create_product_id_writes_stock_refuses_a_taken_handle_and_upserts_a_resend(emu):
    location = emu.snapshot(SHOP)["locations"][0]["id"]
    stocked = {
        **PRODUCT,
        "variants": [
            {**v, "inventoryQuantities": [{"locationId": location, "name": "available", "quantity": 3 + i}]}
            for i, v in enumerate(PRODUCT["variants"])
        ],
    }
    async with client_for(emu) as client:
        store = ShopifyStoreAPI(client)
        assert await store.find_product_id_by_handle("linen-shirt") is None
        created = await store.create_product_id(stocked, upsert=False)
        assert await store.find_product_id_by_handle("linen-shirt") == created
        read = await store.read_product(created)
        assert [(v.sku, v.option_values, str(v.price)) for v in read.variants] == [
            (v["sku"], tuple((o["optionName"], o["name"]) for o in v["optionValues"]), v["price"])
            for v in PRODUCT["variants"]
        ]
        for i, v in enumerate(read.variants):
            assert (await store.read_level(v.inventory_item_id, location)).available == 3 + i
        # a plain create never adopts what the store has under that handle
        with pytest.raises(HandleTaken):
            await store.create_product_id(stocked, upsert=False)
        # a resend after a lost answer updates the product the first send made: no second one
        again = await store.create_product_id(stocked, upsert=True)
        assert again == created and [p.id async for p in store.products()] == [created]


def with_variant_metafields(product: dict, per_namespace: int) -> dict:
    """`product` with `per_namespace` text metafields in "specs" and in "own" on every variant."""
    mf = [
        {"namespace": ns, "key": f"k{i}", "type": "single_line_text_field", "value": f"{ns}{i}"}
        for ns in ("specs", "own")
        for i in range(per_namespace)
    ]
    return {**product, "variants": [{**v, "metafields": mf} for v in product["variants"]]}


async def test_variant_metafields_of_the_synced_namespaces_are_read_and_no_others(emu):
    """A variant's metafields are read only for a merchant that syncs namespaces, and only those
    namespaces (every other one is the child's and never enters a write)."""
    product = with_variant_metafields(PRODUCT, 12)
    async with client_for(emu) as client:
        created = await ShopifyStoreAPI(client).product_set(product, product_id=None)
        plain = await ShopifyStoreAPI(client).read_product(created.id)
        assert all(v.metafields == () for v in plain.variants)  # not read at all
        synced = ShopifyStoreAPI(client, variant_metafield_namespaces=frozenset({"specs"}))
        read = await synced.read_product(created.id)
        for v in read.variants:  # 12 of them: a second page
            assert sorted(m.key for m in v.metafields) == sorted(f"k{i}" for i in range(12))
            assert {m.namespace for m in v.metafields} == {"specs"}
        two = ShopifyStoreAPI(client, variant_metafield_namespaces=frozenset({"specs", "other"}))
        assert [len(v.metafields) for v in (await two.read_product(created.id)).variants] == [12, 12]
