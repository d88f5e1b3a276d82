"""The domain's `ports.CatalogScan` over the commerce client: whole-store reads for linking,
backfill and reconciliation (paged `ProductsPage`, `CollectionsPage`, batched `InventoryLevels`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from storesync.commerce.store_api import ShopifyStoreAPI
from storesync.sync.model import Collection, Product


# First pages of a product's lists in one read. The rest is paged (`complete_product_lists`),
# so small first pages lose nothing, and a read's cost estimate - what the rate-limit budget
# reserves - falls from ~410 to ~105 points.
SYNC_LIST_SIZES = {"variantsFirst": 25, "collectionsFirst": 10, "metafieldsFirst": 10}


class SyncStoreAPI(ShopifyStoreAPI):
    """`ShopifyStoreAPI` as the sync jobs use it. Product media are not read (see
    `commerce.store_api`), so a create's empty `files` list is left out: it would add nothing,
    and not every API version accepts the field."""

    def __init__(self, client, *, list_sizes: Mapping[str, int] | None = None) -> None:
        super().__init__(client, list_sizes=list_sizes or SYNC_LIST_SIZES)

    async def product_set(self, input: Mapping[str, Any], *, product_id: str | None) -> Product:
        if "files" in input and not input["files"]:
            input = {k: v for k, v in input.items() if k != "files"}
        return await super().product_set(input, product_id=product_id)


class ShopifyCatalogScan:
    """One store's catalog, read once and kept: `all_levels` reads the levels of the items the
    products carry, so a scan reads each product at most once."""

    def __init__(self, api: ShopifyStoreAPI, *, page_size: int = 50) -> None:
        self.api = api
        self.shop = api.shop
        self.page_size = page_size
        self._products: list[Product] | None = None

    async def products(self) -> list[Product]:
        if self._products is None:
            self._products = [p async for p in self.api.products(page_size=self.page_size)]
        return self._products

    async def all_products(self) -> AsyncIterator[Product]:
        for p in await self.products():
            yield p

    async def all_collections(self) -> AsyncIterator[Collection]:
        async for node in self.api.client.nodes("CollectionsPage", {}, connection="collections", page_size=100):
            yield Collection(node["id"], node["handle"], node.get("title") or "")

    async def all_levels(self, location_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        wanted = set(location_ids)
        items = [v.inventory_item_id for p in await self.products() for v in p.variants if v.inventory_item_id]
        levels = await self.api.read_levels(items)
        return {key: lvl.available for key, lvl in levels.items() if key[1] in wanted}


class ScannedParent:
    """The parent store as one backfill scanned it: product reads come from the scan (a copy
    saga reads its parent product in every step, for every child: on a shared parent bucket
    that, not the children's writes, would bound the backfill). Levels are still read live, and
    every other call goes to the store. Changes made to the parent during the backfill reach
    the copies through the live webhooks and reconciliation, as for any linked product."""

    def __init__(self, api: ShopifyStoreAPI, products: Sequence[Product]) -> None:
        self.api = api
        self.shop = api.shop
        self._products = {p.id: p for p in products if p.id}

    async def read_product(self, product_id: str) -> Product | None:
        found = self._products.get(product_id)
        return found if found is not None else await self.api.read_product(product_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)
