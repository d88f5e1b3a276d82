"""The sync domain's `StoreAPI` port (sync/ports.py) over the Admin client: what a job handler
passes to the domain for a real Shopify store or the emulator.

Conversions only: GraphQL JSON <-> `sync.model` values, `StaleQuantityError` -> the domain's
`StaleQuantity` (and a plain create's `HandleTakenError` -> `HandleTaken`). Every other commerce error propagates with its retryable/permanent class.
Not read from the store (the emulator serves neither): product media (`Product.images` stays
empty) and variant metafields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from storesync.commerce.budget import PostgresBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.credentials import NetworkTokens, TokenStore
from storesync.commerce.errors import (
    HandleTakenError,
    IdempotencyAttemptFailed,
    NotFoundError,
    StaleQuantityError,
    UserInputError,
)
from storesync.commerce.operations import get_operation
from storesync.commerce.variables import adjust_quantities_input, set_quantities_input
from storesync.config import NetworkConfig
from storesync.sync.model import InventoryLevel, Metafield, Option, Product, Variant
from storesync.sync.ports import HandleTaken, KeyAttemptFailed, StaleQuantity

# Page sizes of a product's own lists in one read (Shopify allows up to 100 variants per page).
PRODUCT_LIST_SIZES = {"variantsFirst": 100, "collectionsFirst": 50, "metafieldsFirst": 50}
# A product's lists and the query that pages through the rest of each.
_PRODUCT_LISTS = (
    ("variants", "ProductVariantsPage"),
    ("collections", "ProductCollectionsPage"),
    ("metafields", "ProductMetafieldsPage"),
)


async def complete_product_lists(
    client: AdminClient, raw: Mapping[str, Any], *, page_size: int = 100
) -> dict:
    """`raw` with every variant, collection and metafield: lists cut by their page size are read
    to the end. productSet replaces lists wholesale, so writing a truncated read to another store
    would delete what did not fit."""
    out = dict(raw)
    for field, operation in _PRODUCT_LISTS:
        conn = raw[field]
        info = conn.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            continue
        nodes = list(conn["nodes"])
        async for page in client.pages(
            operation,
            {"id": raw["id"]},
            connection=f"product.{field}",
            page_size=page_size,
            after=info.get("endCursor"),
        ):
            nodes.extend(page.nodes)
        out[field] = {"nodes": nodes, "pageInfo": {"hasNextPage": False, "endCursor": None}}
    return out


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def product_from_json(raw: Mapping[str, Any]) -> Product:
    """A `Product` from the fields ProductById / ProductsPage / ProductSet select."""
    seo = raw.get("seo") or {}
    return Product(
        id=raw["id"],
        handle=raw["handle"],
        title=raw["title"],
        description_html=raw.get("descriptionHtml") or "",
        vendor=raw.get("vendor") or "",
        product_type=raw.get("productType") or "",
        tags=tuple(raw.get("tags") or ()),
        options=tuple(
            Option(o["name"], tuple(v["name"] for v in o.get("optionValues") or ()))
            for o in sorted(raw.get("options") or (), key=lambda o: o.get("position", 0))
        ),
        variants=tuple(
            Variant(
                id=v["id"],
                option_values=tuple((s["name"], s["value"]) for s in v.get("selectedOptions") or ()),
                price=_money(v["price"]) or Decimal("0"),
                sku=v.get("sku") or None,
                barcode=v.get("barcode") or None,
                compare_at_price=_money(v.get("compareAtPrice")),
                inventory_item_id=(v.get("inventoryItem") or {}).get("id"),
            )
            for v in sorted(raw["variants"]["nodes"], key=lambda v: v.get("position", 0))
        ),
        status=raw.get("status") or "ACTIVE",
        seo_title=seo.get("title"),
        seo_description=seo.get("description"),
        collections=tuple(c["id"] for c in raw["collections"]["nodes"]),
        smart_collections=frozenset(c["id"] for c in raw["collections"]["nodes"] if _has_conditions(c)),
        metafields=tuple(
            Metafield(m["namespace"], m["key"], m["type"], m["value"], m.get("id"))
            for m in raw["metafields"]["nodes"]
        ),
        updated_at=_dt(raw.get("updatedAt")),
    )


def _has_conditions(collection: Mapping[str, Any]) -> bool:
    """A smart collection: one of its sources has conditions (its members follow them and cannot
    be listed in productSet)."""
    return any((s.get("inclusion") or {}).get("conditions") for s in collection.get("sources") or ())


class ShopifyStoreAPI:
    """One store, through `client` (its budget, retries and typed errors)."""

    def __init__(self, client: AdminClient, *, list_sizes: Mapping[str, int] | None = None) -> None:
        self.client = client
        self.shop = client.shop
        self.list_sizes = dict(list_sizes or PRODUCT_LIST_SIZES)

    async def _product(self, raw: Mapping[str, Any] | None) -> Product | None:
        return product_from_json(await complete_product_lists(self.client, raw)) if raw else None

    async def products(
        self, query: str | None = None, *, page_size: int = 50, list_sizes: Mapping[str, int] | None = None
    ) -> AsyncIterator[Product]:
        """Every product of the store (or those matching a search query), complete, page by page.
        `list_sizes`: first pages of each product's lists (default: the store's); smaller ones
        make larger pages fit the 1,000-point limit, the rest of a long list is read after."""
        variables: dict[str, Any] = {**(list_sizes or self.list_sizes), "query": query}
        async for page in self.client.pages(
            "ProductsPage", variables, connection="products", page_size=page_size
        ):
            for raw in page.nodes:
                yield await self._product(raw)  # type: ignore[misc]

    # ------------------------------------------------------------------ catalog

    async def read_product(self, product_id: str) -> Product | None:
        result = await self.client.execute("ProductById", {"id": product_id, **self.list_sizes})
        return await self._product(result["product"])

    async def find_product_by_handle(self, handle: str) -> Product | None:
        result = await self.client.execute("ProductByHandle", {"handle": handle, **self.list_sizes})
        return await self._product(result["productByIdentifier"])

    async def product_set(self, input: Mapping[str, Any], *, product_id: str | None) -> Product:
        """productSet by id; a create (no id) upserts by the input's handle, so a create resent
        after a lost answer updates the product it made instead of making a second one."""
        variables: dict[str, Any] = {"input": dict(input), **self.list_sizes}
        if product_id is not None:
            variables["identifier"] = {"id": product_id}
        elif input.get("handle"):
            variables["identifier"] = {"handle": input["handle"]}
        result = await self.client.execute("ProductSet", variables)
        return await self._product(result["productSet"]["product"])  # type: ignore[return-value]

    async def find_product_id_by_handle(self, handle: str) -> str | None:
        """The id of the product under `handle`, or None: 1 point, where a full read costs ~100."""
        result = await self.client.execute("ProductIdByHandle", {"handle": handle})
        return (result["productByIdentifier"] or {}).get("id")

    async def create_product_id(self, input: Mapping[str, Any], *, upsert: bool) -> str:
        """productSet creating a product, answered with its id alone (`ProductCreateId`, 11
        points: the least a create costs); the variants' ids come later (`catalog.pending_copy`).
        `upsert=False`: a plain create, which the store refuses (`HandleTakenError`) when the
        handle is taken, so nothing the store has is ever adopted. `upsert=True`, for a resend
        after a lost answer: by the input's handle, updating what the first send made."""
        if not input.get("handle"):
            raise ValueError("create_product_id needs the input's handle")
        variables = {"identifier": {"handle": input["handle"]} if upsert else None, "input": dict(input)}
        try:
            result = await self.client.execute("ProductCreateId", variables)
        except HandleTakenError as err:
            raise HandleTaken(str(err)) from err
        return result["productSet"]["product"]["id"]

    async def delete_product(self, product_id: str) -> None:
        try:
            await self.client.execute("ProductDelete", {"id": product_id})
        except NotFoundError:
            return  # already gone: what we wanted
        except UserInputError as err:
            # productDelete's userErrors carry no code: Shopify says "Product does not exist".
            if any("does not exist" in e.message.lower() for e in err.user_errors):
                return
            raise

    # ------------------------------------------------------------------ inventory

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        result = await self.client.execute(
            "InventoryLevelAtLocation", {"inventoryItemId": inventory_item_id, "locationId": location_id}
        )
        level = (result["inventoryItem"] or {}).get("inventoryLevel")
        if level is None:
            return None
        quantities = {q["name"]: q["quantity"] for q in level["quantities"]}
        return InventoryLevel(
            inventory_item_id, location_id, quantities["available"], _dt(level.get("updatedAt"))
        )

    async def read_levels(
        self, inventory_item_ids: Sequence[str], *, locations_first: int = 10
    ) -> dict[tuple[str, str], InventoryLevel]:
        """Every level of these items, keyed (item, location), in as few queries as fit the
        1,000-point limit. Unknown items are left out."""
        op = get_operation("InventoryLevels")
        ids = list(dict.fromkeys(inventory_item_ids))
        levels: dict[tuple[str, str], InventoryLevel] = {}
        while ids:
            chunk = self.client.estimator.largest_page(
                op,
                {"locationsFirst": locations_first, "inventoryItemIds": ids[:250]},
                min(250, len(ids)),
                key="inventoryItemIds",
                make=lambda n: ids[:n],  # noqa: B023 - called before ids changes
            )
            batch, ids = ids[:chunk], ids[chunk:]
            result = await self.client.execute(
                op, {"inventoryItemIds": batch, "locationsFirst": locations_first}
            )
            for item in result["nodes"]:
                if not item:
                    continue
                conn = item["inventoryLevels"]
                if (conn.get("pageInfo") or {}).get(
                    "hasNextPage"
                ):  # stocked at more locations: read it alone
                    again = await self.client.execute(
                        op, {"inventoryItemIds": [item["id"]], "locationsFirst": 250}
                    )
                    conn = again["nodes"][0]["inventoryLevels"]
                for lvl in conn["nodes"]:
                    quantities = {q["name"]: q["quantity"] for q in lvl["quantities"]}
                    key = (item["id"], lvl["location"]["id"])
                    levels[key] = InventoryLevel(
                        key[0], key[1], quantities["available"], _dt(lvl.get("updatedAt"))
                    )
        return levels

    async def set_level(
        self,
        inventory_item_id: str,
        location_id: str,
        quantity: int,
        *,
        change_from: int | None,
        idempotency_key: str,
        reason: str = "correction",
    ) -> int:
        input_ = set_quantities_input(
            [(inventory_item_id, location_id, quantity, change_from)], reason=reason
        )
        try:
            result = await self.client.execute(
                "InventorySetQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err)) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err
        group = result["inventorySetQuantities"]["inventoryAdjustmentGroup"]
        return _after(group, inventory_item_id, location_id, default=quantity)

    async def adjust_level(
        self,
        inventory_item_id: str,
        location_id: str,
        delta: int,
        *,
        idempotency_key: str,
        change_from: int | None = None,
        reason: str = "correction",
    ) -> int:
        input_ = adjust_quantities_input(
            [(inventory_item_id, location_id, delta, change_from)], reason=reason
        )
        try:
            result = await self.client.execute(
                "InventoryAdjustQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err)) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err
        group = result["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"]
        after = _after(group, inventory_item_id, location_id, default=None)
        if after is None:  # no change reported (delta 0): read what the level is
            level = await self.read_level(inventory_item_id, location_id)
            return level.available if level else 0
        return after


def _after(group: Mapping[str, Any] | None, item: str, location: str, *, default: int | None) -> Any:
    """quantityAfterChange of the "available" change at (item, location) in an adjustment group."""
    for change in (group or {}).get("changes") or ():
        if (
            change.get("name") == "available"
            and (change.get("item") or {}).get("id") == item
            and (change.get("location") or {}).get("id") == location
            and change.get("quantityAfterChange") is not None
        ):
            return change["quantityAfterChange"]
    return default


class StoreClients:
    """A worker process's Admin API clients: one per configured store, sharing one HTTP
    connection pool, (given a pooled-path pool) the Postgres budget every process shares, and
    (given a token store) the tokens every process shares."""

    def __init__(
        self,
        network: NetworkConfig,
        *,
        pool: AsyncConnectionPool | None = None,
        timeout: float = 10.0,
        token_store: TokenStore | None = None,
        **client_options: Any,
    ) -> None:
        self.network = network
        self.budget = PostgresBudget(pool) if pool is not None else None
        self.http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20))
        self.tokens = NetworkTokens(network, token_store, self.http, timeout=timeout)
        self.timeout = timeout
        self.client_options = client_options
        self._clients: dict[str, AdminClient] = {}

    def client(self, shop: str) -> AdminClient:
        if shop not in self._clients:
            found = self.network.store(shop)
            if found is None:
                raise LookupError(f"{shop} is not a configured store (storesync.toml)")
            self._clients[shop] = AdminClient(
                found[1],
                budget=self.budget,
                http=self.http,
                timeout=self.timeout,
                tokens=self.tokens.for_store(found[1]),
                **self.client_options,
            )
        return self._clients[shop]

    def store_api(self, shop: str) -> ShopifyStoreAPI:
        return ShopifyStoreAPI(self.client(shop))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> StoreClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
