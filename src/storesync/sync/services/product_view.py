"""One product across every store of its network, read from the stores themselves (what the
stores hold is the truth): the parent's product and each child's linked copy, their synced
fields against what the parent says they should be, stock per location (by name), and the last
write the engine made to each with its cause (the audit trail). Also the search that finds a
product by SKU, handle, title, or an order (`#1001` in a child, or an order id)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from storesync.sync.adapters.postgres import (
    changes_by_id,
    last_writes_of,
    ledger_items_of_order,
    links_down_many,
    paused_among,
    products_of_child_variants,
    products_of_parent_items,
)
from storesync.sync.domain.catalog import plan_child_product
from storesync.sync.domain.health import admin_url
from storesync.sync.domain.inventory import child_target
from storesync.sync.domain.model import LinkKind, LinkMap, Product, Variant, gid
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.services.context import Runtime

MAX_HITS = 10
_ORDER_ID = re.compile(r"^(?:gid://shopify/Order/)?(\d{6,})$")


@dataclass(frozen=True)
class ProductHit:
    merchant_id: str
    product_id: str
    title: str
    handle: str
    matched: str  # what matched: "SKU", "handle", "title", "order #1001 in child-a..."


def _label(variant: Variant) -> str:
    values = [v for _name, v in variant.option_values if v and v != "Default Title"]
    return " / ".join(values) or "Default"


async def _parent_products(rt: Runtime, net: MerchantNetwork, query: str) -> list[Product]:
    found: list[Product] = []
    async for p in rt.api(net.parent.shop).products(query, page_size=MAX_HITS):
        found.append(p)
        if len(found) >= MAX_HITS:
            break
    return found


async def find_products(rt: Runtime, conn: psycopg.AsyncConnection, query: str) -> list[ProductHit]:
    """Parent products matching `query`: an order (`#1001`: a child's order by name; a long
    number or an Order gid: an order the ledger applied), else a SKU, a handle, then title words
    (Shopify's product search syntax: https://shopify.dev/docs/api/admin-graphql/latest/queries/products)."""
    query = query.strip()
    hits: list[ProductHit] = []
    if not query:
        return hits
    quoted = query.replace("\\", "\\\\").replace('"', '\\"')
    order_id = _ORDER_ID.match(query)
    for net in rt.network.merchants:
        parent_ids: dict[str, str] = {}
        if query.startswith("#"):
            for child in net.children:
                result = await rt.api(child.shop).client.execute("OrdersByName", {"query": f"name:{quoted}"})
                for order in result["orders"]["nodes"]:
                    variants = [
                        line["variant"]["id"] for line in order["lineItems"]["nodes"] if line.get("variant")
                    ]
                    for pid in await products_of_child_variants(conn, child.shop, variants):
                        parent_ids.setdefault(pid, f"order {order['name']} in {child.shop}")
        elif order_id:
            order = gid("Order", order_id.group(1))
            items = await ledger_items_of_order(conn, [c.shop for c in net.children], order)
            for pid in await products_of_parent_items(conn, items):
                parent_ids.setdefault(pid, f"order {order_id.group(1)}")
        if parent_ids:
            for pid, matched in parent_ids.items():
                product = await rt.api(net.parent.shop).read_product(pid)
                if product is not None:
                    hits.append(ProductHit(net.merchant_id, pid, product.title, product.handle, matched))
            continue
        for matched, search in (
            ("SKU", f'sku:"{quoted}"'),
            ("handle", f'handle:"{quoted}"'),
            ("title", quoted),
        ):
            products = await _parent_products(rt, net, search)
            if products:
                hits += [
                    ProductHit(net.merchant_id, p.id or "", p.title, p.handle, matched)
                    for p in products
                    if p.id
                ]
                break
    return hits[:MAX_HITS]


@dataclass
class VariantStock:
    sku: str
    label: str
    levels: dict[str, int | None]  # location name -> available (None: not stocked there)
    expected: dict[str, int | None] = field(default_factory=dict)  # a child's: what the parent says


@dataclass
class StoreProduct:
    shop: str
    role: str
    admin_url: str
    paused: str | None = None  # why, when the store is paused (it is not read)
    product: Product | None = None
    linked: bool = True  # a child: whether a copy is linked
    error: str | None = None  # the store could not be read
    differences: list[str] = field(default_factory=list)  # synced fields that differ from the parent
    blocked: str | None = None
    locations: list[str] = field(default_factory=list)  # location names, in map order
    stock: list[VariantStock] = field(default_factory=list)
    last_change: dict[str, Any] | None = None  # action, at, cause, source

    @property
    def in_step(self) -> bool:
        return (
            self.product is not None
            and not self.differences
            and not self.blocked
            and all(v.levels == v.expected for v in self.stock if v.expected)
        )


@dataclass
class ProductView:
    merchant_id: str
    product_id: str
    title: str
    handle: str
    stores: list[StoreProduct]


async def _location_names(rt: Runtime, shop: str) -> dict[str, str]:
    result = await rt.api(shop).client.execute("ShopInfo", {"locationsFirst": 50})
    return {loc["id"]: loc["name"] for loc in result["locations"]["nodes"]}


def _describe_change(field_name: str, child_value: Any, parent_value: Any, skus: dict[str, str]) -> str:
    if field_name.startswith("variants."):
        variant = field_name.removeprefix("variants.")
        return (
            f"variant {skus.get(variant, variant)}: shows {child_value!r}, the parent says {parent_value!r}"
        )
    return f"{field_name}: shows {child_value!r}, the parent says {parent_value!r}"


async def product_across_stores(
    rt: Runtime, conn: psycopg.AsyncConnection, merchant_id: str, product_id: str
) -> ProductView | None:
    """The parent product `product_id` and every child's copy, read live; None if the parent has
    no such product. Paused stores are not read (they refuse the app); a store that fails to
    answer says so and the others are shown."""
    net = rt.merchant(merchant_id)
    parent_api = rt.api(net.parent.shop)
    parent = await parent_api.read_product(product_id)
    if parent is None:
        return None
    paused = await paused_among(conn, [s.shop for s in net.stores])
    variant_ids = [v.id for v in parent.variants if v.id]
    links = await links_down_many(conn, LinkKind.PRODUCT, [product_id])
    links += await links_down_many(conn, LinkKind.VARIANT, variant_ids)
    links += await links_down_many(conn, LinkKind.COLLECTION, list(parent.collections))
    maps = {c.shop: LinkMap(c.shop, [lk for lk in links if lk.child_shop == c.shop]) for c in net.children}
    skus = {v.id: v.sku or _label(v) for v in parent.variants if v.id}
    policy = rt.policy(merchant_id)

    async def read_store(shop: str) -> tuple[Product | None, dict[tuple[str, str], int], dict[str, str]]:
        api = rt.api(shop)
        if shop == net.parent.shop:
            product: Product | None = parent
        else:
            child_id = maps[shop].child_id(LinkKind.PRODUCT, product_id)
            product = await api.read_product(child_id) if child_id else None
        items = [v.inventory_item_id for v in (product.variants if product else ()) if v.inventory_item_id]
        levels = await api.read_levels(items) if items else {}
        names = await _location_names(rt, shop)
        return product, {k: lvl.available for k, lvl in levels.items()}, names

    shops = [s.shop for s in net.stores if s.shop not in paused]
    answers = await asyncio.gather(*(read_store(s) for s in shops), return_exceptions=True)
    read = dict(zip(shops, answers, strict=True))
    parent_levels: dict[tuple[str, str], int] = {}
    parent_answer = read.get(net.parent.shop)
    if isinstance(parent_answer, tuple):
        parent_levels = parent_answer[1]

    stores: list[StoreProduct] = []
    objects: list[str] = []
    for s in net.stores:
        role = "parent" if s.shop == net.parent.shop else "child"
        view = StoreProduct(s.shop, role, admin_url(s.shop), paused=paused.get(s.shop))
        stores.append(view)
        answer = read.get(s.shop)
        if answer is None:
            continue
        if isinstance(answer, BaseException):
            view.error = f"{type(answer).__name__}: {answer}"[:300]
            continue
        product, levels, names = answer
        view.product = product
        if product is None:
            view.linked = False
            continue
        view.admin_url = admin_url(s.shop, product.id)
        objects.append(product.id or "")
        location_map = net.location_maps.get(s.shop, {}) if role == "child" else {}
        if role == "parent":
            locations = sorted({loc for (_item, loc) in levels}, key=lambda loc: names.get(loc, loc))
        else:
            locations = list(location_map.values())
        view.locations = [names.get(loc, loc) for loc in locations]
        for v in product.variants:
            item = v.inventory_item_id
            stock = VariantStock(v.sku or "", _label(v), {})
            parent_item = None
            if role == "child" and v.id:
                link = maps[s.shop].link_up(LinkKind.VARIANT, v.id)
                parent_item = link.parent_inventory_item_id if link else None
            for loc in locations:
                name = names.get(loc, loc)
                stock.levels[name] = levels.get((item, loc)) if item else None
                if item:
                    objects.append(f"{item}@{loc}")
                if parent_item:
                    parent_loc = next((p for p, c in location_map.items() if c == loc), None)
                    parent_level = parent_levels.get((parent_item, parent_loc)) if parent_loc else None
                    stock.expected[name] = child_target(parent_level) if parent_level is not None else None
            view.stock.append(stock)
        if role == "child":
            plan = plan_child_product(parent, product, maps[s.shop], policy)
            view.blocked = plan.blocked
            view.differences = [
                _describe_change(c.field, c.child_value, c.parent_value, skus) for c in plan.changes
            ]

    latest: dict[str, dict[str, Any]] = {}
    for row in await last_writes_of(conn, objects):
        seen = latest.get(row["shop"])
        if seen is None or row["at"] > seen["at"]:
            latest[row["shop"]] = row
    sources = await changes_by_id(conn, [r["cause"] for r in latest.values()])
    for view in stores:
        newest = latest.get(view.shop)
        if newest is not None:
            view.last_change = {**newest, "source": sources.get(newest["cause"])}
    return ProductView(merchant_id, product_id, parent.title, parent.handle, stores)


def describe_source(source: dict[str, Any] | None) -> str:
    """'products/update from parent.myshopify.com' for a tracked change."""
    if not source:
        return ""
    return f"{source['topic']} from {source['source_shop']}"
