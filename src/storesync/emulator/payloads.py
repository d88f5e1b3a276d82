"""Webhook payloads in Shopify's REST JSON shapes (numeric ids, snake_case, `admin_graphql_api_id`).

Only the fields an app can rely on are filled with real values; the rest carry Shopify's
defaults so a parser written against real payloads finds every key it expects.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from storesync.emulator.ids import gid

if TYPE_CHECKING:
    from storesync.emulator.state import Collection, InventoryLevel, Order, Product, StoreState, Variant


@cache
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def local(value: str | None, tz: str) -> str | None:
    """A stored UTC timestamp as Shopify's REST payloads write it: in the shop's time zone with
    its offset (2024-01-02T09:28:43-05:00), while GraphQL answers in UTC (...Z)."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(_zone(tz)).isoformat()


def variant(store: StoreState, v: Variant) -> dict:
    item = store.items.get(v.inventory_item_id)
    opts = [value for _name, value in v.selected] + [None, None, None]
    qty = store.variant_available(v)
    return {
        "id": v.id,
        "product_id": v.product_id,
        "title": v.title,
        "price": v.price,
        "sku": item.sku if item else None,
        "position": v.position,
        "inventory_policy": v.inventory_policy.lower(),
        "compare_at_price": v.compare_at_price,
        "option1": opts[0],
        "option2": opts[1],
        "option3": opts[2],
        "created_at": local(v.created_at, store.timezone),
        "updated_at": local(v.updated_at, store.timezone),
        "taxable": v.taxable,
        "barcode": v.barcode,
        "fulfillment_service": "manual",
        "inventory_management": "shopify" if (item is None or item.tracked) else None,
        "requires_shipping": item.requires_shipping if item else True,
        "grams": 0,
        "weight": 0.0,
        "weight_unit": "kg",
        "image_id": None,
        "inventory_item_id": v.inventory_item_id,
        "inventory_quantity": qty,
        "old_inventory_quantity": qty,
        "admin_graphql_api_id": gid("ProductVariant", v.id),
    }


def product(store: StoreState, p: Product) -> dict:
    return {
        "id": p.id,
        "title": p.title,
        "body_html": p.description_html,
        "vendor": p.vendor,
        "product_type": p.product_type,
        "created_at": local(p.created_at, store.timezone),
        "handle": p.handle,
        "updated_at": local(p.updated_at, store.timezone),
        "published_at": local(p.published_at, store.timezone),
        "template_suffix": p.template_suffix,
        "published_scope": "global",
        "tags": ", ".join(p.tags),
        "status": p.status.lower(),
        "admin_graphql_api_id": gid("Product", p.id),
        "variants": [variant(store, v) for v in store.product_variants(p)],
        "options": [
            {
                "id": o.id,
                "product_id": p.id,
                "name": o.name,
                "position": o.position,
                "values": [val.name for val in o.values],
            }
            for o in p.options
        ],
        "images": [],
        "image": None,
        "media": [],
        "variant_gids": [
            {
                "admin_graphql_api_id": gid("ProductVariant", v.id),
                "updated_at": local(v.updated_at, store.timezone),
            }
            for v in store.product_variants(p)
        ],
        "has_variants_that_requires_components": False,
        "category": None,
    }


def product_deleted(product_id: int) -> dict:
    return {"id": product_id}


def inventory_level(lvl: InventoryLevel, tz: str) -> dict:
    return {
        "inventory_item_id": lvl.item_id,
        "location_id": lvl.location_id,
        "available": lvl.quantities["available"],
        "updated_at": local(lvl.updated_at, tz),
        "admin_graphql_api_id": lvl.gid,
    }


def collection(c: Collection, tz: str) -> dict:
    return {
        "id": c.id,
        "handle": c.handle,
        "title": c.title,
        "updated_at": local(c.updated_at, tz),
        "body_html": c.description_html,
        "published_at": local(c.published_at, tz),
        "sort_order": c.sort_order.lower().replace("_", "-"),
        "template_suffix": c.template_suffix,
        "published_scope": "web",
        "admin_graphql_api_id": gid("Collection", c.id),
        **({"image": {"src": c.image_url, "alt": c.image_alt}} if c.image_url else {}),
    }


def collection_deleted(collection_id: int) -> dict:
    return {
        "id": collection_id,
        "published_scope": "web",
        "admin_graphql_api_id": gid("Collection", collection_id),
    }


def order(store: StoreState, o: Order) -> dict:
    from decimal import Decimal

    subtotal = sum((Decimal(li.price) * li.quantity for li in o.line_items), Decimal("0"))
    return {
        "id": o.id,
        "admin_graphql_api_id": gid("Order", o.id),
        "name": o.name,
        "order_number": o.number,
        "number": o.number - 1000,
        "email": o.email,
        "created_at": local(o.created_at, store.timezone),
        "updated_at": local(o.updated_at, store.timezone),
        "processed_at": local(o.created_at, store.timezone),
        "cancelled_at": local(o.cancelled_at, store.timezone),
        "cancel_reason": o.cancel_reason,
        "closed_at": None,
        "confirmed": True,
        "currency": store.currency,
        "presentment_currency": store.currency,
        "financial_status": "voided" if o.cancelled_at else "paid",
        "fulfillment_status": None,
        "subtotal_price": str(subtotal),
        "total_price": str(subtotal),
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "test": False,
        "source_name": "web",
        "location_id": o.location_id,
        "tags": "",
        "line_items": [
            {
                "id": li.id,
                "admin_graphql_api_id": gid("LineItem", li.id),
                "variant_id": li.variant_id,
                "product_id": li.product_id,
                "sku": li.sku,
                "title": li.title,
                "variant_title": li.variant_title,
                "name": f"{li.title} - {li.variant_title}",
                "quantity": li.quantity,
                "current_quantity": 0 if o.cancelled_at else li.quantity,
                "fulfillable_quantity": 0 if o.cancelled_at else li.quantity,
                "price": li.price,
                "fulfillment_service": "manual",
                "fulfillment_status": None,
                "requires_shipping": True,
                "taxable": True,
                "gift_card": False,
                "product_exists": li.product_id in store.products,
            }
            for li in o.line_items
        ],
        "refunds": [],
    }
