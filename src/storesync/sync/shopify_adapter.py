"""The domain's `ports.CatalogScan` over the commerce client: whole-store reads for linking,
backfill and reconciliation (paged `ProductsPage`, `CollectionsPage`, batched `InventoryLevels`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from storesync.commerce.store_api import ShopifyStoreAPI, complete_product_lists, product_from_json
from storesync.logs import get_logger
from storesync.sync.model import Collection, InventoryLevel, Metafield, Option, Product

log = get_logger("storesync.sync.shopify_adapter")


# First pages of a product's lists in one read. The rest is paged (`complete_product_lists`),
# so small first pages lose nothing, and a read's cost estimate - what the rate-limit budget
# reserves - falls from ~410 to ~105 points.
SYNC_LIST_SIZES = {"variantsFirst": 25, "collectionsFirst": 10, "metafieldsFirst": 10}
# A whole-catalog scan's first pages: most products have a few variants, collections and
# metafields, so ~50 requested points per product (pages of ~20 products, not ~9); a longer
# list is read to its end for that product alone.
SCAN_LIST_SIZES = {"variantsFirst": 10, "collectionsFirst": 5, "metafieldsFirst": 5}


class SyncStoreAPI(ShopifyStoreAPI):
    """`ShopifyStoreAPI` as the sync jobs use it. Product media are not read (see
    `commerce.store_api`), so a create's empty `files` list is left out: it would add nothing,
    and not every API version accepts the field."""

    def __init__(self, client, *, list_sizes: Mapping[str, int] | None = None) -> None:
        super().__init__(client, list_sizes=list_sizes or SYNC_LIST_SIZES)

    async def product_set(self, input: Mapping[str, Any], *, product_id: str | None) -> Product:
        """productSet through `ProductSetIds`: the answer carries the ids the engine maps (product,
        variants, inventory items); the rest of the returned `Product` is the input as written
        (options, collections, metafields without their ids)."""
        if "files" in input and not input["files"]:
            input = {k: v for k, v in input.items() if k != "files"}
        variables: dict[str, Any] = {
            "input": dict(input),
            "variantsFirst": min(100, max(1, len(input.get("variants") or ()))),
        }
        if product_id is not None:
            variables["identifier"] = {"id": product_id}
        elif input.get("handle"):
            variables["identifier"] = {"handle": input["handle"]}
        result = await self.client.execute("ProductSetIds", variables)
        raw = dict(result["productSet"]["product"])
        none = {"nodes": [], "pageInfo": {"hasNextPage": False}}
        raw.update(collections=none, metafields=none)
        raw = await complete_product_lists(self.client, raw)  # only a variant list cut at 100
        seo = input.get("seo") or {}
        written = product_from_json(raw)
        return replace(
            written,
            description_html=input.get("descriptionHtml", written.description_html) or "",
            vendor=input.get("vendor") or "",
            product_type=input.get("productType") or "",
            tags=tuple(input.get("tags") or ()),
            options=tuple(
                Option(o["name"], tuple(v["name"] for v in o.get("values") or ()))
                for o in input.get("productOptions") or ()
            ),
            seo_title=seo.get("title"),
            seo_description=seo.get("description"),
            collections=tuple(input.get("collections") or ()),
            metafields=tuple(
                Metafield(m["namespace"], m["key"], m["type"], m["value"])
                for m in input.get("metafields") or ()
            ),
        )

    async def create_product_id(self, input: Mapping[str, Any], *, upsert: bool) -> str:
        if "files" in input and not input["files"]:
            input = {k: v for k, v in input.items() if k != "files"}
        return await super().create_product_id(input, upsert=upsert)


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
            self._products = [
                p async for p in self.api.products(page_size=self.page_size, list_sizes=SCAN_LIST_SIZES)
            ]
        return self._products

    async def all_products(self) -> AsyncIterator[Product]:
        for p in await self.products():
            yield p

    async def all_collections(self) -> AsyncIterator[Collection]:
        async for node in self.api.client.nodes(
            "CollectionsPage", {}, connection="collections", page_size=100
        ):
            yield Collection(node["id"], node["handle"], node.get("title") or "")

    async def all_levels(self, location_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        wanted = set(location_ids)
        items = [
            v.inventory_item_id for p in await self.products() for v in p.variants if v.inventory_item_id
        ]
        levels = await self.api.read_levels(items)
        return {key: lvl.available for key, lvl in levels.items() if key[1] in wanted}


async def bulk_levels(client, *, poll_interval: float = 0.25) -> dict[tuple[str, str], InventoryLevel]:
    """Every inventory item's available quantity at every location stocking it, (item, location)
    -> level, from one bulk query (10 points and a few 1-point polls, whatever the catalog)."""
    from storesync.commerce.bulk import bulk_query, bulk_query_text, reassemble
    from storesync.commerce.store_api import _dt

    objects = [
        o async for o in bulk_query(client, bulk_query_text("inventory_levels"), poll_interval=poll_interval)
    ]
    out: dict[tuple[str, str], InventoryLevel] = {}
    for item in reassemble(objects, {"InventoryLevel": "inventoryLevels"}):
        for lvl in item["inventoryLevels"]["nodes"]:
            quantities = {q["name"]: q["quantity"] for q in lvl.get("quantities") or ()}
            if "available" in quantities:
                key = (item["id"], lvl["location"]["id"])
                out[key] = InventoryLevel(key[0], key[1], quantities["available"], _dt(lvl.get("updatedAt")))
    return out


class BulkCatalogScan(ShopifyCatalogScan):
    """A catalog scan through bulk queries (`commerce.bulk`): products in one bulk query and,
    when asked, every level in another. Shopify runs bulk queries outside the rate limit, so a
    backfill reads a 1,000-product parent for a few dozen points instead of ~18,000 (paged:
    3 minutes of a standard plan's bucket before the first copy)."""

    def __init__(self, api: ShopifyStoreAPI, *, poll_interval: float = 0.25) -> None:
        super().__init__(api)
        self.poll_interval = poll_interval
        self._levels: dict[tuple[str, str], InventoryLevel] | None = None
        self._lock = asyncio.Lock()  # one bulk query per shop at a time

    async def products(self) -> list[Product]:
        from storesync.commerce.bulk import BulkOperationFailed, BulkOperationInProgress, bulk_products

        async with self._lock:
            if self._products is None:
                try:
                    self._products = await bulk_products(self.api.client, poll_interval=self.poll_interval)
                except (BulkOperationInProgress, BulkOperationFailed) as err:
                    # another app's bulk query holds the shop, or Shopify's failed: pages still work
                    log.warning("bulk scan unavailable; paging instead", shop=self.shop, error=str(err))
                    self._products = await ShopifyCatalogScan.products(self)
        return self._products

    async def levels(self, *, fresh: bool = False) -> dict[tuple[str, str], InventoryLevel]:
        """(item, location) -> level for every stocked item; `fresh` reads them again."""
        from storesync.commerce.bulk import BulkOperationFailed, BulkOperationInProgress

        products = await self.products()
        async with self._lock:
            if self._levels is None or fresh:
                try:
                    self._levels = await bulk_levels(self.api.client, poll_interval=self.poll_interval)
                except (BulkOperationInProgress, BulkOperationFailed) as err:
                    log.warning(
                        "bulk level scan unavailable; batched reads instead", shop=self.shop, error=str(err)
                    )
                    self._levels = await self.api.read_levels(
                        [v.inventory_item_id for p in products for v in p.variants if v.inventory_item_id]
                    )
        return self._levels

    async def all_levels(self, location_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        wanted = set(location_ids)
        return {key: lvl.available for key, lvl in (await self.levels()).items() if key[1] in wanted}


class ScannedParent:
    """The parent store as one backfill scanned it: product reads come from the scan (a copy
    saga reads its parent product in every step, for every child: on a shared parent bucket
    that, not the children's writes, would bound the backfill). Levels are read live, one
    batched `InventoryLevels` query per product when the first child's copy needs them, and
    shared by the other children's copies of that product (read one query per variant, location
    and child, they cost the parent's bucket 20 queries per 2-variant product for 5 children).
    Every other call goes to the store. Changes made to the parent during the backfill reach
    the copies through the live webhooks and reconciliation, as for any linked product."""

    def __init__(
        self,
        api: ShopifyStoreAPI,
        products: Sequence[Product],
        levels: Mapping[tuple[str, str], InventoryLevel] | None = None,
    ) -> None:
        self.api = api
        # Levels read with the scan (a bulk query): served from here, no read per product.
        self._scanned_levels = dict(levels) if levels is not None else None
        self.shop = api.shop
        self._products = {p.id: p for p in products if p.id}
        self._product_of_item = {
            v.inventory_item_id: p.id for p in products if p.id for v in p.variants if v.inventory_item_id
        }
        self._levels: dict[str, asyncio.Future] = {}  # parent product id -> its levels, read once

    async def read_product(self, product_id: str) -> Product | None:
        found = self._products.get(product_id)
        return found if found is not None else await self.api.read_product(product_id)

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        product_id = self._product_of_item.get(inventory_item_id)
        if self._scanned_levels is not None and product_id is not None:
            return self._scanned_levels.get((inventory_item_id, location_id))
        if product_id is None:
            return await self.api.read_level(inventory_item_id, location_id)
        if product_id not in self._levels:
            items = [v.inventory_item_id for v in self._products[product_id].variants if v.inventory_item_id]
            self._levels[product_id] = asyncio.ensure_future(self.api.read_levels(items))
        read = self._levels[product_id]
        try:
            levels = await asyncio.shield(read)
        except Exception:
            if self._levels.get(product_id) is read:
                del self._levels[product_id]  # the next copy reads again
            raise
        return levels.get((inventory_item_id, location_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)
