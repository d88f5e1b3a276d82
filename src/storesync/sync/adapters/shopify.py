"""The Shopify adapter: the sync domain's store ports over the commerce client (a real store or
the emulator). Conversions between the Admin API's JSON and `sync.domain.model` values, and the
reads that span a whole store; nothing else.

- `ShopifyStoreAPI`: `ports.StoreAPI` (products and inventory levels). `StaleQuantityError` becomes
  the domain's `StaleQuantity` and a plain create's `HandleTakenError` becomes `HandleTaken`; every
  other commerce error propagates with its retryable/permanent class (`sync/jobs/errors.py` maps
  it to the queue's). `sync_store_api` is the one the sync jobs use: small first pages, and writes
  answered with the ids the engine maps (`ProductSetIds`), the rest taken from the input.
- `ShopifyCatalogScan`, `BulkCatalogScan`, `ScannedParent`: whole-store reads for linking,
  backfill and reconciliation (paged queries, or bulk operations outside the rate limit).
- `ShopifyCollections`: `ports.CollectionStore`; a collection already gone reads as None and
  deletes as done.

A product read carries its media (images by the URL the store serves them from), its variants'
selling, shipping and inventory item fields, and, when the merchant syncs metafield namespaces
(`variant_metafield_namespaces`), its variants' metafields of those namespaces (one more query:
a product's other variant metafields are never read, nor ever written).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from storesync.commerce.bulk import (
    BulkOperationFailed,
    BulkOperationInProgress,
    bulk_query,
    bulk_query_text,
    reassemble,
    wait_for_running_queries,
)
from storesync.commerce.client import AdminClient
from storesync.commerce.errors import (
    HandleTakenError,
    IdempotencyAttemptFailed,
    NotFoundError,
    RetryableCommerceError,
    StaleQuantityError,
    UserInputError,
)
from storesync.commerce.operations import get_operation
from storesync.commerce.variables import adjust_quantities_input, set_quantities_input
from storesync.logs import get_logger
from storesync.sync.domain.adjusts import MAX_CHANGES, LevelChange
from storesync.sync.domain.locations import StoreLocation
from storesync.sync.domain.model import (
    Collection,
    CollectionCondition,
    Image,
    InventoryLevel,
    Media,
    Metafield,
    Option,
    Product,
    Variant,
    VariantDetails,
)
from storesync.sync.domain.ports import HandleTaken, KeyAttemptFailed, StaleQuantity
from storesync.sync.domain.pushes import MAX_QUANTITIES, LevelSet

log = get_logger("storesync.sync.shopify")

METAFIELDS_PER_SET = 25  # metafieldsSet's limit per call

# Page sizes of a product's own lists in one read (Shopify allows up to 100 variants per page).
PRODUCT_LIST_SIZES = {"variantsFirst": 50, "collectionsFirst": 25, "metafieldsFirst": 25, "mediaFirst": 25}
# First pages of a product's lists in one read. The rest is paged (`complete_product_lists`),
# so small first pages lose nothing, and a read's cost estimate - what the rate-limit budget
# reserves - is ~210 points (20 variants with their item's fields, 5 media) instead of ~540.
SYNC_LIST_SIZES = {"variantsFirst": 20, "collectionsFirst": 10, "metafieldsFirst": 10, "mediaFirst": 5}


# A whole-catalog scan's first pages: most products have a few variants, collections and
# metafields, so ~50 requested points per product (pages of ~20 products, not ~9); a longer
# list is read to its end for that product alone.
SCAN_LIST_SIZES = {"variantsFirst": 10, "collectionsFirst": 5, "metafieldsFirst": 5, "mediaFirst": 5}
# A product's lists and the query that pages through the rest of each.
_PRODUCT_LISTS = (
    ("variants", "ProductVariantsPage"),
    ("collections", "ProductCollectionsPage"),
    ("metafields", "ProductMetafieldsPage"),
    ("media", "ProductMediaPage"),
)
# Metafields of one variant read at once (the rest is paged).
VARIANT_METAFIELDS_FIRST = 10


async def complete_product_lists(
    client: AdminClient, raw: Mapping[str, Any], *, page_size: int = 100
) -> dict:
    """`raw` with every variant, collection and metafield: lists cut by their page size are read
    to the end. productSet replaces lists wholesale, so writing a truncated read to another store
    would delete what did not fit."""
    out = dict(raw)
    for field, operation in _PRODUCT_LISTS:
        conn = raw.get(field)
        if conn is None:
            continue
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


def _details(v: Mapping[str, Any]) -> VariantDetails | None:
    """A variant's `VariantDetailFields` (None when the read did not select them)."""
    if "inventoryPolicy" not in v:
        return None
    item = v.get("inventoryItem") or {}
    weight = (item.get("measurement") or {}).get("weight")
    cost = (item.get("unitCost") or {}).get("amount")
    return VariantDetails(
        inventory_policy=v.get("inventoryPolicy"),
        taxable=v.get("taxable"),
        tracked=item.get("tracked"),
        requires_shipping=item.get("requiresShipping"),
        cost=None if cost is None else Decimal(str(cost)),
        hs_code=item.get("harmonizedSystemCode") or None,
        country_of_origin=item.get("countryCodeOfOrigin"),
        weight=(repr(float(weight["value"])), weight["unit"]) if weight else None,
    )


def _metafields(conn: Mapping[str, Any] | None) -> tuple[Metafield, ...]:
    return tuple(
        Metafield(m["namespace"], m["key"], m["type"], m["value"], m.get("id"))
        for m in (conn or {}).get("nodes") or ()
    )


def _media(raw: Mapping[str, Any]) -> tuple[Media, ...]:
    return tuple(
        Media(
            id=m["id"],
            source=(m.get("image") or {}).get("url"),
            alt=m.get("alt") or "",
            status=m.get("status") or "READY",
            kind=m.get("mediaContentType") or "IMAGE",
        )
        for m in (raw.get("media") or {}).get("nodes") or ()
    )


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
                metafields=_metafields(v.get("metafields")),
                details=_details(v),
                inventory_quantity=v.get("inventoryQuantity"),
            )
            for v in sorted(raw["variants"]["nodes"], key=lambda v: v.get("position", 0))
        ),
        media=_media(raw),
        status=raw.get("status") or "ACTIVE",
        seo_title=seo.get("title"),
        seo_description=seo.get("description"),
        collections=tuple(c["id"] for c in raw["collections"]["nodes"]),
        smart_collections=frozenset(c["id"] for c in raw["collections"]["nodes"] if _has_conditions(c)),
        metafields=_metafields(raw.get("metafields")),
        updated_at=_dt(raw.get("updatedAt")),
        created_at=_dt(raw.get("createdAt")),
    )


# --------------------------------------------------------------------------- products and levels


def _has_conditions(collection: Mapping[str, Any]) -> bool:
    """A smart collection: one of its sources has conditions (its members follow them and cannot
    be listed in productSet)."""
    return any((s.get("inclusion") or {}).get("conditions") for s in collection.get("sources") or ())


class ShopifyStoreAPI:
    """One store, through `client` (its budget, retries and typed errors).

    `list_sizes`: first pages of a product's lists in one read (the rest is paged). `ids_only`:
    writes are answered with the ids the engine maps (product, variants, inventory items) and the
    returned `Product` is otherwise the input as written (options, collections, metafields without
    their ids); a create's empty `files` list is left out (it adds nothing, and not every API
    version accepts the field). Without it a write is answered with the product as read."""

    def __init__(
        self,
        client: AdminClient,
        *,
        list_sizes: Mapping[str, int] | None = None,
        ids_only: bool = False,
        variant_metafield_namespaces: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.shop = client.shop
        self.list_sizes = dict(list_sizes or PRODUCT_LIST_SIZES)
        self.ids_only = ids_only
        # The synced namespaces: a product read also reads its variants' metafields of these.
        self.variant_metafield_namespaces = variant_metafield_namespaces
        self._publications: dict[str, str] | None = None  # channel name -> publication id

    async def _product(self, raw: Mapping[str, Any] | None) -> Product | None:
        if not raw:
            return None
        product = product_from_json(await complete_product_lists(self.client, raw))
        if self.variant_metafield_namespaces and product.variants:
            product = await self.with_variant_metafields(product)
        return product

    async def with_variant_metafields(self, product: Product) -> Product:
        """`product` with its variants' metafields of the synced namespaces (one query, sized by
        its number of variants; a variant with more than a page of them is paged alone)."""
        namespaces = self.variant_metafield_namespaces
        namespace = next(iter(namespaces)) if len(namespaces) == 1 else None
        found: dict[str, tuple[Metafield, ...]] = {}
        after = None
        while True:
            result = await self.client.execute(
                "ProductVariantMetafields",
                {
                    "id": product.id,
                    "variantsFirst": min(100, max(1, len(product.variants))),
                    "after": after,
                    "metafieldsFirst": VARIANT_METAFIELDS_FIRST,
                    "namespace": namespace,
                },
            )
            conn = (result["product"] or {}).get("variants") or {"nodes": []}
            for node in conn["nodes"]:
                nodes = list(node["metafields"]["nodes"])
                info = node["metafields"].get("pageInfo") or {}
                if info.get("hasNextPage"):
                    async for page in self.client.pages(
                        "VariantMetafieldsPage",
                        {"id": node["id"], "namespace": namespace},
                        connection="productVariant.metafields",
                        page_size=100,
                        after=info.get("endCursor"),
                    ):
                        nodes.extend(page.nodes)
                found[node["id"]] = tuple(
                    m for m in _metafields({"nodes": nodes}) if m.namespace in namespaces
                )
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            after = info.get("endCursor")
        return replace(
            product,
            variants=tuple(replace(v, metafields=found.get(v.id or "", ())) for v in product.variants),
        )

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
        if self.ids_only:
            return await self._product_set_ids(_without_empty_files(input), product_id)
        variables: dict[str, Any] = {"input": dict(input), **self.list_sizes}
        _identify(variables, input, product_id)
        result = await self.client.execute("ProductSet", variables)
        return await self._product(result["productSet"]["product"])  # type: ignore[return-value]

    async def _product_set_ids(self, input: Mapping[str, Any], product_id: str | None) -> Product:
        """productSet through `ProductSetIds`: the answer carries the ids the engine maps; the rest
        of the returned `Product` is the input as written."""
        variables: dict[str, Any] = {
            "input": dict(input),
            "variantsFirst": min(100, max(1, len(input.get("variants") or ()))),
        }
        _identify(variables, input, product_id)
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

    async def find_product_id_by_handle(self, handle: str) -> str | None:
        """The id of the product under `handle`, or None: 1 point, where a full read costs ~100."""
        found = await self.product_under_handle(handle)
        return found[0] if found else None

    async def product_under_handle(self, handle: str) -> tuple[str, datetime | None] | None:
        """The id and creation time of the product under `handle`, or None (1 point)."""
        result = await self.client.execute("ProductIdByHandle", {"handle": handle})
        raw = result["productByIdentifier"]
        return (raw["id"], _dt(raw.get("createdAt"))) if raw else None

    async def update_product_fields(self, product_id: str, fields: Mapping[str, Any]) -> None:
        """Some of the product's own fields (status, handle) set, nothing else changed."""
        await self.client.execute(
            "ProductUpdateFields", {"identifier": {"id": product_id}, "input": dict(fields)}
        )

    async def set_media(self, product_id: str, files: Sequence[Mapping[str, Any]]) -> list[str]:
        """The product's media made exactly `files` (`domain/media.py`); their ids, in order."""
        result = await self.client.execute(
            "ProductSetMedia",
            {
                "identifier": {"id": product_id},
                "input": {"files": [dict(f) for f in files]},
                "mediaFirst": max(1, len(files)),
            },
        )
        return [m["id"] for m in result["productSet"]["product"]["media"]["nodes"]]

    async def set_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        """metafieldsSet, 25 at a time ({ownerId, namespace, key, type, value})."""
        for start in range(0, len(metafields), METAFIELDS_PER_SET):
            chunk = [dict(m) for m in metafields[start : start + METAFIELDS_PER_SET]]
            await self.client.execute("MetafieldsSet", {"metafields": chunk})

    async def delete_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        """metafieldsDelete ({ownerId, namespace, key}); one already gone is no error."""
        for start in range(0, len(metafields), METAFIELDS_PER_SET):
            chunk = [dict(m) for m in metafields[start : start + METAFIELDS_PER_SET]]
            await self.client.execute("MetafieldsDelete", {"metafields": chunk})

    # ------------------------------------------------------------------ sales channels

    async def publications(self) -> dict[str, str]:
        """The store's sales channels: name (its catalog's title) -> publication id; read once."""
        if self._publications is None:
            result = await self.client.execute("Publications", {"first": 50})
            self._publications = {
                (n.get("catalog") or {}).get("title") or n["id"]: n["id"]
                for n in result["publications"]["nodes"]
            }
        return self._publications

    async def channels_of(self, resource_id: str) -> list[str]:
        """The names of the channels a product or collection is published on."""
        names = {pid: name for name, pid in (await self.publications()).items()}
        result = await self.client.execute("PublishableChannels", {"id": resource_id})
        nodes = ((result["node"] or {}).get("resourcePublicationsV2") or {}).get("nodes") or ()
        return sorted(names.get(n["publication"]["id"], n["publication"]["id"]) for n in nodes)

    async def publish(self, resource_id: str, publication_ids: Sequence[str]) -> None:
        await self.client.execute(
            "PublishablePublish",
            {"id": resource_id, "input": [{"publicationId": p} for p in publication_ids]},
        )

    async def create_product_id(self, input: Mapping[str, Any], *, upsert: bool) -> str:
        """productSet creating a product, answered with its id alone (`ProductCreateId`, 11
        points: the least a create costs); the variants' ids come later (`copies.pending_copy`).
        `upsert=False`: a plain create, which the store refuses (`HandleTakenError`) when the
        handle is taken, so nothing the store has is ever adopted. `upsert=True`, for a resend
        after a lost answer: by the input's handle, updating what the first send made."""
        if not input.get("handle"):
            raise ValueError("create_product_id needs the input's handle")
        if self.ids_only:
            input = _without_empty_files(input)
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
        1,000-point limit (or the store's smaller bucket). Unknown items are left out."""
        op = get_operation("InventoryLevels")
        ids = list(dict.fromkeys(inventory_item_ids))
        levels: dict[tuple[str, str], InventoryLevel] = {}
        while ids:
            chunk = self.client.estimator.largest_page(
                op,
                {"locationsFirst": locations_first, "inventoryItemIds": ids[:250]},
                min(250, len(ids)),
                limit=self.client.largest_call_cost,
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
            await self.client.execute(
                "InventorySetQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err)) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err
        return quantity

    async def set_levels(
        self, sets: Sequence[LevelSet], *, idempotency_key: str, reason: str = "correction"
    ) -> None:
        """Many levels in one `inventorySetQuantities` (at most 250: Shopify's input limit). A
        stale quantity fails the whole call ("the mutation fails with a CHANGE_FROM_QUANTITY_STALE
        error": https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities);
        each stale one is named by its userError's field, ["input", "quantities", i, ...]."""
        if not 0 < len(sets) <= MAX_QUANTITIES:
            raise ValueError(f"set_levels takes 1 to {MAX_QUANTITIES} quantities, not {len(sets)}")
        input_ = set_quantities_input(
            [(s.item_id, s.location_id, s.quantity, s.change_from) for s in sets], reason=reason
        )
        try:
            await self.client.execute(
                "InventorySetQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err), stale=_stale_indices(err.user_errors, "quantities")) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err

    async def adjust_levels(
        self, changes: Sequence[LevelChange], *, idempotency_key: str, reason: str = "correction"
    ) -> None:
        """Many deltas in one `inventoryAdjustQuantities` (at most 250: Shopify's input limit,
        https://shopify.dev/docs/api/usage/limits#input-limits), each with its
        `changeFromQuantity`. One stale change fails the whole call: StaleQuantity naming the
        stale indices (userError field ["input", "changes", i, ...]); a repeated key answers the
        first attempt's result and applies nothing again."""
        if not 0 < len(changes) <= MAX_CHANGES:
            raise ValueError(f"adjust_levels takes 1 to {MAX_CHANGES} changes, not {len(changes)}")
        input_ = adjust_quantities_input(
            [(c.item_id, c.location_id, c.delta, c.change_from) for c in changes], reason=reason
        )
        try:
            await self.client.execute(
                "InventoryAdjustQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err), stale=_stale_indices(err.user_errors, "changes")) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err

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
            await self.client.execute(
                "InventoryAdjustQuantities", {"input": input_}, idempotency_key=idempotency_key
            )
        except StaleQuantityError as err:
            raise StaleQuantity(str(err)) from err
        except IdempotencyAttemptFailed as err:
            raise KeyAttemptFailed(str(err)) from err
        if change_from is not None:  # the compare-and-set held: the level is what it said plus delta
            return change_from + delta
        level = await self.read_level(inventory_item_id, location_id)
        return level.available if level else 0

    # ------------------------------------------------------------------ orders, locations

    async def read_order(self, order_id: str) -> dict[str, Any] | None:
        """One order as `domain.orders.order_event_from_graphql` reads it (`ChildOrder`), its
        returns' dispositions filled in; None when the store has no such order."""
        result = await self.client.execute("ChildOrder", {"id": order_id})
        order = result["order"]
        return await self._with_dispositions(order) if order else None

    async def orders_updated_since(
        self, since: datetime, *, poll_interval: float = 0.5, busy_wait_s: float = 60.0
    ) -> list[dict[str, Any]]:
        """Every order updated at or after `since`, as `read_order` reads one, from one bulk query
        (`bulk_orders`): the orders and their lines, fulfillment orders and returns' ids outside the
        rate limit, whatever their number or the overlap re-read; only their refunds' lines and
        their returns' dispositions are read by id (`_with_refund_lines`, `_with_dispositions`).

        Why never pages (`ChildOrdersPage`, `paged_orders_updated_since`): a bulk query costs
        one mutation (10 points) and a few 1-point polls whatever it reads, with no client-side
        throttle to manage (https://shopify.dev/docs/api/usage/bulk-operations/queries), while
        a page asks the bucket for ~330 points per order (its lists' first pages) and the same
        overlap is re-read page by page each pass (tests/commerce/test_bulk.py compares the
        points charged).
        While another bulk query holds the shop (`BulkOperationInProgress`: a catalog scan, or
        a query whose worker was killed before it read the result), this waits for it to end
        (`wait_for_running_queries`, up to `busy_wait_s`; then the child's orders are compared
        in the next pass and its checkpoint stays)."""
        for attempt in range(3):
            try:
                orders = await bulk_orders(self.client, since, poll_interval=poll_interval)
                break
            except BulkOperationInProgress:
                if attempt == 2:
                    raise
                await wait_for_running_queries(self.client, poll_interval=poll_interval, timeout=busy_wait_s)
        with_lines = await self._with_refund_lines(orders)
        return [await self._with_dispositions(o) for o in with_lines]

    async def _with_refund_lines(self, orders: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The orders with each refund's lines (`RefundLines`): `REFUNDS_PER_READ` refunds a call
        with their first `REFUND_LINES` lines (~100 requested points, ~3 spent per line); a
        refund with more lines is read again alone (`MAX_REFUND_LINES`)."""
        ids = [r["id"] for o in orders for r in o.get("refunds") or () if r and r.get("id")]
        found: dict[str, dict[str, Any]] = {}
        longer: list[str] = []
        for i in range(0, len(ids), REFUNDS_PER_READ):
            batch = {"ids": ids[i : i + REFUNDS_PER_READ], "lines": REFUND_LINES}
            for node in (await self.client.execute("RefundLines", batch))["nodes"]:
                if node and node.get("id"):
                    found[node["id"]] = node
                    if node["refundLineItems"]["pageInfo"]["hasNextPage"]:
                        longer.append(node["id"])
        for refund_id in longer:
            whole = await self.client.execute("RefundLines", {"ids": [refund_id], "lines": MAX_REFUND_LINES})
            for node in whole["nodes"]:
                if node and node.get("id"):
                    found[node["id"]] = node
        missing = sorted(set(ids) - set(found))
        if missing:  # never silently without its restocks: the child is compared again next pass
            raise RetryableCommerceError(
                f"{self.shop}: refunds {missing[:5]} listed by their orders were not found by id",
                shop=self.shop,
                operation="RefundLines",
            )
        return [{**o, "refunds": [found[r["id"]] for r in o.get("refunds") or () if r]} for o in orders]

    async def paged_orders_updated_since(
        self, since: datetime, *, page_size: int = 10
    ) -> AsyncIterator[dict[str, Any]]:
        """The same orders through pages of `ChildOrdersPage` (Shopify's search syntax on
        `updated_at`, https://shopify.dev/docs/api/usage/search-syntax), within the rate limit:
        what the bulk read is compared with."""
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        async for page in self.client.pages(
            "ChildOrdersPage", {"query": f"updated_at:>='{stamp}'"}, connection="orders", page_size=page_size
        ):
            for order in page.nodes:
                yield await self._with_dispositions(order)

    async def _with_dispositions(self, order: dict[str, Any]) -> dict[str, Any]:
        out = dict(order)
        cut = [
            name
            for name, conn in (
                ("lineItems", order.get("lineItems")),
                ("fulfillmentOrders", order.get("fulfillmentOrders")),
                ("returns", order.get("returns")),
                *(
                    ("fulfillment order lineItems", fo.get("lineItems"))
                    for fo in _nodes(order.get("fulfillmentOrders"))
                ),
                *(("refundLineItems", r.get("refundLineItems")) for r in order.get("refunds") or ()),
            )
            if ((conn or {}).get("pageInfo") or {}).get("hasNextPage")
        ]
        if cut:
            # Orders this large are read in part: the movements on the lines left out are not
            # applied (never applied wrongly); the reconciliation reports their levels.
            log.warning("order read in part", order=order.get("id"), lists=cut)
        returns = []
        for ret in _nodes(order.get("returns")):
            found = (await self.client.execute("ReturnDispositions", {"id": ret["id"], "lines": 10}))[
                "return"
            ]
            if found and any(
                (rfo.get("lineItems") or {}).get("pageInfo", {}).get("hasNextPage")
                for rfo in _nodes(found.get("reverseFulfillmentOrders"))
            ):
                found = (await self.client.execute("ReturnDispositions", {"id": ret["id"], "lines": 25}))[
                    "return"
                ]
            returns.append(found or ret)
        out["returns"] = {"nodes": returns}
        return out

    async def locations(self) -> list[StoreLocation]:
        """Every location of the store, deactivated ones included."""
        out = []
        async for page in self.client.pages("StoreLocations", {}, connection="locations", page_size=50):
            out += [
                StoreLocation(n["id"], n["name"], bool(n["isActive"]), bool(n.get("fulfillsOnlineOrders")))
                for n in page.nodes
            ]
        return out


def _nodes(conn: Any) -> list[Mapping[str, Any]]:
    return [n for n in (conn or {}).get("nodes") or () if n] if isinstance(conn, Mapping) else []


def _identify(variables: dict[str, Any], input: Mapping[str, Any], product_id: str | None) -> None:
    if product_id is not None:
        variables["identifier"] = {"id": product_id}
    elif input.get("handle"):
        variables["identifier"] = {"handle": input["handle"]}


def _without_empty_files(input: Mapping[str, Any]) -> Mapping[str, Any]:
    if "files" in input and not input["files"]:
        return {k: v for k, v in input.items() if k != "files"}
    return input


def sync_store_api(
    client: AdminClient, *, metafield_namespaces: frozenset[str] = frozenset()
) -> ShopifyStoreAPI:
    """The store as the sync jobs use it: small first pages, writes answered with ids, and the
    variants' metafields of the merchant's synced namespaces read with each product."""
    return ShopifyStoreAPI(
        client, list_sizes=SYNC_LIST_SIZES, ids_only=True, variant_metafield_namespaces=metafield_namespaces
    )


# --------------------------------------------------------------------------- whole-store reads


# A product's nested connections in BulkProducts, by the gid type of their nodes.
PRODUCT_CHILDREN = {
    "ProductVariant": "variants",
    "Collection": "collections",
    "Metafield": "metafields",
    "MediaImage": "media",
    "Video": "media",
    "ExternalVideo": "media",
    "Model3d": "media",
}


def updated_since_filter(since: datetime) -> str:
    """Search syntax for "updated at or after `since`" (UTC, to the second, rounded down)."""
    return f"updated_at:>='{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def updated_since_query(text: str, root: str, since: datetime | None) -> str:
    """A bulk query document whose root connection `root` keeps only what was updated at or
    after `since` (search syntax `updated_at:>=`; bulk queries take no variables)."""
    if since is None:
        return text
    return text.replace(f"  {root} {{", f'  {root}(query: "{updated_since_filter(since)}") {{', 1)


async def bulk_products(
    client: AdminClient,
    *,
    poll_interval: float = 1.0,
    timeout: float = 600.0,
    updated_since: datetime | None = None,
    variant_metafield_namespaces: frozenset[str] = frozenset(),
) -> list[Product]:
    """Every product of the store (or those updated at or after `updated_since`), complete
    (every variant, collection and metafield, and the variants' metafields of
    `variant_metafield_namespaces`): the same `Product` values `ShopifyStoreAPI.products()`
    yields with those namespaces, in id order. One bulk query (`commerce.bulk`), and a second one
    for the variants' metafields when namespaces are synced and there are variants: one query
    holding both would have six connections, and Shopify runs at most five
    (`bulk_queries/products.graphql`). The two run one after the other."""
    text = updated_since_query(bulk_query_text("products"), "products", updated_since)
    objects = [obj async for obj in bulk_query(client, text, poll_interval=poll_interval, timeout=timeout)]
    products = [product_from_json(raw) for raw in reassemble(objects, PRODUCT_CHILDREN)]
    if not variant_metafield_namespaces or not any(p.variants for p in products):
        return products
    found = await bulk_variant_metafields(
        client, variant_metafield_namespaces, poll_interval=poll_interval, timeout=timeout
    )
    return [
        replace(p, variants=tuple(replace(v, metafields=found.get(v.id or "", ())) for v in p.variants))
        for p in products
    ]


async def bulk_variant_metafields(
    client: AdminClient, namespaces: frozenset[str], *, poll_interval: float = 1.0, timeout: float = 600.0
) -> dict[str, tuple[Metafield, ...]]:
    """Variant id -> its metafields of `namespaces` (in the store's order), every variant of the
    store, from one bulk query. Every variant, not only those of recently updated products: a
    metafield written alone need not move its variant's `updatedAt`."""
    text = bulk_query_text("variant_metafields")
    if len(namespaces) == 1:  # bulk queries take no variables; a JSON string is a GraphQL one
        namespace = json.dumps(next(iter(namespaces)))
        text = text.replace("        metafields {", f"        metafields(namespace: {namespace}) {{", 1)
    objects = [obj async for obj in bulk_query(client, text, poll_interval=poll_interval, timeout=timeout)]
    return {
        variant["id"]: tuple(m for m in _metafields(variant["metafields"]) if m.namespace in namespaces)
        for variant in reassemble(objects, {"Metafield": "metafields"})
    }


# An order's nested connections in BulkChildOrders, by the gid type of their nodes (a fulfillment
# order's line items are nested under it).
ORDER_CHILDREN = {
    "LineItem": "lineItems",
    "FulfillmentOrder": "fulfillmentOrders",
    "FulfillmentOrderLineItem": "lineItems",
    "Return": "returns",
}
# Refunds read by id per `RefundLines` call, with their first lines: 3 x (3 + 3 x 10) = ~100
# requested points, within what background work may take of even a 200-point bucket (a point-of-
# sale refund has a line or two). A refund with more is read alone with up to 50 (~150 points;
# beyond that it is read in part, as `_with_dispositions` logs).
REFUNDS_PER_READ = 3
REFUND_LINES = 10
MAX_REFUND_LINES = 50


async def bulk_orders(
    client: AdminClient, since: datetime, *, poll_interval: float = 0.5, timeout: float = 600.0
) -> list[dict[str, Any]]:
    """The store's orders updated at or after `since`, from one bulk query (`commerce.bulk`), in
    the shape `ChildOrder` reads one (every list complete; refunds with their ids only)."""
    text = updated_since_query(bulk_query_text("orders"), "orders", since)
    objects = [obj async for obj in bulk_query(client, text, poll_interval=poll_interval, timeout=timeout)]
    return reassemble(objects, ORDER_CHILDREN)


async def bulk_levels(client, *, poll_interval: float = 0.25) -> dict[tuple[str, str], InventoryLevel]:
    """Every inventory item's available quantity at every location stocking it, (item, location)
    -> level, from one bulk query (10 points and a few 1-point polls, whatever the catalog)."""
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


def _stale_indices(errors: Sequence[Any], list_name: str) -> tuple[int, ...]:
    """The indices a batch mutation's stale userErrors name: field ["input", list_name, i, ...]."""
    found = set()
    for e in errors:
        f = list(e.field or ())
        if (
            e.code in ("CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE")
            and len(f) > 2
            and f[1] == list_name
        ):
            try:
                found.add(int(f[2]))
            except (TypeError, ValueError):
                continue
    return tuple(sorted(found))


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


class BulkCatalogScan(ShopifyCatalogScan):
    """A catalog scan through bulk queries (`commerce.bulk`): products in one bulk query and,
    when asked, every level in another. Shopify runs bulk queries outside the rate limit, so a
    backfill reads a 1,000-product parent for a few dozen points instead of ~18,000 (paged:
    3 minutes of a standard plan's bucket before the first copy)."""

    def __init__(
        self,
        api: ShopifyStoreAPI,
        *,
        poll_interval: float = 0.25,
        updated_since: datetime | None = None,
    ) -> None:
        super().__init__(api)
        self.poll_interval = poll_interval
        # Products updated at or after this only (an incremental reconciliation); levels: all.
        self.updated_since = updated_since
        self._levels: dict[tuple[str, str], InventoryLevel] | None = None
        self._lock = asyncio.Lock()  # one bulk query per shop at a time

    async def products(self) -> list[Product]:
        async with self._lock:
            if self._products is None:
                try:
                    self._products = await bulk_products(
                        self.api.client,
                        poll_interval=self.poll_interval,
                        updated_since=self.updated_since,
                        variant_metafield_namespaces=self.api.variant_metafield_namespaces,
                    )
                except (BulkOperationInProgress, BulkOperationFailed) as err:
                    # another app's bulk query holds the shop, or Shopify's failed: pages still work
                    log.warning("bulk scan unavailable; paging instead", shop=self.shop, error=str(err))
                    self._products = await self._paged_products()
        return self._products

    async def _paged_products(self) -> list[Product]:
        if self.updated_since is None:
            return await ShopifyCatalogScan.products(self)
        return [
            p
            async for p in self.api.products(
                updated_since_filter(self.updated_since), page_size=self.page_size, list_sizes=SCAN_LIST_SIZES
            )
        ]

    async def levels(self, *, fresh: bool = False) -> dict[tuple[str, str], InventoryLevel]:
        """(item, location) -> level for every stocked item; `fresh` reads them again."""
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


async def _shared(reads: dict[str, asyncio.Future], key: str, read: Callable[[], Awaitable[Any]]) -> Any:
    """`read()`'s answer for `key`, read once for every caller, those that ask while it is in
    flight included; a failed read is forgotten (the next caller reads again)."""
    if key not in reads:
        reads[key] = asyncio.ensure_future(read())
    future = reads[key]
    try:
        return await asyncio.shield(future)
    except Exception:
        if reads.get(key) is future:
            del reads[key]
        raise


class ScannedParent:
    """The parent store as one backfill scanned it, or as one copy saga run reads it: every
    answer about the parent a copy needs is read once and shared by the steps of the run and,
    in a backfill, by every child's copy (on the parent's one bucket, those repeated reads, not
    the children's writes, would bound the backfill).

    - products: from the scan (`products`); one not in it is read live once and kept;
    - levels: from the scan's bulk read (`levels`), else one batched `InventoryLevels` query per
      product when the first copy needs them (read one query per variant, location and child,
      they cost the parent's bucket 20 queries per 2-variant product for 5 children);
    - channels (`channels_of`): one `PublishableChannels` per product for every child.
    Every other call goes to the store. Changes made to the parent meanwhile reach the copies
    through the live webhooks and reconciliation, as for any linked product."""

    def __init__(
        self,
        api: ShopifyStoreAPI,
        products: Sequence[Product] = (),
        levels: Mapping[tuple[str, str], InventoryLevel] | None = None,
    ) -> None:
        self.api = api
        # Levels read with the scan (a bulk query): served from here, no read per product.
        self._scanned_levels = dict(levels) if levels is not None else None
        self.shop = api.shop
        self._products: dict[str, Product | None] = {p.id: p for p in products if p.id}
        self._product_of_item = {
            v.inventory_item_id: p.id for p in products if p.id for v in p.variants if v.inventory_item_id
        }
        self._reads: dict[str, asyncio.Future] = {}  # product id -> its live read (not in the scan)
        self._levels: dict[str, asyncio.Future] = {}  # parent product id -> its levels, read once
        self._channels: dict[str, asyncio.Future] = {}  # parent product id -> its channels' names

    async def channels_of(self, resource_id: str) -> list[str]:
        """A product's channels, read once for every child's copy of it: the children's copies
        of one product run at the same moment (one lane per child, in the same order), so the
        first one's read is shared while it is in flight, not only once it has answered."""
        return await _shared(self._channels, resource_id, lambda: self.api.channels_of(resource_id))

    async def read_product(self, product_id: str) -> Product | None:
        if product_id in self._products:
            return self._products[product_id]
        found = await _shared(self._reads, product_id, lambda: self.api.read_product(product_id))
        self._products[product_id] = found
        if found is not None:
            self._product_of_item.update(
                (v.inventory_item_id, product_id) for v in found.variants if v.inventory_item_id
            )
        return found

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        product_id = self._product_of_item.get(inventory_item_id)
        if self._scanned_levels is not None and product_id is not None:
            return self._scanned_levels.get((inventory_item_id, location_id))
        product = self._products.get(product_id) if product_id is not None else None
        if product_id is None or product is None:
            return await self.api.read_level(inventory_item_id, location_id)
        items = [v.inventory_item_id for v in product.variants if v.inventory_item_id]
        levels = await _shared(self._levels, product_id, lambda: self.api.read_levels(items))
        return levels.get((inventory_item_id, location_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


# --------------------------------------------------------------------------- collections


MEMBERS_FIRST = 250  # members read with the collection; the rest is paged


_CONDITION_TYPE = "CollectionSourceInclusionCondition"


def condition_from_json(raw: Mapping[str, Any]) -> CollectionCondition:
    """A condition as `CollectionSyncFields` reads it; its kind from its type name
    (CollectionSourceInclusionConditionProductTag -> productTag), its relation and value under
    the kind's aliases (`productTagRelation`, `variantPriceValue`)."""
    suffix = str(raw.get("__typename", "")).removeprefix(_CONDITION_TYPE)
    kind = suffix[:1].lower() + suffix[1:]
    value = raw.get(f"{kind}Value")
    if "values" in raw:
        values = tuple(str(v) for v in raw.get("values") or ())
    elif isinstance(value, Mapping):  # MoneyV2
        values = (str(value["amount"]),)
    else:
        values = () if value is None else (str(value),)
    return CollectionCondition(
        kind=kind,
        relation=str(raw.get(f"{kind}Relation") or ""),
        values=values,
        match_type=raw.get("matchType"),
        currency=value.get("currencyCode") if isinstance(value, Mapping) else None,
    )


def conditions_source(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The collection's conditions source that has conditions (a smart collection), if any."""
    for source in raw.get("sources") or ():
        if source.get("__typename") == "CollectionConditionsSource" and (source.get("inclusion") or {}).get(
            "conditions"
        ):
            return source
    return None


def _first_source(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next(iter(raw.get("sources") or ()), None)


def collection_from_json(raw: Mapping[str, Any], product_ids: list[str] | None = None) -> Collection:
    seo = raw.get("seo") or {}
    source = conditions_source(raw)
    inclusion = (source or {}).get("inclusion") or {}
    image = raw.get("image")
    return Collection(
        id=raw["id"],
        handle=raw["handle"],
        title=raw.get("title") or "",
        description_html=raw.get("descriptionHtml") or "",
        sort_order=raw.get("sortOrder") or "MANUAL",
        seo_title=seo.get("title"),
        seo_description=seo.get("description"),
        conditions=None
        if source is None
        else tuple(condition_from_json(c) for c in inclusion.get("conditions") or ()),
        disjunctive=inclusion.get("matchType") == "ANY",
        source_id=(source or _first_source(raw) or {}).get("id"),
        image=Image(image["url"], image.get("altText") or "") if image else None,
        product_ids=None if product_ids is None else tuple(product_ids),
    )


def _gone(err: UserInputError) -> bool:
    return isinstance(err, NotFoundError) or any(
        "does not exist" in e.message.lower() for e in err.user_errors
    )


class ShopifyCollections:
    """One store's collections, through `client` (its budget, retries and typed errors)."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client
        self.shop = client.shop

    async def read_collection(self, collection_id: str, *, with_products: bool = False) -> Collection | None:
        result = await self.client.execute(
            "CollectionById",
            {"id": collection_id, "withProducts": with_products, "productsFirst": MEMBERS_FIRST},
        )
        raw = result["collection"]
        if raw is None:
            return None
        members = None
        if with_products:
            conn = raw["products"]
            members = [n["id"] for n in conn["nodes"]]
            info = conn.get("pageInfo") or {}
            if info.get("hasNextPage"):
                async for page in self.client.pages(
                    "CollectionProductsPage",
                    {"id": collection_id},
                    connection="collection.products",
                    page_size=MEMBERS_FIRST,
                    after=info.get("endCursor"),
                ):
                    members += [n["id"] for n in page.nodes]
        return collection_from_json(raw, members)

    async def all_collections(self) -> AsyncIterator[Collection]:
        """Every collection of the store, without members (reconciliation)."""
        async for node in self.client.nodes("CollectionsPage", {}, connection="collections", page_size=100):
            yield collection_from_json(node)

    async def find_collection_by_handle(self, handle: str) -> Collection | None:
        result = await self.client.execute("CollectionsByHandle", {"query": f"handle:'{handle}'"})
        return next(
            (collection_from_json(n) for n in result["collections"]["nodes"] if n["handle"] == handle), None
        )

    async def create_collection(self, input: dict[str, Any]) -> Collection:
        result = await self.client.execute("CollectionCreate", {"collection": input})
        return self._written(result["collectionCreate"]["collection"], input)

    async def update_collection(self, collection_id: str, input: dict[str, Any]) -> Collection:
        result = await self.client.execute("CollectionUpdate", {"collection": {**input, "id": collection_id}})
        return self._written(result["collectionUpdate"]["collection"], input)

    async def delete_collection(self, collection_id: str) -> None:
        try:
            await self.client.execute("CollectionDelete", {"id": collection_id})
        except UserInputError as err:
            if not _gone(err):
                raise

    @staticmethod
    def _written(raw: Mapping[str, Any], input: Mapping[str, Any]) -> Collection:
        """The collection as written: its id and handle from the answer, the rest from the input."""
        seo = input.get("seo") or {}
        return Collection(
            id=raw["id"],
            handle=raw["handle"],
            title=input.get("title") or "",
            description_html=input.get("descriptionHtml") or "",
            sort_order=input.get("sortOrder") or "MANUAL",
            seo_title=seo.get("title"),
            seo_description=seo.get("description"),
        )
