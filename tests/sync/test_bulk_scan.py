"""The backfill's bulk scans (`sync.adapters.shopify.BulkCatalogScan`, `bulk_levels`) read what the
paged scans read, and `ScannedParent` serves the scanned levels without asking the store."""

from __future__ import annotations

from storesync.sync.adapters.shopify import (
    BulkCatalogScan,
    ScannedParent,
    ShopifyCatalogScan,
    ShopifyStoreAPI,
    bulk_levels,
)
from tests.commerce.test_client_emulator import SHOP, client_for, running_emulator


async def test_bulk_scan_reads_the_same_products_and_levels_as_pages():
    with running_emulator(stores=[SHOP]) as emu:
        emu.seed(SHOP, products=12, variants_per_product=3, locations=["Shop floor", "Warehouse"])
        async with client_for(emu) as client:
            api = ShopifyStoreAPI(client)
            paged = ShopifyCatalogScan(api)
            bulk = BulkCatalogScan(api, poll_interval=0.01)
            assert await bulk.products() == await paged.products()
            items = [v.inventory_item_id for p in await paged.products() for v in p.variants]
            assert len(items) == 36
            read = await api.read_levels(items)
            scanned = await bulk_levels(client, poll_interval=0.01)
            assert {k: lvl.available for k, lvl in scanned.items()} == {
                k: lvl.available for k, lvl in read.items()
            }
            locations = sorted({loc for _, loc in read})
            assert await bulk.all_levels(locations) == await paged.all_levels(locations)

            # ScannedParent: the scan's levels, no store call; a level that moved shows on a fresh read
            before = client.stats.requests
            parent = ScannedParent(api, await bulk.products(), await bulk.levels())
            item, loc = next(iter(read))
            assert (await parent.read_level(item, loc)).available == read[(item, loc)].available
            assert client.stats.requests == before
            emu.set_inventory(SHOP, item, loc, read[(item, loc)].available + 7)
            assert (await bulk.levels(fresh=True))[(item, loc)].available == read[(item, loc)].available + 7


async def test_a_failed_bulk_scan_falls_back_to_pages():
    with running_emulator(stores=[SHOP]) as emu:
        emu.seed(SHOP, products=3, variants_per_product=2, locations=["Shop floor"])
        async with client_for(emu) as client:
            api = ShopifyStoreAPI(client)
            paged = ShopifyCatalogScan(api)
            items = [v.inventory_item_id for p in await paged.products() for v in p.variants]
            bulk = BulkCatalogScan(api, poll_interval=0.01)

            async def last_bulk_status():
                result = await client.execute("BulkOperationStatus", {"query": "operation_type:query"})
                return result["bulkOperations"]["nodes"][0]["status"]

            emu.set_bulk_fault(SHOP, "FAILED", "INTERNAL_SERVER_ERROR")
            assert await bulk.products() == await paged.products()
            assert await last_bulk_status() == "FAILED"
            emu.set_bulk_fault(SHOP, "FAILED", "INTERNAL_SERVER_ERROR")
            levels = await bulk.levels()
            assert await last_bulk_status() == "FAILED"
            assert {k: v.available for k, v in levels.items()} == {
                k: v.available for k, v in (await api.read_levels(items)).items()
            }


async def test_levels_that_moved_during_a_backfill_are_fanned_out_afterwards(db):
    """The copies write the levels the scan read; a level that moved before its copy was linked
    had no link to fan out to. The backfill's last pass reads every level again and enqueues a
    `sync.fan_out_level` job for each that differs (and none for the others)."""
    from types import SimpleNamespace

    from storesync.db.pools import async_pooled_pool
    from storesync.sync.domain.model import InventoryLevel
    from storesync.sync.services.backfill import BackfillResult, fan_out_levels_moved_meanwhile

    def lvl(item, loc, n):
        return InventoryLevel(item, loc, n)

    used = {
        ("i1", "l1"): lvl("i1", "l1", 5),
        ("i2", "l1"): lvl("i2", "l1", 3),
        ("i3", "l1"): lvl("i3", "l1", 1),
    }
    now = {
        ("i1", "l1"): lvl("i1", "l1", 5),
        ("i2", "l1"): lvl("i2", "l1", 2),
        ("i4", "l1"): lvl("i4", "l1", 8),
    }

    class Scan:
        async def levels(self, *, fresh=False):
            assert fresh
            return now

    pool = async_pooled_pool(db.settings, name="levels-moved-test", min_size=0, max_size=2)
    await pool.open(wait=True)
    try:
        result = BackfillResult()
        await fan_out_levels_moved_meanwhile(
            SimpleNamespace(pool=pool),
            {"acme": (Scan(), used)},
            {"acme": SimpleNamespace(merchant_id="acme")},
            result,
        )
    finally:
        await pool.close()
    assert result.levels_moved == 3
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT kind, payload->>'parent_item', payload->>'parent_location', group_key "
            "FROM jobs ORDER BY 2"
        ).fetchall()
    assert rows == [("sync.fan_out_level", item, "l1", "acme") for item in ("i2", "i3", "i4")]


async def test_scanned_parent_reads_each_answer_once_for_copies_asking_at_the_same_moment():
    """A live copy saga's parent (nothing scanned): the children's copies of one product ask at
    the same moment; the product, its levels (one batched query) and its channels are read once."""
    import asyncio

    with running_emulator(stores=[SHOP]) as emu:
        emu.seed(SHOP, products=2, variants_per_product=2, locations=["Shop floor", "Warehouse"])
        async with client_for(emu) as client:
            api = ShopifyStoreAPI(client)
            await api.publications()  # read once per process and store anyway
            product_id = (await ShopifyCatalogScan(api).products())[0].id
            want = await api.read_product(product_id)
            levels = await api.read_levels([v.inventory_item_id for v in want.variants])
            parent = ScannedParent(api)
            before = client.stats.requests
            channels = await asyncio.gather(*(parent.channels_of(product_id) for _ in range(5)))
            products = await asyncio.gather(*(parent.read_product(product_id) for _ in range(5)))
            read = await asyncio.gather(
                *(parent.read_level(item, loc) for item, loc in levels for _ in range(5))
            )
            assert client.stats.requests == before + 3  # PublishableChannels, ProductById, InventoryLevels
            assert channels == [channels[0]] * 5 and products == [want] * 5
            assert [lvl.available for lvl in read] == [
                lvl.available for lvl in levels.values() for _ in range(5)
            ]
