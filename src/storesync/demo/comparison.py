"""Every child compared with the parent from the stores' own snapshots (never our tables): the
synced fields of the parent's products and the available stock per SKU and location name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SYNCED_PRODUCT_FIELDS = ("title", "body_html", "vendor", "product_type", "status")


def _product_view(product: dict, collection_handles: dict[str, str]) -> dict:
    """The synced fields of one product of an emulator snapshot (REST shape), without store ids:
    collections by handle, variants by SKU."""
    view: dict[str, Any] = {k: product.get(k) for k in SYNCED_PRODUCT_FIELDS}
    tags = product.get("tags") or ""
    view["tags"] = sorted(
        t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()
    )
    view["options"] = [[o.get("name"), list(o.get("values") or [])] for o in product.get("options") or []]
    view["variants"] = sorted(
        [
            str(v.get("sku")),
            str(v.get("barcode")),
            str(v.get("price")),
            [v.get("option1"), v.get("option2"), v.get("option3")],
        ]
        for v in product.get("variants") or []
    )
    view["collections"] = sorted(str(collection_handles.get(c, c)) for c in product.get("collections") or [])
    return view


def catalog_view(snapshot: dict) -> dict[str, dict]:
    """handle -> synced fields, for every product of a store."""
    handles = {c["admin_graphql_api_id"]: c["handle"] for c in snapshot.get("collections") or []}
    return {p["handle"]: _product_view(p, handles) for p in snapshot.get("products") or []}


def inventory_view(snapshot: dict) -> dict[tuple[str, str], int]:
    """(sku, location name) -> available, for every tracked item with a SKU."""
    names = {loc["id"]: loc["name"] for loc in snapshot.get("locations") or []}
    return {
        (lvl["sku"], names.get(lvl["location_id"], lvl["location_id"])): int(lvl.get("available", 0))
        for lvl in snapshot.get("inventory_levels") or []
        if lvl.get("sku")
    }


def view_hash(view: Any) -> str:
    return hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class StoreRow:
    shop: str
    role: str
    products: int
    catalog_hash: str
    units: int  # available units over all items and locations
    catalog_matches: bool
    inventory_mismatches: list[str]  # "SKU@location: parent 5, here 4"

    @property
    def agrees(self) -> bool:
        return self.catalog_matches and not self.inventory_mismatches


@dataclass
class Comparison:
    rows: list[StoreRow]

    @property
    def agree(self) -> bool:
        return all(r.agrees for r in self.rows)

    def problems(self) -> list[str]:
        out = []
        for r in self.rows:
            if not r.catalog_matches:
                out.append(f"{r.shop}: catalog hash {r.catalog_hash} differs from the parent's")
            out += [f"{r.shop}: {m}" for m in r.inventory_mismatches[:10]]
        return out


def compare_snapshots(parent: dict, children: dict[str, dict]) -> Comparison:
    """Every child against the parent: the synced fields of the parent's products (matched by
    handle; child-only products are the child's own business) and available stock per SKU and
    location name (the location map pairs locations of the same name)."""
    p_catalog, p_levels = catalog_view(parent), inventory_view(parent)
    rows = [
        StoreRow(
            parent["shop"], "parent", len(p_catalog), view_hash(p_catalog), sum(p_levels.values()), True, []
        )
    ]
    for shop, snap in children.items():
        c_catalog, c_levels = catalog_view(snap), inventory_view(snap)
        mirrored = {h: c_catalog.get(h) for h in p_catalog}
        mismatches = [
            f"{sku}@{loc}: parent {want}, here {c_levels.get((sku, loc), 'missing')}"
            for (sku, loc), want in sorted(p_levels.items())
            if c_levels.get((sku, loc)) != want
        ]
        units = sum(c_levels.get(k, 0) for k in p_levels)
        rows.append(
            StoreRow(
                shop,
                "child",
                sum(1 for v in mirrored.values() if v is not None),
                view_hash(mirrored),
                units,
                mirrored == p_catalog,
                mismatches,
            )
        )
    return Comparison(rows)


RESTOCK_TYPES = ("cancel", "return")


@dataclass
class StockMoves:
    """Units a store's customers and merchant moved through its orders, per (SKU, location
    name): `sold` by order lines, `restocked` by refund lines with a restock type (cancel,
    return) and by returned units disposed as RESTOCKED. `sale_lines` maps each order line's
    gid to its (SKU, location name, quantity)."""

    sold: dict[tuple[str, str], int] = field(default_factory=dict)
    restocked: dict[tuple[str, str], int] = field(default_factory=dict)
    sale_lines: dict[str, tuple[str, str, int]] = field(default_factory=dict)


def stock_moves(snapshot: dict) -> StockMoves:
    """What a store's own record of its orders (an emulator snapshot: orders with their refunds
    and returns) says was sold and restocked. Orders must name their location (point-of-sale
    orders, as the chaos run places them); a routed order's location is not in its REST shape."""
    names = {loc["id"]: loc["name"] for loc in snapshot.get("locations") or []}

    def location(numeric: Any) -> str:
        key = f"gid://shopify/Location/{numeric}" if not str(numeric).startswith("gid://") else numeric
        return names.get(key, str(key))

    moves = StockMoves()
    for order in snapshot.get("orders") or []:
        if order.get("location_id") is None:
            raise ValueError(f"order {order.get('name')} has no location_id: its sale can't be placed")
        where = location(order["location_id"])
        skus = {li["id"]: li.get("sku") for li in order.get("line_items") or []}
        for li in order.get("line_items") or []:
            if not li.get("sku") or li.get("variant_id") in (None, ""):
                continue
            key = (li["sku"], where)
            moves.sold[key] = moves.sold.get(key, 0) + int(li["quantity"])
            moves.sale_lines[f"gid://shopify/LineItem/{li['id']}"] = (li["sku"], where, int(li["quantity"]))
        for refund in order.get("refunds") or []:
            for rl in refund.get("refund_line_items") or []:
                sku = skus.get(rl.get("line_item_id"))
                if sku and rl.get("restock_type") in RESTOCK_TYPES and rl.get("location_id") is not None:
                    key = (sku, location(rl["location_id"]))
                    moves.restocked[key] = moves.restocked.get(key, 0) + int(rl["quantity"])
        for ret in order.get("returns") or []:
            for line in ret.get("lines") or []:
                sku = skus.get(line.get("line_item_id"))
                for d in line.get("dispositions") or []:
                    if sku and d.get("type") == "RESTOCKED" and d.get("location_id"):
                        key = (sku, location(d["location_id"]))
                        moves.restocked[key] = moves.restocked.get(key, 0) + int(d["quantity"])
    return moves
