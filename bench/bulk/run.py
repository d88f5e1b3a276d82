"""bench/bulk: reading a parent's whole catalog by pages vs with one bulk query.

One emulator process (its own core) serves two standard-plan stores (2,000-point bucket,
100 points/s) seeded with the same catalog. In the same run, one after the other:
- paged: `ShopifyStoreAPI.products()` with the scan's first lists of 10/5/5 (the ceiling to beat);
- bulk: `sync.adapters.shopify.bulk_products()` (bulkOperationRunQuery, polls, JSONL download).
Figures: wall seconds, points charged to the store's bucket, requests. Both must return the same
products. The emulator runs a bulk query at once; real Shopify takes longer to run it, so the
points are the figure that carries over, the bulk wall time does not.

    .venv/bin/python bench/bulk/run.py [--products 200] [--variants 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.sync.adapters.shopify import ShopifyStoreAPI, bulk_products
from tests.commerce.test_client_emulator import store_config
from tests.support.emulator import running_emulator

PAGED, BULK = "bench-paged.myshopify.com", "bench-bulk.myshopify.com"
SCAN_LISTS = {"variantsFirst": 10, "collectionsFirst": 5, "metafieldsFirst": 5, "mediaFirst": 5}


async def measure(emu, shop: str, read) -> tuple[dict, list]:
    async with client_for_shop(emu, shop) as client:
        start = time.perf_counter()
        products = await read(client)
        elapsed = time.perf_counter() - start
        return {
            "seconds": elapsed,
            "points": client.stats.points_charged,
            "requests": client.stats.requests,
            "products": len(products),
        }, products


def client_for_shop(emu, shop: str) -> AdminClient:
    return AdminClient(store_config(emu, shop), budget=LocalBudget())


async def paged_read(client) -> list:
    return [p async for p in ShopifyStoreAPI(client).products(page_size=25, list_sizes=SCAN_LISTS)]


async def bulk_read(client) -> list:
    return await bulk_products(client, poll_interval=0.2, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--variants", type=int, default=3)
    args = parser.parse_args()
    with running_emulator(stores=[PAGED, BULK], in_subprocess=True) as emu:
        for shop in (PAGED, BULK):
            emu.seed(shop, products=args.products, variants_per_product=args.variants)
        paged, paged_products = asyncio.run(measure(emu, PAGED, paged_read))
        bulk, bulk_products_ = asyncio.run(measure(emu, BULK, bulk_read))
    same = [(p.handle, len(p.variants)) for p in paged_products] == [
        (p.handle, len(p.variants)) for p in bulk_products_
    ]
    print(f"catalog: {args.products} products x {args.variants} variants, standard plan (100 points/s)")
    print(f"{'read':<8}{'seconds':>10}{'points':>10}{'points/product':>16}{'requests':>10}")
    for name, r in (("paged", paged), ("bulk", bulk)):
        print(
            f"{name:<8}{r['seconds']:>10.1f}{r['points']:>10.0f}{r['points'] / max(1, r['products']):>16.2f}"
            f"{r['requests']:>10}"
        )
    print(f"same catalog from both reads: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
