"""In-memory fakes of every port, for tests only (`tests/sync/test_contract.py` runs the same cases
against them and the Postgres adapters, so the fakes cannot drift from the real thing).

`MemoryStore` follows the Shopify semantics the domain relies on: productSet replaces list
fields wholesale (variants, metafields, collections, files given are the whole list; a
metafields list left out leaves the owner's as they are, as on Shopify; pessimistically, an
absent collections list counts as empty; scalars left out stay), metafieldsSet and
metafieldsDelete by owner, namespace and key, media uploaded READY unless the source is one of
`failing_sources`, publishing records the channels (`refuse_publish` refuses it),
inventory sets compare-and-set on `changeFromQuantity`, and an `@idempotent` key replays the
first result. Storage fakes mirror the Postgres adapters in `storesync/sync/adapters/postgres.py`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from storesync.commerce.errors import UserInputError
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.inventory import (
    RESTOCK_KINDS,
    EntryKind,
    EntryStatus,
    LedgerEntry,
    LedgerKey,
    counter_key,
    counter_top_up,
)
from storesync.sync.domain.model import (
    Collection,
    InventoryLevel,
    Link,
    LinkKind,
    LinkMap,
    Media,
    Metafield,
    Option,
    Product,
    Variant,
    VariantDetails,
    WriteRecord,
)
from storesync.sync.domain.orders import LedgerRow
from storesync.sync.domain.ports import Attention, HandleTaken, PendingWrite, StaleQuantity, StockAccount
from storesync.sync.domain.saga import SagaRecord, SagaState, StepRecord, StepSpec, StepStatus

_ids = itertools.count(1000)


def _new_id(kind: str) -> str:
    return f"gid://shopify/{kind}/{next(_ids)}"


class MemoryStore:
    """One store's catalog and inventory, in memory."""

    def __init__(self, shop: str) -> None:
        self.shop = shop
        self.products: dict[str, Product] = {}
        self.collections: dict[str, Collection] = {}
        self.levels: dict[tuple[str, str], int] = {}
        self._replays: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []  # (operation, argument) for assertions
        self.min_level_seen: dict[tuple[str, str], int] = {}
        self.channels: dict[str, str] = {
            "Online Store": _new_id("Publication"),
            "Point of Sale": _new_id("Publication"),
        }
        self.published: dict[str, set[str]] = {}  # product or collection id -> publication ids
        self.failing_sources: set[str] = set()  # media uploaded from these end FAILED
        self.refuse_publish = False

    # catalog ----------------------------------------------------------------
    async def read_product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    async def find_product_by_handle(self, handle: str) -> Product | None:
        return next((p for p in self.products.values() if p.handle == handle), None)

    async def all_products(self):
        for p in list(self.products.values()):
            yield p

    async def all_collections(self):
        for c in list(self.collections.values()):
            yield c

    async def all_levels(self, location_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        wanted = set(location_ids)
        return {k: q for k, q in self.levels.items() if k[1] in wanted}

    def add_collection(self, c: Collection) -> Collection:
        c = replace(c, id=c.id or _new_id("Collection"))
        self.collections[c.id] = c
        return c

    def add_product(self, p: Product) -> Product:
        pid = p.id or _new_id("Product")
        variants = tuple(
            replace(
                v,
                id=v.id or _new_id("ProductVariant"),
                inventory_item_id=v.inventory_item_id or _new_id("InventoryItem"),
                details=v.details or DEFAULT_DETAILS,
            )
            for v in p.variants
        )
        p = replace(p, id=pid, variants=variants, created_at=p.created_at or datetime.now(UTC))
        self.products[pid] = p
        return p

    def _media(self, files: Sequence[Mapping[str, Any]], current: Sequence[Media]) -> tuple[Media, ...]:
        have = {m.id: m for m in current}
        out = []
        for f in files:
            if f.get("id"):
                m = have.get(f["id"])
                if m is None:
                    raise UserInputError(f"{self.shop}: file {f['id']} does not exist")
                out.append(replace(m, alt=f["alt"]) if "alt" in f else m)
            else:
                src = f["originalSource"]
                status = "FAILED" if src in self.failing_sources else "READY"
                out.append(
                    Media(
                        _new_id("MediaImage"), None if status == "FAILED" else src, f.get("alt") or "", status
                    )
                )
        return tuple(out)

    async def product_set(self, input: Mapping[str, Any], *, product_id: str | None) -> Product:
        self.calls.append(("productSet", dict(input)))
        old = self.products.get(product_id) if product_id else None
        if product_id and old is None:
            raise LookupError(f"{self.shop}: no product {product_id}")
        base = old or Product(
            id=_new_id("Product"),
            handle=input.get("handle") or "",
            title=input.get("title", ""),
            created_at=datetime.now(UTC),
        )
        changes: dict[str, Any] = {}
        scalar = {
            "title": "title",
            "descriptionHtml": "description_html",
            "vendor": "vendor",
            "productType": "product_type",
            "status": "status",
            "handle": "handle",
        }
        for k, attr in scalar.items():
            if k in input:
                changes[attr] = input[k]
        if "tags" in input:
            changes["tags"] = tuple(input["tags"])
        if "seo" in input:
            changes["seo_title"], changes["seo_description"] = (
                input["seo"].get("title"),
                input["seo"].get("description"),
            )
        if "productOptions" in input:
            changes["options"] = tuple(
                Option(o["name"], tuple(v["name"] for v in o["values"])) for o in input["productOptions"]
            )
        if "variants" in input:
            old_variants = {v.id: v for v in base.variants}
            variants = []
            for vi in input["variants"]:
                prev = old_variants.get(vi.get("id")) if vi.get("id") else None
                if vi.get("id") and prev is None:
                    raise LookupError(f"{self.shop}: no variant {vi['id']}")
                cap = vi.get("compareAtPrice")
                variants.append(
                    Variant(
                        id=prev.id if prev else _new_id("ProductVariant"),
                        option_values=tuple((o["optionName"], o["name"]) for o in vi["optionValues"]),
                        price=Decimal(vi["price"]),
                        sku=(vi.get("inventoryItem") or {}).get("sku") or vi.get("sku") or None,
                        barcode=vi.get("barcode"),
                        compare_at_price=Decimal(cap) if cap else None,
                        inventory_item_id=prev.inventory_item_id if prev else _new_id("InventoryItem"),
                        metafields=tuple(
                            Metafield(m["namespace"], m["key"], m["type"], m["value"])
                            for m in vi.get("metafields", [])
                        )
                        if "metafields" in vi
                        else (prev.metafields if prev else ()),
                        details=_details(vi, prev.details if prev else None),
                    )
                )
            keys = [v.option_key for v in variants]
            if len(set(keys)) != len(keys):
                raise ValueError(f"{self.shop}: two variants with the same option values")
            changes["variants"] = tuple(variants)
        if "metafields" in input:  # left out, they stay (Shopify's productSet)
            changes["metafields"] = tuple(
                Metafield(m["namespace"], m["key"], m["type"], m["value"]) for m in input["metafields"]
            )
        # Pessimistic reading of replace-all for collections: an absent list is an empty list, so
        # a caller that forgets to carry child-owned collections loses them here too.
        # Like Shopify: a smart collection takes no listed members; its members follow its
        # conditions (kept here as they were: the fake does not evaluate conditions).
        smart = {c.id for c in self.collections.values() if c.conditions is not None}
        listed = tuple(input.get("collections", []))
        if smart & set(listed):
            raise ValueError(
                f"{self.shop}: can't add products to a smart collection: {sorted(smart & set(listed))}"
            )
        changes["collections"] = listed + tuple(c for c in base.collections if c in smart and c not in listed)
        changes["smart_collections"] = frozenset(c for c in changes["collections"] if c in smart)
        if "files" in input:
            changes["media"] = self._media(input["files"], base.media)
        changes["updated_at"] = datetime.now(UTC)
        product = replace(base, **changes)
        self.products[product.id] = product
        return product

    async def find_product_id_by_handle(self, handle: str) -> str | None:
        found = await self.find_product_by_handle(handle)
        return found.id if found else None

    async def create_product_id(self, input: Mapping[str, Any], *, upsert: bool) -> str:
        return (await self._create(input, upsert=upsert)).id or ""

    async def _create(self, input: Mapping[str, Any], *, upsert: bool) -> Product:
        existing = await self.find_product_id_by_handle(input["handle"])
        if existing is not None and not upsert:
            raise HandleTaken(f"{self.shop}: handle {input['handle']!r} is taken")
        written = await self.product_set(input, product_id=existing)
        for vin, v in zip(input.get("variants") or (), written.variants, strict=False):
            for q in vin.get("inventoryQuantities") or ():
                key = (v.inventory_item_id or "", q["locationId"])
                self.levels[key] = q["quantity"]
                self._note(key)
        return written

    async def product_under_handle(self, handle: str) -> tuple[str, datetime | None] | None:
        found = await self.find_product_by_handle(handle)
        return (found.id or "", found.created_at) if found else None

    async def update_product_fields(self, product_id: str, fields: Mapping[str, Any]) -> None:
        self.calls.append(("productUpdateFields", (product_id, dict(fields))))
        p = self.products.get(product_id)
        if p is None:
            raise UserInputError(f"{self.shop}: product {product_id} does not exist")
        if "handle" in fields and any(
            q.handle == fields["handle"] and q.id != product_id for q in self.products.values()
        ):
            raise UserInputError(f"{self.shop}: handle {fields['handle']!r} is taken")
        self.products[product_id] = replace(
            p, status=fields.get("status", p.status), handle=fields.get("handle", p.handle)
        )

    async def set_media(self, product_id: str, files: Sequence[Mapping[str, Any]]) -> list[str]:
        self.calls.append(("productSetMedia", (product_id, [dict(f) for f in files])))
        p = self.products[product_id]
        media = self._media(files, p.media)
        self.products[product_id] = replace(p, media=media)
        return [m.id for m in media]

    def _owner(self, owner_id: str) -> tuple[Product, Variant | None]:
        for p in self.products.values():
            if p.id == owner_id:
                return p, None
            for v in p.variants:
                if v.id == owner_id:
                    return p, v
        raise UserInputError(f"{self.shop}: owner {owner_id} does not exist")

    def _set_owner_metafields(self, owner_id: str, metafields: tuple[Metafield, ...]) -> None:
        p, v = self._owner(owner_id)
        if v is None:
            self.products[p.id or ""] = replace(p, metafields=metafields)
        else:
            variants = tuple(replace(x, metafields=metafields) if x.id == v.id else x for x in p.variants)
            self.products[p.id or ""] = replace(p, variants=variants)

    async def set_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        self.calls.append(("metafieldsSet", [dict(m) for m in metafields]))
        for m in metafields:
            p, v = self._owner(m["ownerId"])
            current = (v or p).metafields
            kept = tuple(x for x in current if (x.namespace, x.key) != (m["namespace"], m["key"]))
            self._set_owner_metafields(
                m["ownerId"], (*kept, Metafield(m["namespace"], m["key"], m["type"], m["value"]))
            )

    async def delete_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        self.calls.append(("metafieldsDelete", [dict(m) for m in metafields]))
        for m in metafields:
            p, v = self._owner(m["ownerId"])
            current = (v or p).metafields
            self._set_owner_metafields(
                m["ownerId"], tuple(x for x in current if (x.namespace, x.key) != (m["namespace"], m["key"]))
            )

    async def publications(self) -> dict[str, str]:
        return dict(self.channels)

    async def channels_of(self, resource_id: str) -> list[str]:
        names = {pid: name for name, pid in self.channels.items()}
        return sorted(names[p] for p in self.published.get(resource_id, ()))

    async def publish(self, resource_id: str, publication_ids: Sequence[str]) -> None:
        self.calls.append(("publishablePublish", (resource_id, list(publication_ids))))
        if self.refuse_publish:
            raise UserInputError(f"{self.shop}: publishablePublish refused")
        self.published.setdefault(resource_id, set()).update(publication_ids)

    async def delete_product(self, product_id: str) -> None:
        self.calls.append(("productDelete", product_id))
        gone = self.products.pop(product_id, None)
        items = {v.inventory_item_id for v in gone.variants} if gone else set()
        for key in [k for k in self.levels if k[0] in items]:
            del self.levels[key]  # a deleted product's inventory items go with it

    # inventory --------------------------------------------------------------
    def _note(self, key: tuple[str, str]) -> None:
        self.min_level_seen[key] = min(self.min_level_seen.get(key, self.levels[key]), self.levels[key])

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        q = self.levels.get((inventory_item_id, location_id))
        return None if q is None else InventoryLevel(inventory_item_id, location_id, q)

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
        self.calls.append(("inventorySetQuantities", (inventory_item_id, location_id, quantity, change_from)))
        if idempotency_key in self._replays:
            return self._replays[idempotency_key]
        key = (inventory_item_id, location_id)
        if self.levels.get(key) != change_from:
            raise StaleQuantity(f"{self.shop} {key}: is {self.levels.get(key)}, not {change_from}")
        self.levels[key] = quantity
        self._note(key)
        self._replays[idempotency_key] = quantity
        return quantity

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
        self.calls.append(("inventoryAdjustQuantities", (inventory_item_id, location_id, delta)))
        if idempotency_key in self._replays:
            return self._replays[idempotency_key]
        key = (inventory_item_id, location_id)
        if key not in self.levels:
            raise LookupError(f"{self.shop}: {key} is not stocked")
        if change_from is not None and self.levels[key] != change_from:
            raise StaleQuantity(f"{self.shop} {key}: is {self.levels[key]}, not {change_from}")
        self.levels[key] += delta
        self._note(key)
        self._replays[idempotency_key] = self.levels[key]
        return self.levels[key]


# A new variant's fields on a store (Shopify's defaults: deny overselling, taxable, shipped).
DEFAULT_DETAILS = VariantDetails("DENY", True, True, True, None, None, None, ("0.0", "KILOGRAMS"))


def _details(vi: Mapping[str, Any], prev: VariantDetails | None) -> VariantDetails:
    """A variant's details after a ProductVariantSetInput: fields given replace, others stay."""
    item = vi.get("inventoryItem") or {}
    d = prev or DEFAULT_DETAILS
    weight = (item.get("measurement") or {}).get("weight")
    return replace(
        d,
        inventory_policy=vi.get("inventoryPolicy", d.inventory_policy),
        taxable=vi.get("taxable", d.taxable),
        tracked=item.get("tracked", d.tracked),
        requires_shipping=item.get("requiresShipping", d.requires_shipping),
        cost=(Decimal(str(item["cost"])) if item["cost"] is not None else None) if "cost" in item else d.cost,
        hs_code=item.get("harmonizedSystemCode", d.hs_code),
        country_of_origin=item.get("countryCodeOfOrigin", d.country_of_origin),
        weight=(repr(float(weight["value"])), weight["unit"]) if weight else d.weight,
    )


class MemoryAttention:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Attention] = {}
        self.resolved: list[Attention] = []

    async def report(self, shop: str, kind: str, subject: str, detail: str) -> bool:
        key = (shop, kind, subject)
        old = self.items.get(key)
        now = datetime.now(UTC)
        self.items[key] = Attention(
            shop, kind, subject, detail, old.first_at if old else now, now, old.times + 1 if old else 1
        )
        return old is None

    async def resolve(self, shop: str, kind: str, subject: str) -> bool:
        found = self.items.pop((shop, kind, subject), None)
        if found is not None:
            self.resolved.append(found)
        return found is not None

    async def is_open(self, shop: str, kind: str, subject: str) -> bool:
        return (shop, kind, subject) in self.items

    async def open_items(self, *, limit: int = 100) -> list[Attention]:
        return sorted(self.items.values(), key=lambda a: a.last_at or datetime.min, reverse=True)[:limit]


class MemoryArchivedCopies:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, str]] = {}  # (shop, product) -> (handle, parent)

    async def add(self, child_shop: str, child_product_id: str, handle: str, parent_product_id: str) -> None:
        self.rows[(child_shop, child_product_id)] = (handle, parent_product_id)

    async def under_handle(self, child_shop: str, handle: str) -> list[str]:
        return [pid for (shop, pid), (h, _) in self.rows.items() if shop == child_shop and h == handle]

    async def forget(self, child_shop: str, child_product_id: str) -> None:
        self.rows.pop((child_shop, child_product_id), None)


class MemoryLinks:
    def __init__(self, writes: MemoryWriteRecords | None = None) -> None:
        self.rows: dict[tuple[str, LinkKind, str], Link] = {}
        self.writes = (
            writes  # where `complete_pending` records a copy's writes (the Postgres twin: same transaction)
        )

    async def save_links(self, links: Sequence[Link]) -> int:
        for link in links:
            old = self.rows.get((link.child_shop, link.kind, link.parent_id))
            if old is not None:  # how it was first matched stays, and its synced view unless given
                link = replace(
                    link,
                    matched_by=old.matched_by,
                    synced_view=old.synced_view if link.synced_view is None else link.synced_view,
                )
            self.rows[(link.child_shop, link.kind, link.parent_id)] = link
        return len(links)

    async def link_map(self, child_shop: str) -> LinkMap:
        return LinkMap(child_shop, [lk for (s, _, _), lk in sorted(self.rows.items()) if s == child_shop])

    async def links_down(self, kind: LinkKind, parent_id: str) -> list[Link]:
        return [lk for (_, k, p), lk in sorted(self.rows.items()) if k is kind and p == parent_id]

    async def links_for_parent_item(self, parent_inventory_item_id: str) -> list[Link]:
        return [lk for lk in self.rows.values() if lk.parent_inventory_item_id == parent_inventory_item_id]

    async def product_fan_out_links(
        self, parent_product_id: str, parent_collection_ids: Sequence[str]
    ) -> list[Link]:
        wanted = {
            (LinkKind.PRODUCT, parent_product_id),
            *((LinkKind.COLLECTION, c) for c in parent_collection_ids),
        }
        return [lk for (_, k, p), lk in sorted(self.rows.items()) if (k, p) in wanted]

    async def set_synced_view(self, child_shop: str, parent_product_id: str, view: dict) -> None:
        key = (child_shop, LinkKind.PRODUCT, parent_product_id)
        self.rows[key] = replace(self.rows[key], synced_view=view)

    async def set_synced_views(self, child_shop: str, views: dict) -> None:
        for parent_product_id, view in views.items():
            await self.set_synced_view(child_shop, parent_product_id, view)

    async def delete_link(self, child_shop: str, kind: LinkKind, parent_id: str) -> None:
        self.rows.pop((child_shop, kind, parent_id), None)

    async def pending_links(self, child_shop: str) -> list[Link]:
        return [
            lk for (s, _, _), lk in sorted(self.rows.items()) if s == child_shop and lk.pending is not None
        ]

    async def child_links(
        self,
        child_shop: str,
        *,
        products: Sequence[str] = (),
        variants: Sequence[str] = (),
        items: Sequence[str] = (),
        collections: bool = False,
    ) -> LinkMap:
        def wanted(lk: Link) -> bool:
            return (
                (lk.kind is LinkKind.PRODUCT and lk.child_id in products)
                or (
                    lk.kind is LinkKind.VARIANT
                    and (lk.child_id in variants or lk.child_inventory_item_id in items)
                )
                or (lk.kind is LinkKind.COLLECTION and collections)
                or (lk.kind is LinkKind.MEDIA and lk.child_product_id in products)
            )

        return LinkMap(
            child_shop, [lk for (s, _, _), lk in sorted(self.rows.items()) if s == child_shop and wanted(lk)]
        )

    async def parent_items_of(self, items: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        wanted = set(items)
        return {
            (s, lk.child_inventory_item_id): lk.parent_inventory_item_id
            for (s, kind, _), lk in self.rows.items()
            if kind is LinkKind.VARIANT
            and lk.parent_inventory_item_id is not None
            and (s, lk.child_inventory_item_id) in wanted
        }

    async def links_of(
        self,
        child_shop: str,
        kind: LinkKind,
        *,
        parent_ids: Sequence[str] = (),
        child_ids: Sequence[str] = (),
    ) -> list[Link]:
        return [
            lk
            for (s, k, p), lk in sorted(self.rows.items())
            if s == child_shop and k is kind and (p in parent_ids or lk.child_id in child_ids)
        ]

    async def complete_pending(
        self, child_shop: str, parent_product_id: str, links: Sequence[Link], writes: Sequence[WriteRecord]
    ) -> bool:
        key = (child_shop, LinkKind.PRODUCT, parent_product_id)
        link = self.rows.get(key)
        if link is None or link.pending is None:
            return False
        self.rows[key] = replace(link, pending=None)
        await self.save_links(links)
        if self.writes is not None:
            await self.writes.record_writes(writes)
        return True


class MemoryLedger:
    def __init__(self, accounts: MemoryStockAccounts | None = None) -> None:
        self.entries: dict[LedgerKey, LedgerEntry] = {}
        self.backlogs: dict[tuple[str, str], int] = defaultdict(int)
        self.accounts = accounts

    def _account_movement(self, entry: LedgerEntry) -> None:
        if self.accounts is None or entry.key.kind is EntryKind.MANUAL:
            return
        if entry.child_item_id and entry.child_location_id:
            self.accounts.moved(
                entry.key.child_shop, entry.child_item_id, entry.child_location_id, entry.requested_delta
            )

    async def claim(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        if entry.key in self.entries:
            stored = self.entries[entry.key]
            if (stored.parent_item_id, stored.requested_delta) != (
                entry.parent_item_id,
                entry.requested_delta,
            ):
                raise ValueError(f"ledger entry {entry.key} exists with different content: {stored}")
            return stored, False
        stored = replace(entry, status=EntryStatus.CLAIMED, applied_delta=None, backlog_after=None)
        self.entries[entry.key] = stored
        self._account_movement(stored)
        return stored, True

    async def claim_top_up(self, entry: LedgerEntry, units: int) -> LedgerEntry | None:
        key = counter_key(entry.key.child_shop, entry.key.order_line_id, entry.key.kind, units)
        if key in self.entries:
            return self.entries[key]
        counted = sum(
            abs(e.requested_delta)
            for e in self.entries.values()
            if (e.key.child_shop, e.key.order_line_id, e.key.kind)
            == (key.child_shop, key.order_line_id, key.kind)
        )
        delta = counter_top_up(key.kind, units, counted)
        if delta is None:
            return None
        stored, _ = await self.claim(replace(entry, key=key, requested_delta=delta))
        return stored

    async def order_entries(self, child_shop: str, order_id: str) -> list[LedgerRow]:
        return (await self.orders_entries(child_shop, [order_id]))[order_id]

    async def orders_entries(self, child_shop: str, order_ids: Sequence[str]) -> dict[str, list[LedgerRow]]:
        out: dict[str, list[LedgerRow]] = {o: [] for o in order_ids}
        for e in self.entries.values():
            if e.key.child_shop == child_shop and e.order_id in out:
                out[e.order_id].append(
                    LedgerRow(
                        e.key.order_line_id,
                        e.key.kind,
                        e.key.ref,
                        e.requested_delta,
                        e.status,
                        e.parent_location_id,
                        e.child_location_id,
                    )
                )
        return out

    async def plan(
        self,
        key: LedgerKey,
        applied_delta: int,
        backlog_after: int,
        expected_after: int,
        *,
        replan_of: int | None = None,
    ) -> LedgerEntry:
        e = self.entries[key]
        fresh = replan_of is None and e.status is EntryStatus.CLAIMED
        again = replan_of is not None and e.status is EntryStatus.PLANNED and e.plan_no == replan_of
        if fresh or again:
            e = replace(
                e,
                status=EntryStatus.PLANNED,
                applied_delta=applied_delta,
                backlog_after=backlog_after,
                expected_after=expected_after,
                plan_no=0 if fresh else e.plan_no + 1,
            )
            self.entries[key] = e
        return e

    async def mark_applied(self, key: LedgerKey, quantity_after: int | None) -> bool:
        e = self.entries[key]
        if e.status is not EntryStatus.PLANNED:
            return False
        self.entries[key] = replace(e, status=EntryStatus.APPLIED, quantity_after=quantity_after)
        self.backlogs[(e.parent_item_id, e.parent_location_id)] = e.backlog_after or 0
        return True

    async def next_key_attempt(self, key: LedgerKey, spent: int) -> LedgerEntry:
        e = self.entries[key]
        if e.status is EntryStatus.PLANNED and e.key_attempt == spent:
            e = self.entries[key] = replace(e, key_attempt=spent + 1)
        return e

    async def get(self, key: LedgerKey) -> LedgerEntry | None:
        return self.entries.get(key)

    async def unfinished(self, parent_item_id: str, parent_location_id: str) -> list[LedgerEntry]:
        return [
            e
            for e in self.entries.values()
            if e.status is not EntryStatus.APPLIED
            and (e.parent_item_id, e.parent_location_id) == (parent_item_id, parent_location_id)
        ]

    async def backlog(self, parent_item_id: str, parent_location_id: str) -> int:
        return self.backlogs[(parent_item_id, parent_location_id)]

    async def restocked(self, child_shop: str, order_line_id: str) -> int:
        return sum(
            e.requested_delta
            for e in self.entries.values()
            if e.key.kind in RESTOCK_KINDS
            and (e.key.child_shop, e.key.order_line_id) == (child_shop, order_line_id)
        )


class MemoryStockAccounts:
    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str, str], StockAccount] = {}

    def moved(self, shop: str, item: str, location: str, delta: int) -> None:
        a = self.accounts.get((shop, item, location))
        if a is not None:
            self.accounts[(shop, item, location)] = replace(a, expected=a.expected + delta)

    async def get(self, shop: str, item: str, location: str) -> StockAccount | None:
        return self.accounts.get((shop, item, location))

    async def open(self, shop: str, item: str, location: str, expected: int) -> StockAccount:
        return self.accounts.setdefault(
            (shop, item, location), StockAccount(shop, item, location, expected, 0)
        )

    async def begin_write(
        self, shop: str, item: str, location: str, change_from: int | None, to: int, key: str
    ) -> None:
        a = self.accounts.get((shop, item, location))
        if a is not None:
            self.accounts[(shop, item, location)] = replace(a, pending=PendingWrite(change_from, to, key))

    async def end_write(self, shop: str, item: str, location: str, key: str, *, landed: bool) -> None:
        a = self.accounts.get((shop, item, location))
        if a is None or a.pending is None or a.pending.key != key:
            return
        p = a.pending
        moved = p.to - (p.change_from if p.change_from is not None else p.to) if landed else 0
        self.accounts[(shop, item, location)] = replace(a, expected=a.expected + moved, pending=None)

    async def take_move(self, shop: str, item: str, location: str, number: int, delta: int) -> bool:
        a = self.accounts.get((shop, item, location))
        if a is None or a.reports != number - 1:
            return False
        self.accounts[(shop, item, location)] = replace(a, expected=a.expected + delta, reports=number)
        return True


class MemoryWriteRecords:
    def __init__(self) -> None:
        self.records: list[WriteRecord] = []

    async def record_write(self, rec: WriteRecord) -> None:
        self.records.append(rec)

    async def record_writes(self, recs: Sequence[WriteRecord]) -> None:
        self.records.extend(recs)

    async def recent_writes(
        self, shop: str, inventory_item_id: str, location_id: str, since: datetime, *, limit: int = 100
    ) -> list[WriteRecord]:
        found = [
            r
            for r in self.records
            if (r.shop, r.inventory_item_id, r.location_id) == (shop, inventory_item_id, location_id)
            and r.written_at >= since
        ]
        return sorted(found, key=lambda r: r.written_at, reverse=True)[:limit]

    async def recent_writes_of_levels(
        self, levels: Sequence[tuple[str, str, str, datetime]], *, limit: int = 100
    ) -> list[list[WriteRecord]]:
        return [await self.recent_writes(*level, limit=limit) for level in levels]

    async def prune(self, before: datetime) -> int:
        kept = [r for r in self.records if r.written_at >= before]
        pruned, self.records = len(self.records) - len(kept), kept
        return pruned


class MemoryAppliedVersions:
    def __init__(self) -> None:
        self.versions: dict[tuple[str, str, str], tuple[datetime, str]] = {}

    async def advance(
        self, shop: str, inventory_item_id: str, location_id: str, at: datetime, tiebreak: str
    ) -> bool:
        key = (shop, inventory_item_id, location_id)
        cur = self.versions.get(key)
        if cur is not None and (at, tiebreak) < cur:
            return False
        self.versions[key] = (at, tiebreak)
        return True

    async def advance_many(self, versions: Sequence[tuple[str, str, str, datetime, str]]) -> list[bool]:
        return [await self.advance(*v) for v in versions]

    async def current(
        self, shop: str, inventory_item_id: str, location_id: str
    ) -> tuple[datetime, str] | None:
        return self.versions.get((shop, inventory_item_id, location_id))

    async def moved_since(
        self, shop: str, levels: Sequence[tuple[str, str]], since: datetime
    ) -> list[tuple[str, str]]:
        return sorted(
            key for key in set(levels) if (v := self.versions.get((shop, *key))) is not None and v[0] > since
        )


class MemoryAudit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def record(self, rec: AuditRecord) -> None:
        self.records.append(rec)

    async def record_many(self, recs) -> None:
        self.records.extend(recs)

    async def query(
        self,
        *,
        shop: str | None = None,
        object_id: str | None = None,
        cause: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        out = [
            r
            for r in reversed(self.records)
            if (shop is None or r.shop == shop)
            and (object_id is None or r.object_id == object_id)
            and (cause is None or r.cause == cause)
        ]
        return out[:limit]


class MemoryStepLog:
    def __init__(self) -> None:
        self.sagas: dict[str, SagaRecord] = {}

    def _copy(self, s: SagaRecord) -> SagaRecord:
        return replace(s, steps=[replace(st, params=dict(st.params)) for st in s.steps])

    async def create(
        self, saga_id: str, kind: str, shop: str, cause: str, steps: Sequence[StepSpec]
    ) -> SagaRecord:
        if saga_id not in self.sagas:
            self.sagas[saga_id] = SagaRecord(
                saga_id,
                kind,
                shop,
                cause,
                SagaState.RUNNING,
                [StepRecord(i, s.name, s.action, dict(s.params)) for i, s in enumerate(steps)],
            )
        return self._copy(self.sagas[saga_id])

    async def load(self, saga_id: str) -> SagaRecord | None:
        s = self.sagas.get(saga_id)
        return self._copy(s) if s else None

    async def step_started(self, saga_id: str, index: int, undo: dict[str, Any] | None) -> bool:
        st = self.sagas[saga_id].steps[index]
        if st.status is not StepStatus.PENDING:
            return False
        st.status, st.undo = StepStatus.STARTED, undo
        return True

    async def step_done(self, saga_id: str, index: int, result: dict[str, Any]) -> None:
        st = self.sagas[saga_id].steps[index]
        st.status, st.result = StepStatus.DONE, result

    async def step_refused(self, saga_id: str, index: int) -> None:
        st = self.sagas[saga_id].steps[index]
        if st.status is StepStatus.STARTED:
            st.status, st.undo = StepStatus.PENDING, None

    async def step_compensated(self, saga_id: str, index: int) -> None:
        self.sagas[saga_id].steps[index].status = StepStatus.COMPENSATED

    async def set_state(self, saga_id: str, state: SagaState, error: str | None = None) -> None:
        s = self.sagas[saga_id]
        s.state, s.error = state, error

    async def unfinished(self, limit: int = 100) -> list[str]:
        return [saga_id for saga_id, _ in await self.unfinished_sagas(limit)]

    async def unfinished_sagas(self, limit: int = 100) -> list[tuple[str, str]]:
        return [
            (k, s.shop)
            for k, s in self.sagas.items()
            if s.state in (SagaState.RUNNING, SagaState.COMPENSATING)
        ][:limit]

    async def states(self, kind: str, prefix: str | None = None) -> dict[str, SagaState]:
        return {
            k: s.state
            for k, s in self.sagas.items()
            if s.kind == kind and (prefix is None or k.startswith(prefix))
        }
