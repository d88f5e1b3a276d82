"""Order webhooks as inventory events: the lines sold and restocked, parsed once from the body.

`order_event_from_webhook` reads an `orders/*` or `refunds/create` body (REST JSON) into an
`OrderEvent`; the order webhook job routes it (`routing.route_order_event`) into one sale job
per parent item, whose payload carries the event (`payloads.SaleJob`), never the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storesync.sync.domain.inventory import InventoryError
from storesync.sync.domain.model import LinkMap, gid

ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/cancelled", "refunds/create"})


@dataclass(frozen=True)
class SaleLine:
    order_line_id: str
    child_variant_id: str
    quantity: int
    child_product_id: str | None = None  # finds a copy whose variants are not linked yet


@dataclass(frozen=True)
class RestockLine:
    order_line_id: str
    refund_line_id: str
    quantity: int


@dataclass(frozen=True)
class OrderEvent:
    """What one order webhook says about stock: the lines sold and the lines restocked.
    Every order topic carries the lines, so a restock delivered before its sale still
    applies the sale first."""

    child_shop: str
    order_id: str
    sales: tuple[SaleLine, ...]
    restocks: tuple[RestockLine, ...] = ()
    child_location_id: str | None = None
    skipped: tuple[str, ...] = ()  # lines without a variant (custom items): not inventory


_RESTOCK_TYPES = {"cancel", "return", "legacy_restock"}


def _sale_line(line: Mapping[str, Any], skipped: list[str]) -> SaleLine | None:
    line_id = gid("LineItem", line.get("id"))
    if line.get("variant_id") in (None, ""):
        skipped.append(line_id)
        return None
    qty = line.get("quantity")
    if not isinstance(qty, int) or qty <= 0:
        raise InventoryError(f"line {line_id}: quantity must be a positive integer, got {qty!r}")
    product = line.get("product_id")
    return SaleLine(
        line_id,
        gid("ProductVariant", line["variant_id"]),
        qty,
        gid("Product", product) if product not in (None, "") else None,
    )


def _restocks(refund: Mapping[str, Any], lines: dict[str, SaleLine], skipped: list[str]) -> list[RestockLine]:
    out = []
    for rl in refund.get("refund_line_items") or []:
        restock = rl.get("restock_type") in _RESTOCK_TYPES or rl.get("restock") is True
        if not restock:
            continue
        line_id = gid("LineItem", rl.get("line_item_id") or (rl.get("line_item") or {}).get("id"))
        if line_id not in lines and rl.get("line_item"):
            sale = _sale_line(rl["line_item"], skipped)
            if sale:
                lines[line_id] = sale
        if line_id not in lines:
            continue  # a custom line: nothing was taken from stock
        qty = rl.get("quantity")
        if not isinstance(qty, int) or qty <= 0:
            raise InventoryError(f"refund line {rl.get('id')!r}: quantity must be a positive integer")
        out.append(RestockLine(line_id, gid("RefundLineItem", rl.get("id")), qty))
    return out


def order_event_from_webhook(child_shop: str, topic: str, body: Mapping[str, Any]) -> OrderEvent:
    """Parse an `orders/create|updated|cancelled` or `refunds/create` body (REST JSON)."""
    skipped: list[str] = []
    lines: dict[str, SaleLine] = {}
    if topic == "refunds/create":
        order_id = gid("Order", body.get("order_id"))
        refunds = [body]
    elif topic.startswith("orders/"):
        order_id = gid("Order", body.get("id"))
        for line in body.get("line_items") or []:
            sale = _sale_line(line, skipped)
            if sale:
                lines[sale.order_line_id] = sale
        refunds = list(body.get("refunds") or [])
    else:
        raise InventoryError(f"topic {topic!r} carries no order lines")
    restocks: list[RestockLine] = []
    for refund in refunds:
        restocks.extend(_restocks(refund, lines, skipped))
    loc = body.get("location_id")
    return OrderEvent(
        child_shop=child_shop,
        order_id=order_id,
        sales=tuple(lines.values()),
        restocks=tuple(restocks),
        child_location_id=gid("Location", loc) if loc else None,
        skipped=tuple(skipped),
    )


def split_by_parent_item(event: OrderEvent, links: LinkMap) -> tuple[dict[str, OrderEvent], list[str]]:
    """The order's lines grouped by the parent inventory item they draw from (one locked job
    each), and the child variants that link to no parent item."""
    by_item: dict[str, tuple[list[SaleLine], list[RestockLine]]] = {}
    unlinked = []
    line_item: dict[str, str] = {}
    for s in event.sales:
        item = links.parent_item_for_child_variant(s.child_variant_id)
        if item is None:
            unlinked.append(s.child_variant_id)
            continue
        line_item[s.order_line_id] = item
        by_item.setdefault(item, ([], []))[0].append(s)
    for r in event.restocks:
        item = line_item.get(r.order_line_id)
        if item is not None:
            by_item[item][1].append(r)
    return (
        {
            item: OrderEvent(
                event.child_shop, event.order_id, tuple(sales), tuple(restocks), event.child_location_id
            )
            for item, (sales, restocks) in by_item.items()
        },
        unlinked,
    )
