"""Every child compared with the parent from the stores' own snapshots (never our tables): the
synced fields of the parent's products and the available stock per SKU and location name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
