"""What the web tier keeps of a webhook body that may carry personal data.

Order and refund bodies carry the customer (name, email, phone, addresses, IP address, browser
details, notes); `app/uninstalled` carries the shop owner's contact details. Sync needs none of
it: only the order and line ids, variants, quantities, location and restocks
(`sync/domain/orders.order_event_from_webhook`). So those bodies are cut down to an allow-list before
anything is stored (the delivery row and its job): a field Shopify adds later is dropped until it
is listed here. Only scalars are kept under a listed key, except where a nested shape is listed,
so personal data cannot hide inside an unexpected object. Other topics (products, collections,
inventory levels) carry no personal data and are kept as sent. docs/reliability.md lists what is
kept and for how long.

Shopify's order and refund webhook bodies are the REST Order and Refund resources
(https://shopify.dev/docs/api/webhooks, topics `orders/create`, `refunds/create`;
https://shopify.dev/docs/api/admin-rest/latest/resources/order).
"""

from __future__ import annotations

from typing import Any

from storesync.sync.domain.topics import BY_NAME

# A spec maps each kept key to None (keep it if it is a scalar) or to the spec of the object
# (or of each object in the list) it holds.
Spec = dict[str, "Spec | None"]

LINE_ITEM: Spec = dict.fromkeys(
    (
        "id",
        "admin_graphql_api_id",
        "variant_id",
        "product_id",
        "sku",
        "title",
        "variant_title",
        "name",
        "quantity",
        "current_quantity",
        "fulfillable_quantity",
        "fulfillment_status",
        "fulfillment_service",
        "requires_shipping",
        "gift_card",
        "product_exists",
        "price",
    )
)
REFUND_LINE_ITEM: Spec = {
    **dict.fromkeys(("id", "line_item_id", "quantity", "restock_type", "restock", "location_id")),
    "line_item": LINE_ITEM,
}
REFUND: Spec = {
    **dict.fromkeys(("id", "admin_graphql_api_id", "order_id", "created_at", "processed_at", "restock")),
    "refund_line_items": REFUND_LINE_ITEM,
}
ORDER: Spec = {
    **dict.fromkeys(
        (
            "id",
            "admin_graphql_api_id",
            "name",
            "order_number",
            "number",
            "created_at",
            "updated_at",
            "processed_at",
            "cancelled_at",
            "cancel_reason",
            "closed_at",
            "confirmed",
            "currency",
            "financial_status",
            "fulfillment_status",
            "test",
            "source_name",
            "location_id",
        )
    ),
    "line_items": LINE_ITEM,
    "refunds": REFUND,
}
# The shop itself: who it is, not how to reach its owner.
SHOP: Spec = dict.fromkeys(("id", "domain", "myshopify_domain"))
# orders/edited: which order (the order is read; staff notes stay out).
ORDER_EDIT: Spec = {
    "order_edit": {
        **dict.fromkeys(("id", "order_id", "created_at")),
        "line_items": {
            "additions": dict.fromkeys(("id", "delta")),
            "removals": dict.fromkeys(("id", "delta")),
        },
    }
}
# returns/*: which return of which order (reasons and customer notes stay out).
RETURN: Spec = {
    **dict.fromkeys(("id", "admin_graphql_api_id", "status", "name")),
    "order": dict.fromkeys(("id", "admin_graphql_api_id")),
}
# reverse_fulfillment_orders/dispose: which order, and where units went.
DISPOSITION: Spec = {
    **dict.fromkeys(("id", "admin_graphql_api_id", "order_id", "total_dispositions")),
    "dispositions": {
        **dict.fromkeys(("type", "quantity")),
        "location": dict.fromkeys(("id", "admin_graphql_api_id")),
    },
}


SPECS: dict[str, Spec] = {
    "order": ORDER,
    "refund": REFUND,
    "shop": SHOP,
    "order_edit": ORDER_EDIT,
    "return": RETURN,
    "disposition": DISPOSITION,
}


def spec_of(topic: str) -> Spec | None:
    """The allow-list for a handled topic's body (the topic table says which resource it is:
    `sync/domain/topics.py`), or None when the topic is kept as sent."""
    row = BY_NAME.get(topic)
    return SPECS[row.personal] if row is not None and row.personal is not None else None


def _kept(value: Any, spec: Spec | None) -> tuple[bool, Any]:
    if spec is None:
        return (not isinstance(value, (dict, list)), value)
    if isinstance(value, dict):
        return True, minimised(value, spec)
    if isinstance(value, list):
        return True, [minimised(v, spec) for v in value if isinstance(v, dict)]
    return value is None, value


def minimised(body: dict, spec: Spec) -> dict:
    """`body` with only the keys `spec` lists (recursively)."""
    out: dict = {}
    for key, value in body.items():
        if key in spec:
            keep, kept = _kept(value, spec[key])
            if keep:
                out[key] = kept
    return out
