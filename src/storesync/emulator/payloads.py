"""Webhook payloads in Shopify's REST JSON shapes (numeric ids, snake_case, `admin_graphql_api_id`).

Only the fields an app can rely on are filled with real values; the rest carry Shopify's
defaults so a parser written against real payloads finds every key it expects.

Since 2024-07 a product's variants in product webhooks no longer carry the inventory item's
fields (fulfillment_service, inventory_management, grams, weight, weight_unit,
requires_shipping: https://shopify.dev/changelog/product-variant-field-cleanup); they come in
`inventory_items/*` payloads (inventory_item below).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from storesync.emulator.ids import gid

if TYPE_CHECKING:
    from storesync.emulator.media import MediaImage
    from storesync.emulator.orders import (
        Disposition,
        FulfillmentOrder,
        LineItem,
        Order,
        OrderEdit,
        Refund,
        Return,
        ReturnLine,
    )
    from storesync.emulator.state import (
        Collection,
        InventoryItem,
        InventoryLevel,
        Location,
        Product,
        StoreState,
        Variant,
    )


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
        "image_id": None,
        "inventory_item_id": v.inventory_item_id,
        "inventory_quantity": qty,
        "old_inventory_quantity": qty,
        "admin_graphql_api_id": gid("ProductVariant", v.id),
    }


def _media(store: StoreState, p: Product) -> list[MediaImage]:
    from storesync.emulator.media import product_media

    return product_media(store, p)


def _image(store: StoreState, p: Product, m: MediaImage, position: int) -> dict:
    return {
        "id": m.id,
        "alt": m.alt,
        "position": position,
        "product_id": p.id,
        "created_at": local(m.created_at, store.timezone),
        "updated_at": local(m.updated_at, store.timezone),
        "admin_graphql_api_id": gid("ProductImage", m.id),
        "width": 2048,
        "height": 2048,
        "src": m.url(store),
        "variant_ids": [],
    }


def product(store: StoreState, p: Product) -> dict:
    media = _media(store, p)
    ready = [m for m in media if m.status == "READY"]
    images = [_image(store, p, m, i) for i, m in enumerate(ready, 1)]
    online = any(
        store.publications[x].name != "Point of Sale" for x in p.publications if x in store.publications
    )
    pos = any(
        store.publications[x].name == "Point of Sale" for x in p.publications if x in store.publications
    )
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
        "published_scope": "global" if (online and pos) else "web",
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
        "images": images,
        "image": images[0] if images else None,
        "media": [
            {
                "id": m.id,
                "product_id": p.id,
                "position": i,
                "created_at": local(m.created_at, store.timezone),
                "updated_at": local(m.updated_at, store.timezone),
                "alt": m.alt,
                "status": m.status.lower(),
                "media_content_type": "IMAGE",
                "preview_image": {
                    "width": 2048,
                    "height": 2048,
                    "src": m.url(store),
                    "status": m.status.lower(),
                }
                if m.status == "READY"
                else None,
                "variant_ids": [],
                "admin_graphql_api_id": m.gid,
            }
            for i, m in enumerate(media, 1)
        ],
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


def inventory_item(store: StoreState, item: InventoryItem) -> dict:
    """inventory_items/create|update (the fields product webhooks no longer carry)."""
    return {
        "id": item.id,
        "sku": item.sku,
        "created_at": local(item.created_at, store.timezone),
        "updated_at": local(item.updated_at, store.timezone),
        "requires_shipping": item.requires_shipping,
        "cost": item.unit_cost,
        "country_code_of_origin": item.country_code_of_origin,
        "province_code_of_origin": item.province_code_of_origin,
        "harmonized_system_code": item.harmonized_system_code,
        "tracked": item.tracked,
        "country_harmonized_system_codes": [],
        "weight_value": item.weight_value,
        "weight_unit": WEIGHT_UNITS[item.weight_unit],
        "admin_graphql_api_id": gid("InventoryItem", item.id),
    }


WEIGHT_UNITS = {"GRAMS": "g", "KILOGRAMS": "kg", "OUNCES": "oz", "POUNDS": "lb"}


def inventory_item_deleted(item_id: int) -> dict:
    return {
        "id": item_id,
        "country_code_of_origin": None,
        "province_code_of_origin": None,
        "harmonized_system_code": None,
        "country_harmonized_system_codes": [],
        "admin_graphql_api_id": gid("InventoryItem", item_id),
    }


def inventory_level_disconnected(item_id: int, location_id: int) -> dict:
    return {"inventory_item_id": item_id, "location_id": location_id}


def location(store: StoreState, loc: Location) -> dict:
    a = loc.address
    return {
        "id": loc.id,
        "name": loc.name,
        "address1": a.get("address1"),
        "address2": a.get("address2"),
        "city": a.get("city"),
        "zip": a.get("zip"),
        "province": a.get("province"),
        "country": a.get("country_code"),
        "phone": a.get("phone"),
        "created_at": local(loc.created_at, store.timezone),
        "updated_at": local(loc.updated_at, store.timezone),
        "country_code": a.get("country_code"),
        "country_name": a.get("country"),
        "province_code": a.get("province_code"),
        "legacy": False,
        "active": loc.is_active,
        "admin_graphql_api_id": gid("Location", loc.id),
    }


def _money_set(amount: str, currency: str) -> dict:
    money = {"amount": amount, "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def line_item(store: StoreState, o: Order, li: LineItem) -> dict:
    fulfilled_all = li.fulfilled and li.unfulfilled == 0
    return {
        "id": li.id,
        "admin_graphql_api_id": gid("LineItem", li.id),
        "variant_id": li.variant_id,
        "product_id": li.product_id,
        "sku": li.sku,
        "title": li.title,
        "variant_title": li.variant_title,
        "name": li.name,
        "vendor": li.vendor,
        "quantity": li.quantity + li.added,
        "current_quantity": li.current_quantity,
        "fulfillable_quantity": 0 if o.cancelled_at else li.unfulfilled,
        "fulfillment_status": "fulfilled" if fulfilled_all else ("partial" if li.fulfilled else None),
        "price": li.price,
        "price_set": _money_set(li.price, store.currency),
        "total_discount": "0.00",
        "fulfillment_service": "manual",
        "requires_shipping": li.requires_shipping,
        "taxable": li.taxable,
        "gift_card": False,
        "grams": 0,
        "product_exists": li.product_id in store.products,
        "properties": [],
        "tax_lines": [],
        "discount_allocations": [],
        "duties": [],
    }


def refund(store: StoreState, o: Order, r: Refund) -> dict:
    """A refund as `refunds/create` sends it and `orders/*` list it in `refunds`."""
    from decimal import Decimal

    lines = []
    for rl in r.lines:
        li = o.line(rl.line_item_id)
        assert li is not None
        sub = str(Decimal(li.price) * rl.quantity)
        lines.append(
            {
                "id": rl.id,
                "line_item_id": li.id,
                "location_id": rl.location_id,
                "quantity": rl.quantity,
                "restock_type": rl.restock_type.lower(),
                "subtotal": sub,
                "total_tax": "0.00",
                "subtotal_set": _money_set(sub, store.currency),
                "total_tax_set": _money_set("0.00", store.currency),
                "line_item": line_item(store, o, li),
            }
        )
    return {
        "id": r.id,
        "admin_graphql_api_id": gid("Refund", r.id),
        "order_id": o.id,
        "created_at": local(r.created_at, store.timezone),
        "processed_at": local(r.created_at, store.timezone),
        "note": r.note,
        "restock": any(rl.restock_type in ("CANCEL", "RETURN") for rl in r.lines),
        "user_id": None,
        "duties": [],
        "order_adjustments": [],
        "transactions": [],
        "refund_line_items": lines,
        "refund_shipping_lines": [],
        "return": {"id": r.return_id, "admin_graphql_api_id": gid("Return", r.return_id)}
        if r.return_id
        else None,
    }


def order(store: StoreState, o: Order) -> dict:
    from decimal import Decimal

    subtotal = sum((Decimal(li.price) * li.current_quantity for li in o.line_items), Decimal("0"))
    ordered = sum((Decimal(li.price) * (li.quantity + li.added) for li in o.line_items), Decimal("0"))
    # by units, so a free item's refund counts too
    refunded = sum(rl.quantity for r in o.refunds for rl in r.lines)
    if refunded and refunded >= sum(li.quantity + li.added for li in o.line_items):
        financial = "refunded"
    elif refunded:
        financial = "partially_refunded"
    else:
        financial = "paid"
    fulfilled = [li for li in o.line_items if li.fulfilled]
    fulfillment_status: str | None
    if fulfilled and all(li.unfulfilled == 0 for li in o.line_items):
        fulfillment_status = "fulfilled"
    else:
        fulfillment_status = "partial" if fulfilled else None
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
        "financial_status": financial,
        "fulfillment_status": fulfillment_status,
        "subtotal_price": str(ordered),
        "current_subtotal_price": str(subtotal),
        "total_price": str(ordered),
        "current_total_price": str(subtotal),
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "test": False,
        "source_name": o.source_name,
        "location_id": o.location_id,
        "tags": "",
        "line_items": [line_item(store, o, li) for li in o.line_items],
        "fulfillments": [
            {
                "id": f.id,
                "admin_graphql_api_id": gid("Fulfillment", f.id),
                "order_id": o.id,
                "location_id": f.location_id,
                "name": f.name,
                "status": "success",
                "created_at": local(f.created_at, store.timezone),
                "line_items": [
                    line_item(store, o, o.line(fl.line_item_id)) | {"quantity": fl.quantity}  # type: ignore[arg-type]
                    for fl in f.lines
                ],
            }
            for f in o.fulfillments
        ],
        "refunds": [refund(store, o, r) for r in o.refunds],
        "shipping_lines": [],
    }


def fulfillment_order_event(fo: FulfillmentOrder) -> dict:
    """fulfillment_orders/* payloads name the fulfillment order by gid and status only: the
    assigned location is read with the fulfillmentOrder query."""
    return {"fulfillment_order": {"id": gid("FulfillmentOrder", fo.id), "status": fo.status.lower()}}


def return_(store: StoreState, o: Order, r: Return) -> dict:
    """returns/approve|process|close."""
    return {
        "id": r.id,
        "admin_graphql_api_id": gid("Return", r.id),
        "status": r.status.lower(),
        "name": r.name,
        "order": {"id": o.id, "admin_graphql_api_id": gid("Order", o.id)},
        "total_return_line_items": len(r.lines),
        "return_line_items": [
            {
                "id": rl.id,
                "admin_graphql_api_id": gid("ReturnLineItem", rl.id),
                "fulfillment_line_item": {
                    "id": rl.fulfillment_line_id,
                    "admin_graphql_api_id": gid("FulfillmentLineItem", rl.fulfillment_line_id),
                    "line_item": {
                        "id": rl.line_item_id,
                        "admin_graphql_api_id": gid("LineItem", rl.line_item_id),
                    },
                },
                "quantity": rl.quantity,
                "processed_quantity": rl.processed,
                "return_reason": "unknown",
                "return_reason_note": "",
                "customer_note": None,
            }
            for rl in r.lines
        ],
        "return_shipping_fees": [],
        "exchange_line_items": [],
        "total_exchange_line_items": 0,
    }


def dispositions(store: StoreState, r: Return, disposed: list[tuple[ReturnLine, Disposition]]) -> dict:
    """reverse_fulfillment_orders/dispose: where each returned unit went."""
    return {
        "id": r.rfo_id,
        "admin_graphql_api_id": gid("ReverseFulfillmentOrder", r.rfo_id),
        "order_id": r.order_id,
        "total_dispositions": len(disposed),
        "dispositions": [
            {
                "reverse_fulfillment_order_line_item": {
                    "id": rl.rfo_line_id,
                    "admin_graphql_api_id": gid("ReverseFulfillmentOrderLineItem", rl.rfo_line_id),
                    "fulfillment_line_item": {
                        "id": rl.fulfillment_line_id,
                        "admin_graphql_api_id": gid("FulfillmentLineItem", rl.fulfillment_line_id),
                        "line_item": {
                            "id": rl.line_item_id,
                            "admin_graphql_api_id": gid("LineItem", rl.line_item_id),
                        },
                    },
                },
                "reverse_delivery_line_item": None,
                "type": d.type.lower(),
                "location": {"id": d.location_id, "admin_graphql_api_id": gid("Location", d.location_id)}
                if d.location_id
                else None,
                "quantity": d.quantity,
            }
            for rl, d in disposed
        ],
    }


def order_edit(store: StoreState, o: Order, e: OrderEdit) -> dict:
    """orders/edited: what one edit changed, line by line."""
    return {
        "order_edit": {
            "id": e.id,
            "app_id": None,
            "created_at": local(e.created_at, store.timezone),
            "notify_customer": False,
            "order_id": o.id,
            "staff_note": "",
            "user_id": None,
            "line_items": {
                "additions": [{"id": lid, "delta": d} for lid, d in e.additions],
                "removals": [{"id": lid, "delta": d} for lid, d in e.removals],
            },
            "discounts": {"line_item": {"additions": [], "removals": []}},
            "shipping_lines": {"additions": [], "removals": []},
        }
    }
