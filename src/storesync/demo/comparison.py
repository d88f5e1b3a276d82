"""Every child compared with the parent from the stores' own snapshots (never our tables): the
synced fields of the parent's products (with their media, sales channels, variants' selling and
inventory item fields, and the metafields of the synced namespaces) and the available stock per
SKU and location name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SYNCED_PRODUCT_FIELDS = ("title", "body_html", "vendor", "product_type", "status")
ITEM_FIELDS = (
    "tracked",
    "requires_shipping",
    "cost",
    "harmonized_system_code",
    "country_code_of_origin",
    "weight_value",
    "weight_unit",
)


def _file_name(url: str) -> str:
    """An image's identity across stores: each serves it from its own CDN path, same file name."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _metafields(entries: Sequence[Mapping[str, Any]], namespaces: Collection[str]) -> list[list[str]]:
    return sorted(
        [m["namespace"], m["key"], m["type"], m["value"]] for m in entries if m["namespace"] in namespaces
    )


def _product_view(
    product: dict, collection_handles: dict[str, str], namespaces: Collection[str] = ()
) -> dict:
    """The synced fields of one product of an emulator snapshot (REST shape), without store ids:
    collections by handle, variants by SKU, media by file name."""
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
            str(v.get("inventory_policy")),
            str(v.get("taxable")),
        ]
        for v in product.get("variants") or []
    )
    view["collections"] = sorted(str(collection_handles.get(c, c)) for c in product.get("collections") or [])
    sku = {v["admin_graphql_api_id"]: str(v.get("sku")) for v in product.get("variants") or []}
    items = product.get("inventory_items") or {}
    view["items"] = sorted(
        [sku.get(vid, vid), *(str(item.get(f)) for f in ITEM_FIELDS)] for vid, item in items.items()
    )
    view["media"] = [
        [_file_name(m["preview_image"]["src"]), m.get("alt") or ""]
        for m in product.get("media") or []
        if m.get("status") == "ready" and m.get("preview_image")
    ]
    view["channels"] = sorted(product.get("channels") or [])
    if namespaces:
        view["metafields"] = _metafields(product.get("metafields") or [], namespaces)
        view["variant_metafields"] = sorted(
            [sku.get(vid, vid), *m]
            for vid, entries in (product.get("variant_metafields") or {}).items()
            for m in _metafields(entries, namespaces)
        )
    return view


def catalog_view(snapshot: dict, namespaces: Collection[str] = ()) -> dict[str, dict]:
    """handle -> synced fields, for every product of a store."""
    handles = {c["admin_graphql_api_id"]: c["handle"] for c in snapshot.get("collections") or []}
    return {p["handle"]: _product_view(p, handles, namespaces) for p in snapshot.get("products") or []}


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


def as_the_child_should_show(
    parent_view: dict, child_view: dict | None, channels: Sequence[str] | None
) -> tuple[dict, dict | None]:
    """The parent's view as this child should show it (its configured channels, when it has
    some) and the child's with what is its own left out: media it added (kept after the
    parent's), and channels beyond the expected ones (a product the child had before storesync
    is on the channels it chose; storesync publishes, never unpublishes)."""
    want = dict(parent_view)
    if channels is not None:
        want["channels"] = sorted(channels)
    if child_view is None:
        return want, None
    names = {name for name, _alt in parent_view["media"]}
    have = {**child_view, "media": [m for m in child_view["media"] if m[0] in names]}
    if set(want["channels"]) <= set(have["channels"]):
        have["channels"] = want["channels"]
    return want, have


@dataclass
class StoreRow:
    shop: str
    role: str
    products: int
    catalog_hash: str
    units: int  # available units over all items and locations
    catalog_matches: bool
    inventory_mismatches: list[str]  # "SKU@location: parent 5, here 4"
    # products whose media / sales channels / synced metafields are the parent's
    media_equal: int = 0
    channels_equal: int = 0
    metafields_equal: int = 0

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


def compare_snapshots(
    parent: dict,
    children: dict[str, dict],
    *,
    namespaces: Collection[str] = (),
    channels: Mapping[str, Sequence[str]] | None = None,
) -> Comparison:
    """Every child against the parent: the synced fields of the parent's products (matched by
    handle; child-only products are the child's own business, as are the media a child added
    to a copy), with the metafields of the synced `namespaces`, sales channels (a child's
    configured `channels`, else the parent's), and available stock per SKU and location name
    (the location map pairs locations of the same name)."""
    p_catalog, p_levels = catalog_view(parent, namespaces), inventory_view(parent)
    n = len(p_catalog)
    rows = [
        StoreRow(parent["shop"], "parent", n, view_hash(p_catalog), sum(p_levels.values()), True, [], n, n, n)
    ]
    for shop, snap in children.items():
        c_catalog, c_levels = catalog_view(snap, namespaces), inventory_view(snap)
        pairs = {
            h: as_the_child_should_show(view, c_catalog.get(h), (channels or {}).get(shop))
            for h, view in p_catalog.items()
        }
        mirrored = {h: have for h, (_want, have) in pairs.items()}
        expected = {h: want for h, (want, _have) in pairs.items()}

        def same(key: str, pairs: dict = pairs) -> int:
            return sum(
                1 for want, have in pairs.values() if have is not None and have.get(key) == want.get(key)
            )

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
                mirrored == expected,
                mismatches,
                same("media"),
                same("channels"),
                sum(
                    1
                    for want, have in pairs.values()
                    if have is not None
                    and (have.get("metafields"), have.get("variant_metafields"))
                    == (want.get("metafields"), want.get("variant_metafields"))
                ),
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
