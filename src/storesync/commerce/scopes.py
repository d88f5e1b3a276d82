"""The Admin API access scopes storesync needs, and why. One list: the install flow requests it,
`storesync api check` compares each store's grant with it, docs/connecting-stores.md explains it.

Write access implies read access: a write scope granted alone also grants its read scope
(https://shopify.dev/docs/api/admin-graphql/latest/mutations/appDowngradeAccessScopes).
Access needed per type and mutation: https://shopify.dev/docs/api/usage/access-scopes
"""

from __future__ import annotations

from collections.abc import Iterable

NEEDED_SCOPES: dict[str, str] = {
    "write_products": "copy the parent's products, variants and collections into the children "
    "(productSet, collectionCreate/Update/Delete) and read them (read_products)",
    "write_inventory": "set the children's levels and apply sales to the parent "
    "(inventorySetQuantities, inventoryAdjustQuantities); read levels and locations (read_inventory)",
    "read_orders": "receive the children's order, refund and order edit webhooks and read their "
    "orders (the reconciliation of sales): every sale and restock flows back to the parent",
    "read_merchant_managed_fulfillment_orders": "read an order's fulfillment orders: the location "
    "Shopify's order routing assigned, where the sale's stock was committed (Order.fulfillmentOrders)",
    "read_returns": "receive returns/process and reverse_fulfillment_orders/dispose and read a "
    "return's dispositions: where each returned unit was restocked",
    "read_locations": "list each store's locations by name (`storesync api check`), to map the "
    "parent's locations to each child's",
    "write_publications": "publish the copies and the collections storesync makes on the children's "
    "sales channels (publishablePublish: a product made through the API is on none) and read which "
    "channels the parent's products are on (read_publications)",
}


def implied(scopes: Iterable[str]) -> set[str]:
    """`scopes` with the read scope of each write scope added."""
    out = set(scopes)
    out |= {"read_" + s.removeprefix("write_") for s in out if s.startswith("write_")}
    return out


def missing_scopes(granted: Iterable[str], needed: Iterable[str] = NEEDED_SCOPES) -> list[str]:
    have = implied(granted)
    return sorted(s for s in needed if s not in have)
