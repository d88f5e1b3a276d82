"""A child's order as inventory events: the lines sold and the units given back, from a webhook
body or a GraphQL read of the order, into one `OrderEvent`; and what of it the ledger lacks.

Two sources, one mapping of keys (`inventory.py` says why each key is what it is):

- `order_event_from_webhook`: the REST body of `orders/create|updated|cancelled` or
  `refunds/create`. A point-of-sale order names its location (`location_id`); an online order
  does not: Shopify commits its stock at the location its order routing assigned, which only
  the order's fulfillment orders tell (`fulfillment_orders/order_routing_complete` names the
  fulfillment order alone), so the webhook job reads the order when a line's location is needed
  (`needs_order_read`).
- `order_event_from_graphql`: the order as `ChildOrder` / `ChildOrdersPage` read it (the
  webhook job, and the reconciliation of sales): lines, fulfillment orders (each line's assigned
  location), refunds, and returns with their dispositions (where each returned unit was
  restocked: https://shopify.dev/docs/api/admin-graphql/2026-10/objects/ReverseFulfillmentOrderDisposition).

What each movement is (Shopify's order model):
- a sale: the line's `quantity` ("the number of units ordered, including refunded and removed
  units", https://shopify.dev/docs/api/admin-graphql/2026-10/objects/LineItem), a counter that
  only grows (an edit adding units raises it), committed at the line's assigned location;
- a refund line item with restock type `cancel` (unfulfilled units, where they were committed;
  how Shopify cancels with restock) or `return` (fulfilled units, at its `location`); `no_restock`
  lines move nothing (https://shopify.dev/docs/api/admin-graphql/2026-10/enums/RefundLineItemRestockType);
- a return disposition `RESTOCKED` at its location (the refund a processed return issues has
  `no_restock` lines: the disposition is the restock);
- units an order edit removed: `quantity - currentQuantity - units refunded` (currentQuantity
  "excludes refunded and removed units"), taken as restocked where the line was committed
  (Shopify tells apps nothing about an edit's `restock` choice after the edit: neither
  orders/edited nor the order carries it; docs/sync.md says what that means per policy).

The order webhook job routes an event (`routing.route_order_event`) into one sale job per
parent item, whose payload carries the event (`payloads.SaleJob`), never the body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from storesync.sync.domain.inventory import EntryKind, EntryStatus, InventoryError
from storesync.sync.domain.model import LinkMap, gid

# Topics whose REST body is parsed into an event.
ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/cancelled", "refunds/create"})
# Topics that only say an order changed: the order is read (their bodies lack what moved where).
ORDER_READ_TOPICS = frozenset({"orders/edited", "returns/process", "reverse_fulfillment_orders/dispose"})

_RESTOCK_TYPES = {"cancel", "return", "legacy_restock"}


@dataclass(frozen=True)
class SaleLine:
    order_line_id: str
    child_variant_id: str
    quantity: int  # units ordered on the line so far, removed and refunded ones included
    child_product_id: str | None = None  # finds a copy whose variants are not linked yet
    child_location_id: str | None = None  # where Shopify committed its stock (None: not known)
    edit_removed: int | None = None  # units order edits removed so far (None: the source can't say)


@dataclass(frozen=True)
class RestockLine:
    order_line_id: str
    restock_id: str  # the refund line item's gid, or the return disposition's
    quantity: int
    child_location_id: str | None = None  # where the units went back (None: where committed)


@dataclass(frozen=True)
class OrderEvent:
    """What one order says about stock: the lines sold and the units given back. Every order
    topic carries the lines, so a restock delivered before its sale still applies the sale
    first."""

    child_shop: str
    order_id: str
    sales: tuple[SaleLine, ...]
    restocks: tuple[RestockLine, ...] = ()
    child_location_id: str | None = None  # a point-of-sale order's location
    skipped: tuple[str, ...] = ()  # lines without a variant (custom items): not inventory
    created_at: str | None = None  # when the order was placed (ISO 8601), when the source says
    # Placed before the child's stock was tracked (`tracked`): its sales and edits are the
    # child's history; only its restocks move stock now.
    before_tracking: bool = False


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InventoryError(f"{what}: quantity must be a non-negative integer, got {value!r}")
    return value


# --------------------------------------------------------------------------- REST bodies


def _sale_line(
    line: Mapping[str, Any], skipped: list[str], location: str | None, refunded: Mapping[str, int] | None
) -> SaleLine | None:
    line_id = gid("LineItem", line.get("id"))
    if line.get("variant_id") in (None, ""):
        skipped.append(line_id)
        return None
    qty = line.get("quantity")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise InventoryError(f"line {line_id}: quantity must be a positive integer, got {qty!r}")
    product = line.get("product_id")
    removed = None
    current = line.get("current_quantity")
    if refunded is not None and current is not None:
        removed = max(0, qty - _int(current, f"line {line_id} current_quantity") - refunded.get(line_id, 0))
    return SaleLine(
        line_id,
        gid("ProductVariant", line["variant_id"]),
        qty,
        gid("Product", product) if product not in (None, "") else None,
        location,
        removed,
    )


def _refund_line_ids(rl: Mapping[str, Any]) -> tuple[str, str]:
    line_id = gid("LineItem", rl.get("line_item_id") or (rl.get("line_item") or {}).get("id"))
    return line_id, gid("RefundLineItem", rl.get("id"))


def _rest_restocks(
    refund: Mapping[str, Any], lines: dict[str, SaleLine], skipped: list[str], location: str | None
) -> list[RestockLine]:
    out = []
    for rl in refund.get("refund_line_items") or []:
        restock = rl.get("restock_type") in _RESTOCK_TYPES or rl.get("restock") is True
        if not restock:
            continue
        line_id, refund_line = _refund_line_ids(rl)
        if line_id not in lines and rl.get("line_item"):
            sale = _sale_line(rl["line_item"], skipped, location, None)
            if sale:
                lines[line_id] = sale
        if line_id not in lines:
            continue  # a custom line: nothing was taken from stock
        qty = rl.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise InventoryError(f"refund line {rl.get('id')!r}: quantity must be a positive integer")
        loc = rl.get("location_id")
        out.append(RestockLine(line_id, refund_line, qty, gid("Location", loc) if loc else None))
    return out


def order_id_of(topic: str, body: Mapping[str, Any]) -> str:
    """The order a webhook body is about (every order, refund, edit and return topic)."""
    if topic == "refunds/create" or topic == "reverse_fulfillment_orders/dispose":
        return gid("Order", body.get("order_id"))
    if topic == "orders/edited":
        return gid("Order", (body.get("order_edit") or {}).get("order_id"))
    if topic.startswith("returns/"):
        order = body.get("order") or {}
        return gid("Order", order.get("admin_graphql_api_id") or order.get("id"))
    if topic.startswith("orders/"):
        return gid("Order", body.get("admin_graphql_api_id") or body.get("id"))
    raise InventoryError(f"topic {topic!r} is not about an order")


def order_event_from_webhook(child_shop: str, topic: str, body: Mapping[str, Any]) -> OrderEvent:
    """Parse an `orders/create|updated|cancelled` or `refunds/create` body (REST JSON)."""
    skipped: list[str] = []
    lines: dict[str, SaleLine] = {}
    loc = body.get("location_id")
    location = gid("Location", loc) if loc else None
    created_at = None
    if topic == "refunds/create":
        order_id = gid("Order", body.get("order_id"))
        refunds = [body]
        location = None  # a refund's location_id is not where the order was sold
    elif topic in ORDER_TOPICS:
        order_id = gid("Order", body.get("id"))
        refunds = list(body.get("refunds") or [])
        # Units refunded per line (any restock type), to tell edits' removals from refunds.
        refunded: dict[str, int] = {}
        for refund in refunds:
            for rl in refund.get("refund_line_items") or []:
                line_id, _ = _refund_line_ids(rl)
                refunded[line_id] = refunded.get(line_id, 0) + _int(
                    rl.get("quantity"), f"refund line {line_id}"
                )
        for line in body.get("line_items") or []:
            sale = _sale_line(line, skipped, location, refunded)
            if sale:
                lines[sale.order_line_id] = sale
        created_at = body.get("created_at")
    else:
        raise InventoryError(f"topic {topic!r} carries no order lines")
    restocks: list[RestockLine] = []
    for refund in refunds:
        restocks.extend(_rest_restocks(refund, lines, skipped, location))
    return OrderEvent(
        child_shop=child_shop,
        order_id=order_id,
        sales=tuple(lines.values()),
        restocks=tuple(restocks),
        child_location_id=location,
        skipped=tuple(skipped),
        created_at=created_at if isinstance(created_at, str) else None,
    )


# --------------------------------------------------------------------------- GraphQL reads


def _nodes(conn: Any) -> list[Mapping[str, Any]]:
    if isinstance(conn, Mapping):
        return [n for n in conn.get("nodes") or () if n]
    if isinstance(conn, list):  # Order.refunds is a plain list
        return [n for n in conn if n]
    return []


def _id(obj: Any) -> str | None:
    return obj.get("id") if isinstance(obj, Mapping) else None


def order_event_from_graphql(child_shop: str, order: Mapping[str, Any]) -> OrderEvent:
    """The same event from an order as `ChildOrder` reads it (and `ChildOrdersPage`)."""
    order_id = order["id"]
    retail = _id(order.get("retailLocation"))
    # Each line's assigned location: the fulfillment order holding most of its units.
    assigned: dict[str, tuple[int, str]] = {}
    for fo in _nodes(order.get("fulfillmentOrders")):
        where = _id((fo.get("assignedLocation") or {}).get("location"))
        if where is None:
            continue
        for fol in _nodes(fo.get("lineItems")):
            line = _id(fol.get("lineItem"))
            units = fol.get("totalQuantity") or 0
            if line and (line not in assigned or units > assigned[line][0]):
                assigned[line] = (units, where)
    refunded: dict[str, int] = {}
    restocks: list[RestockLine] = []
    for refund in _nodes(order.get("refunds")):
        for rl in _nodes(refund.get("refundLineItems")):
            line = _id(rl.get("lineItem"))
            if line is None:
                continue
            qty = _int(rl.get("quantity"), f"refund line of {line}")
            refunded[line] = refunded.get(line, 0) + qty
            if str(rl.get("restockType") or "").lower() in _RESTOCK_TYPES and qty > 0 and rl.get("id"):
                restocks.append(RestockLine(line, rl["id"], qty, _id(rl.get("location"))))
    for ret in _nodes(order.get("returns")):
        for rfo in _nodes(ret.get("reverseFulfillmentOrders")):
            for rfol in _nodes(rfo.get("lineItems")):
                line = _id((rfol.get("fulfillmentLineItem") or {}).get("lineItem"))
                if line is None:
                    continue
                for d in rfol.get("dispositions") or ():
                    if d and d.get("type") == "RESTOCKED" and (d.get("quantity") or 0) > 0:
                        restocks.append(RestockLine(line, d["id"], d["quantity"], _id(d.get("location"))))
    skipped: list[str] = []
    sales: list[SaleLine] = []
    for li in _nodes(order.get("lineItems")):
        variant = _id(li.get("variant"))
        if variant is None:
            skipped.append(li["id"])
            continue
        qty = _int(li.get("quantity"), f"line {li['id']}")
        if qty == 0:
            continue
        current = _int(li.get("currentQuantity"), f"line {li['id']} currentQuantity")
        sales.append(
            SaleLine(
                li["id"],
                variant,
                qty,
                _id(li.get("product")),
                assigned[li["id"]][1] if li["id"] in assigned else retail,
                max(0, qty - current - refunded.get(li["id"], 0)),
            )
        )
    sold = {s.order_line_id for s in sales}
    return OrderEvent(
        child_shop=child_shop,
        order_id=order_id,
        sales=tuple(sales),
        restocks=tuple(r for r in restocks if r.order_line_id in sold),
        child_location_id=retail,
        skipped=tuple(skipped),
        created_at=order.get("createdAt"),
    )


# --------------------------------------------------------------------------- against the ledger


@dataclass
class LineState:
    """What the ledger holds of one order line."""

    sold: int = 0  # units counted by its SALE entries
    edit_removed: int = 0  # units counted by its EDIT_REMOVAL entries
    restock_ids: set[str] = field(default_factory=set)  # RESTOCK refs
    unapplied: bool = False  # some entry of the line is claimed or planned, not applied yet
    parent_location_id: str | None = None  # where its sale was applied
    child_location_id: str | None = None


@dataclass(frozen=True)
class LedgerRow:
    """One ledger entry of an order, as `order_state` reads them."""

    order_line_id: str
    kind: EntryKind
    ref: str
    requested_delta: int
    status: EntryStatus
    parent_location_id: str
    child_location_id: str | None


def order_state(rows: Iterable[LedgerRow]) -> dict[str, LineState]:
    """The ledger's entries of one order, per line."""
    out: dict[str, LineState] = {}
    for r in rows:
        s = out.setdefault(r.order_line_id, LineState())
        s.unapplied |= r.status is not EntryStatus.APPLIED
        if r.kind is EntryKind.SALE:
            s.sold += -r.requested_delta
            s.parent_location_id = s.parent_location_id or r.parent_location_id
            s.child_location_id = s.child_location_id or r.child_location_id
        elif r.kind is EntryKind.EDIT_REMOVAL:
            s.edit_removed += r.requested_delta
        elif r.kind is EntryKind.RESTOCK:
            s.restock_ids.add(r.ref)
    return out


def unapplied_part(event: OrderEvent, state: Mapping[str, LineState]) -> OrderEvent | None:
    """The part of `event` the ledger lacks or has not applied yet (None: nothing): what a
    delivery or a reconciliation still has to apply. Sales stay with it when a restock or an
    edit of theirs is new (they name its variant; the ledger counts each unit once anyway)."""
    fresh_restocks = tuple(
        r
        for r in event.restocks
        if r.restock_id not in (state.get(r.order_line_id) or LineState()).restock_ids
        or (state.get(r.order_line_id) or LineState()).unapplied
    )
    lines_wanted = {r.order_line_id for r in fresh_restocks}
    sales = []
    for s in event.sales:
        known = state.get(s.order_line_id) or LineState()
        new = known.unapplied or (
            not event.before_tracking
            and (s.quantity > known.sold or (s.edit_removed or 0) > known.edit_removed)
        )
        if new or s.order_line_id in lines_wanted:
            sales.append(s)
    if not sales and not fresh_restocks:
        return None
    return replace(event, sales=tuple(sales), restocks=fresh_restocks)


def needs_order_read(event: OrderEvent, state: Mapping[str, LineState]) -> bool:
    """Whether a webhook's event lacks what applying it needs, so the order must be read: a
    line with units not counted yet whose location the body does not give (an online order:
    the fulfillment orders tell), or an order whose placing time is unknown (refunds/create)
    with a line the ledger has never seen."""
    for s in event.sales:
        known = state.get(s.order_line_id)
        if known is None and event.created_at is None:
            return True
        uncounted = s.quantity > (known.sold if known else 0)
        if uncounted and s.child_location_id is None and (known is None or known.parent_location_id is None):
            return True
    return False


def tracked(event: OrderEvent, tracked_since: datetime | None) -> OrderEvent:
    """`event` marked `before_tracking` when the order was placed before the child's stock was
    tracked (its sales were in the child's stock when storesync took it over)."""
    if tracked_since is None or event.created_at is None:
        return event
    try:
        placed = datetime.fromisoformat(event.created_at.replace("Z", "+00:00"))
    except ValueError:
        return event
    if placed.tzinfo is None:
        return event
    return replace(event, before_tracking=placed < tracked_since)


# --------------------------------------------------------------------------- routing


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
            item: replace(event, sales=tuple(sales), restocks=tuple(restocks), skipped=())
            for item, (sales, restocks) in by_item.items()
        },
        unlinked,
    )
