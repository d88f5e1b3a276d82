"""Orders as Shopify keeps them, and what customers and merchants do with them.

Every action validates everything first (an ActionError changes nothing), then moves stock and
returns the webhook events it causes, in REST shapes (payloads.py).

- Placing an order: its line items are routed to locations and one fulfillment order is made
  per assigned location, whose stock is committed (available -> committed). The routing rule is
  Shopify's documented default, location priority (the order locations were added in): "Try to
  assign the order to a single location. If required, assign a line item to a location that has
  enough inventory, but do not split line items between locations. If an item is oversold, then
  assign the order to the priority location where the item is stocked"
  (https://help.shopify.com/en/manual/locations/managing-orders; the routing rules of
  https://help.shopify.com/en/manual/fulfillment/setup/order-routing/understanding-order-routing
  start the same way: "Minimize split fulfillments"; the emulator has no addresses, so the
  closest-location tiebreak is the priority order). Only active locations that fulfil online
  orders take part. When routing ends, `fulfillment_orders/order_routing_complete` is sent per
  fulfillment order ("Occurs when an order has finished being routed and it's fulfillment
  orders assigned", https://shopify.dev/docs/api/admin-graphql/2026-10/enums/WebhookSubscriptionTopic).
  A sale at a named location (a point-of-sale order) is assigned there, with `location_id` in
  its payload and no routing. Items whose inventory is not tracked move no stock.
- Cancelling with restock is, as in Shopify, a refund whose lines have restock type `cancel`
  ("Use this when restocking unfulfilled line items",
  https://shopify.dev/docs/api/admin-graphql/2026-10/enums/RefundLineItemRestockType) at the
  location the units were committed at: `orders/cancelled` carries it in `refunds`, and
  `refunds/create` and `orders/updated` follow. Without restock the refund's lines are
  `no_restock` and the committed units leave on-hand stock.
- Refunds: `return` restocks fulfilled units (at the location given, by default the one they
  shipped from), `cancel` unfulfilled ones (where committed), `no_restock` none.
- Fulfilling ships the committed units (committed and on hand go down; available does not).
- Returns (https://shopify.dev/docs/apps/build/orders-fulfillment/returns-apps): a return of
  fulfilled units is created OPEN (`returns/approve`) with a reverse fulfillment order;
  processing it disposes each unit (RESTOCKED at a location, or NOT_RESTOCKED):
  `reverse_fulfillment_orders/dispose` carries the dispositions ("Occurs whenever a disposition
  is made on a reverse fulfillment order"), `returns/process` follows, and `returns/close` once
  every unit is processed. The refund a processed return issues (`refunds/create`) has
  `no_restock` lines: its restock is the disposition, never counted twice.
- Order edits (https://shopify.dev/docs/apps/build/orders-fulfillment/order-management-apps/edit-orders)
  add units (committed where routed) or remove unfulfilled ones (restocked where committed,
  or not): `orders/edited` lists the line item additions and removals with their deltas, and
  `orders/updated` the order as it now is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storesync.emulator.ids import parse_gid
from storesync.emulator.state import ActionError, Event, now_iso

if TYPE_CHECKING:
    from storesync.emulator.state import InventoryLevel, Location, StoreState, Variant


# --------------------------------------------------------------------------- entities


@dataclass(eq=False)
class LineItem:
    id: int
    variant_id: int
    product_id: int
    sku: str | None
    title: str
    variant_title: str
    quantity: int  # as ordered
    price: str
    vendor: str = ""
    requires_shipping: bool = True
    taxable: bool = True
    tracked: bool = True
    added: int = 0  # units added by order edits
    removed: int = 0  # unfulfilled units taken off (edits, cancels, refunds)
    fulfilled: int = 0
    refunded_fulfilled: int = 0  # fulfilled units refunded
    returned_unrefunded: int = 0  # fulfilled units back through a processed return, not refunded
    TYPE_NAME = "LineItem"

    @property
    def current_quantity(self) -> int:
        return self.quantity + self.added - self.removed - self.refunded_fulfilled

    @property
    def unfulfilled(self) -> int:
        return max(0, self.quantity + self.added - self.removed - self.fulfilled)

    @property
    def name(self) -> str:
        return f"{self.title} - {self.variant_title}"


@dataclass(eq=False)
class FulfillmentOrderLine:
    id: int
    line_item_id: int
    total: int
    remaining: int
    TYPE_NAME = "FulfillmentOrderLineItem"


@dataclass(eq=False)
class FulfillmentOrder:
    id: int
    order_id: int
    location_id: int
    lines: list[FulfillmentOrderLine]
    status: str = "OPEN"  # FulfillmentOrderStatus
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    TYPE_NAME = "FulfillmentOrder"


@dataclass(eq=False)
class FulfillmentLine:
    id: int
    line_item_id: int
    quantity: int
    TYPE_NAME = "FulfillmentLineItem"


@dataclass(eq=False)
class Fulfillment:
    id: int
    order_id: int
    location_id: int
    lines: list[FulfillmentLine]
    name: str
    created_at: str = field(default_factory=now_iso)
    TYPE_NAME = "Fulfillment"


@dataclass(eq=False)
class RefundLine:
    id: int
    line_item_id: int
    quantity: int
    restock_type: str  # RefundLineItemRestockType: CANCEL, RETURN, NO_RESTOCK
    location_id: int | None
    TYPE_NAME = "RefundLineItem"


@dataclass(eq=False)
class Refund:
    id: int
    order_id: int
    lines: list[RefundLine]
    note: str | None = None
    return_id: int | None = None
    created_at: str = field(default_factory=now_iso)
    TYPE_NAME = "Refund"


@dataclass(eq=False)
class Disposition:
    id: int
    type: str  # ReverseFulfillmentOrderDispositionType
    quantity: int
    location_id: int | None
    created_at: str = field(default_factory=now_iso)
    TYPE_NAME = "ReverseFulfillmentOrderDisposition"


@dataclass(eq=False)
class ReturnLine:
    id: int
    fulfillment_line_id: int
    line_item_id: int
    quantity: int
    rfo_line_id: int
    processed: int = 0
    dispositions: list[Disposition] = field(default_factory=list)
    TYPE_NAME = "ReturnLineItem"


@dataclass(eq=False)
class Return:
    id: int
    order_id: int
    name: str
    lines: list[ReturnLine]
    rfo_id: int  # its reverse fulfillment order
    status: str = "OPEN"  # ReturnStatus
    created_at: str = field(default_factory=now_iso)
    closed_at: str | None = None
    TYPE_NAME = "Return"


@dataclass(eq=False)
class ReverseFulfillmentOrder:
    """The work of processing a return; its lines are the return's (one each)."""

    id: int
    return_id: int
    order_id: int
    TYPE_NAME = "ReverseFulfillmentOrder"


@dataclass(eq=False)
class OrderEdit:
    id: int
    order_id: int
    additions: list[tuple[int, int]]  # (line item id, delta)
    removals: list[tuple[int, int]]
    created_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class Order:
    id: int
    number: int
    line_items: list[LineItem]
    location_id: int | None = None  # a point-of-sale order's location; None when routed
    email: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    fulfillment_orders: list[FulfillmentOrder] = field(default_factory=list)
    fulfillments: list[Fulfillment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)
    edits: list[OrderEdit] = field(default_factory=list)
    TYPE_NAME = "Order"

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def source_name(self) -> str:
        return "pos" if self.location_id is not None else "web"

    def line(self, line_item_id: int) -> LineItem | None:
        return next((li for li in self.line_items if li.id == line_item_id), None)


# --------------------------------------------------------------------------- helpers


def _register(store: StoreState, *objs: Any) -> None:
    for obj in objs:
        store.objects[obj.id] = obj


def _order(store: StoreState, order_id: int) -> Order:
    order = store.orders.get(order_id)
    if order is None:
        raise ActionError(f"no order {order_id} in {store.shop}")
    return order


def _num(value: Any, type_name: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return parse_gid(value, type_name)


def _level(store: StoreState, li: LineItem, location_id: int) -> InventoryLevel | None:
    variant = store.variants.get(li.variant_id)
    return store.levels.get((variant.inventory_item_id, location_id)) if variant else None


def _move(store: StoreState, li: LineItem, location_id: int, moves: dict[str, int], touched: list) -> None:
    """Move quantities of a line's item at a location (nothing for untracked or deleted items);
    levels whose `available` changed are collected for inventory_levels/update."""
    if not li.tracked:
        return
    lvl = _level(store, li, location_id)
    if lvl is None:
        return  # product deleted (or item no longer stocked there): nothing to move
    for name, delta in moves.items():
        lvl.quantities[name] += delta
    lvl.updated_at = now_iso()
    if moves.get("available") and lvl not in touched:
        touched.append(lvl)


def _fo_of_line(order: Order, line_item_id: int, *, open_only: bool = True) -> FulfillmentOrder | None:
    for fo in order.fulfillment_orders:
        if open_only and fo.status not in ("OPEN", "IN_PROGRESS"):
            continue
        if any(fl.line_item_id == line_item_id and fl.remaining > 0 for fl in fo.lines):
            return fo
    return None


def _take_from_fos(order: Order, li: LineItem, quantity: int) -> list[tuple[int, int]]:
    """Take `quantity` unfulfilled units of a line off its open fulfillment orders:
    [(location id, units)] where they were committed."""
    out: list[tuple[int, int]] = []
    left = quantity
    for fo in order.fulfillment_orders:
        if fo.status not in ("OPEN", "IN_PROGRESS"):
            continue
        for fl in fo.lines:
            if fl.line_item_id == li.id and fl.remaining > 0 and left > 0:
                n = min(left, fl.remaining)
                fl.remaining -= n
                left -= n
                out.append((fo.location_id, n))
        if all(fl.remaining == 0 for fl in fo.lines):
            fo.status = "CLOSED" if any(fl.total > 0 for fl in fo.lines) else fo.status
        fo.updated_at = now_iso()
    return out


def _sale_lines(store: StoreState, line_items: list[dict]) -> list[tuple[Variant, int]]:
    lines = []
    for i, spec in enumerate(line_items):
        vid = _num(spec.get("variant_id"), "ProductVariant")
        variant = store.variants.get(vid) if vid else None
        qty = spec.get("quantity", 1)
        if variant is None:
            raise ActionError(
                f"line_items[{i}].variant_id: no variant {spec.get('variant_id')!r} in {store.shop}"
            )
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ActionError(f"line_items[{i}].quantity must be a positive integer")
        lines.append((variant, qty))
    return lines


def _sellable(store: StoreState, variant: Variant) -> tuple[bool, bool]:
    """(tracked, may oversell) of a variant's item."""
    item = store.items[variant.inventory_item_id]
    return item.tracked, variant.inventory_policy == "CONTINUE" or not item.tracked


def route(
    store: StoreState, lines: list[tuple[Variant, int]], location: Location | None = None
) -> list[tuple[Location, list[int]]]:
    """Assign each line (by index) to a location: [(location, line indexes)] in priority order.
    Raises ActionError when a line can't be sold (no stock anywhere and the variant denies
    overselling, or no location stocks it)."""
    if location is not None:
        candidates = [location]
    else:
        candidates = [loc for loc in store.active_locations() if loc.fulfills_online_orders]
        if not candidates:
            raise ActionError(f"{store.shop} has no active location that fulfills online orders")

    def available(loc: Location, variant: Variant) -> int | None:
        lvl = store.levels.get((variant.inventory_item_id, loc.id))
        return None if lvl is None else lvl.quantities["available"]

    def can_take(loc: Location, idxs: list[int]) -> bool:
        wanted: dict[int, int] = {}
        for i in idxs:
            variant, qty = lines[i]
            if available(loc, variant) is None:
                return False
            if not _sellable(store, variant)[1]:
                wanted[variant.inventory_item_id] = wanted.get(variant.inventory_item_id, 0) + qty
        return all((store.levels[(item, loc.id)].quantities["available"] >= n) for item, n in wanted.items())

    everything = list(range(len(lines)))
    whole = next((loc for loc in candidates if can_take(loc, everything)), None)
    if whole is not None:
        return [(whole, everything)]
    assigned: dict[int, list[int]] = {}
    for i, (variant, qty) in enumerate(lines):
        loc = next((c for c in candidates if can_take(c, [*assigned.get(c.id, []), i])), None)
        if loc is None:
            stocked = next((c for c in candidates if available(c, variant) is not None), None)
            if stocked is None:
                where = f"location {location.id}" if location is not None else "any location"
                raise ActionError(f"line_items[{i}]: variant not stocked at {where}")
            if not _sellable(store, variant)[1]:
                best = max(
                    (c for c in candidates if available(c, variant) is not None),
                    key=lambda c: available(c, variant) or 0,
                )
                same = sum(
                    lines[j][1]
                    for j in assigned.get(best.id, [])
                    if lines[j][0].inventory_item_id == variant.inventory_item_id
                )
                raise ActionError(
                    f"line_items[{i}]: only {available(best, variant)} available, {qty + same} ordered"
                )
            loc = stocked  # oversold: the priority location that stocks it
        assigned.setdefault(loc.id, []).append(i)
    return [(c, assigned[c.id]) for c in candidates if c.id in assigned]


# --------------------------------------------------------------------------- actions


def place_order(
    store: StoreState, line_items: list[dict], location_id: int | None = None, email: str | None = None
) -> tuple[Order, list[Event]]:
    """A customer's order: routed (online) or at a named location (point of sale)."""
    from storesync.emulator import payloads

    if not line_items:
        raise ActionError("line_items must be a non-empty list")
    lines = _sale_lines(store, line_items)
    pos = None
    if location_id is not None:
        pos = store.locations.get(location_id)
        if pos is None:
            raise ActionError(f"no location {location_id} in {store.shop}")
        if not pos.is_active:
            raise ActionError(f"location {pos.name!r} is not active")
    assignment = route(store, lines, pos)
    order = Order(
        id=store.next_id(),
        number=store.next_order_number(),
        line_items=[],
        location_id=location_id,
        email=email,
    )
    for variant, qty in lines:
        product = store.products[variant.product_id]
        item = store.items[variant.inventory_item_id]
        order.line_items.append(
            LineItem(
                store.next_id(),
                variant.id,
                product.id,
                item.sku,
                product.title,
                variant.title,
                qty,
                variant.price,
                vendor=product.vendor,
                requires_shipping=item.requires_shipping,
                taxable=variant.taxable,
                tracked=item.tracked,
            )
        )
    touched: list[InventoryLevel] = []
    for loc, idxs in assignment:
        fo = FulfillmentOrder(
            store.next_id(),
            order.id,
            loc.id,
            [
                FulfillmentOrderLine(store.next_id(), order.line_items[i].id, lines[i][1], lines[i][1])
                for i in idxs
            ],
        )
        order.fulfillment_orders.append(fo)
        _register(store, fo)
        for i in idxs:
            _move(
                store,
                order.line_items[i],
                loc.id,
                {"available": -lines[i][1], "committed": lines[i][1]},
                touched,
            )
    store.orders[order.id] = order
    _register(store, *order.line_items)
    events = [Event("orders/create", payloads.order(store, order))]
    if pos is None:
        events += [
            Event("fulfillment_orders/order_routing_complete", payloads.fulfillment_order_event(fo))
            for fo in order.fulfillment_orders
        ]
    events += store.inventory_events(touched)
    return order, events


def cancel_order(
    store: StoreState, order_id: int, restock: bool = True, reason: str = "customer"
) -> tuple[Order, list[Event]]:
    from storesync.emulator import payloads

    order = _order(store, order_id)
    if order.cancelled_at is not None:
        raise ActionError(f"order {order.name} is already cancelled")
    if any(li.fulfilled for li in order.line_items):
        raise ActionError(
            f"order {order.name} has fulfilled items: refund them (restock type return) instead of cancelling"
        )
    if reason not in ("customer", "declined", "fraud", "inventory", "staff", "other"):
        raise ActionError("reason must be customer, declined, fraud, inventory, staff or other")
    touched: list[InventoryLevel] = []
    refund_lines = []
    for li in order.line_items:
        units = li.unfulfilled
        if units == 0:
            continue
        for location_id, n in _take_from_fos(order, li, units):
            moves = {"committed": -n, "available": n} if restock else {"committed": -n, "on_hand": -n}
            _move(store, li, location_id, moves, touched)
            refund_lines.append(
                RefundLine(store.next_id(), li.id, n, "CANCEL" if restock else "NO_RESTOCK", location_id)
            )
        li.removed += units
    for fo in order.fulfillment_orders:  # nothing was fulfilled (checked above)
        fo.status = "CANCELLED"
    order.cancelled_at = order.updated_at = now_iso()
    order.cancel_reason = reason
    events = []
    refund = None
    if refund_lines:
        refund = Refund(store.next_id(), order.id, refund_lines, note="Order canceled")
        order.refunds.append(refund)
        _register(store, refund)
    events.append(Event("orders/cancelled", payloads.order(store, order)))
    if refund is not None:
        events.append(Event("refunds/create", payloads.refund(store, order, refund)))
    events.append(Event("orders/updated", payloads.order(store, order)))
    events += store.inventory_events(touched)
    return order, events


RESTOCK_TYPES = {"return": "RETURN", "cancel": "CANCEL", "no_restock": "NO_RESTOCK"}


def refund_order(
    store: StoreState, order_id: int, lines: list[dict], note: str | None = None
) -> tuple[Refund, list[Event]]:
    """A merchant's refund: [{line_item_id, quantity, restock_type: return|cancel|no_restock,
    location_id?}]."""
    from storesync.emulator import payloads

    order = _order(store, order_id)
    if not lines:
        raise ActionError("line_items must be a non-empty list")
    plan: list[tuple[LineItem, int, str, int | None]] = []
    for i, spec in enumerate(lines):
        li = order.line(_num(spec.get("line_item_id"), "LineItem") or -1)
        if li is None:
            raise ActionError(
                f"line_items[{i}].line_item_id: no line item {spec.get('line_item_id')!r} in {order.name}"
            )
        qty = spec.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ActionError(f"line_items[{i}].quantity must be a positive integer")
        kind = RESTOCK_TYPES.get(str(spec.get("restock_type", "no_restock")).lower())
        if kind is None:
            raise ActionError(f"line_items[{i}].restock_type must be return, cancel or no_restock")
        loc = _num(spec["location_id"], "Location") if spec.get("location_id") is not None else None
        if loc is not None and (loc not in store.locations or not store.locations[loc].is_active):
            raise ActionError(f"line_items[{i}].location_id is not an active location")
        shipped = _shipped(order, li)
        if kind == "RETURN" and qty > shipped:
            raise ActionError(
                f"line_items[{i}]: only {shipped} fulfilled units can be refunded with restock type return"
            )
        if kind == "CANCEL" and qty > li.unfulfilled:
            raise ActionError(
                f"line_items[{i}]: only {li.unfulfilled} unfulfilled units can be refunded with restock type cancel"
            )
        if kind == "NO_RESTOCK" and qty > li.unfulfilled + shipped + li.returned_unrefunded:
            raise ActionError(
                f"line_items[{i}]: only {li.unfulfilled + shipped + li.returned_unrefunded} units can be refunded"
            )
        plan.append((li, qty, kind, loc))
    touched: list[InventoryLevel] = []
    refund_lines: list[RefundLine] = []
    for li, qty, kind, loc in plan:
        if kind == "RETURN":
            where = loc or _shipped_from(order, li)
            if where is not None:
                _move(store, li, where, {"available": qty, "on_hand": qty}, touched)
            li.refunded_fulfilled += qty
            refund_lines.append(RefundLine(store.next_id(), li.id, qty, kind, where))
            continue
        unfulfilled = min(qty, li.unfulfilled)
        for location_id, n in _take_from_fos(order, li, unfulfilled):
            moves = (
                {"committed": -n, "available": n} if kind == "CANCEL" else {"committed": -n, "on_hand": -n}
            )
            _move(store, li, location_id, moves, touched)
            refund_lines.append(
                RefundLine(store.next_id(), li.id, n, kind, location_id if kind == "CANCEL" else None)
            )
        li.removed += unfulfilled
        if qty > unfulfilled:  # no_restock of shipped (or returned) units: money back, nothing moves
            back = min(qty - unfulfilled, li.returned_unrefunded)
            li.returned_unrefunded -= back
            li.refunded_fulfilled += qty - unfulfilled
            refund_lines.append(RefundLine(store.next_id(), li.id, qty - unfulfilled, kind, None))
    refund = Refund(store.next_id(), order.id, refund_lines, note=note)
    order.refunds.append(refund)
    order.updated_at = now_iso()
    _register(store, refund)
    events = [
        Event("refunds/create", payloads.refund(store, order, refund)),
        Event("orders/updated", payloads.order(store, order)),
        *store.inventory_events(touched),
    ]
    return refund, events


def _shipped_from(order: Order, li: LineItem) -> int | None:
    for f in order.fulfillments:
        if any(fl.line_item_id == li.id for fl in f.lines):
            return f.location_id
    return None


def _in_returns(order: Order, li: LineItem) -> int:
    """Units of a line in returns not processed yet (they can't be refunded apart)."""
    return sum(
        rl.quantity - rl.processed
        for r in order.returns
        if r.status == "OPEN"
        for rl in r.lines
        if rl.line_item_id == li.id
    )


def _shipped(order: Order, li: LineItem) -> int:
    """Fulfilled units still with the customer: not refunded, not in a return."""
    return li.fulfilled - li.refunded_fulfilled - li.returned_unrefunded - _in_returns(order, li)


def fulfill_order(store: StoreState, order_id: int) -> list[Event]:
    """The merchant ships every open fulfillment order: committed units leave the stock."""
    from storesync.emulator import payloads

    order = _order(store, order_id)
    if order.cancelled_at is not None:
        raise ActionError(f"order {order.name} is cancelled")
    open_fos = [
        fo for fo in order.fulfillment_orders if fo.status == "OPEN" and any(fl.remaining for fl in fo.lines)
    ]
    if not open_fos:
        raise ActionError(f"order {order.name} has nothing left to fulfill")
    touched: list[InventoryLevel] = []
    for fo in open_fos:
        f_lines = []
        for fl in fo.lines:
            if fl.remaining == 0:
                continue
            li = order.line(fl.line_item_id)
            assert li is not None
            _move(store, li, fo.location_id, {"committed": -fl.remaining, "on_hand": -fl.remaining}, touched)
            li.fulfilled += fl.remaining
            f_lines.append(FulfillmentLine(store.next_id(), li.id, fl.remaining))
            fl.remaining = 0
        fo.status = "CLOSED"
        fo.updated_at = now_iso()
        fulfillment = Fulfillment(
            store.next_id(), order.id, fo.location_id, f_lines, f"{order.name}.{len(order.fulfillments) + 1}"
        )
        order.fulfillments.append(fulfillment)
        _register(store, fulfillment, *f_lines)
    order.updated_at = now_iso()
    fully = all(li.unfulfilled == 0 for li in order.line_items)
    events = [
        Event("orders/fulfilled" if fully else "orders/partially_fulfilled", payloads.order(store, order))
    ]
    events.append(Event("orders/updated", payloads.order(store, order)))
    return events


def create_return(store: StoreState, order_id: int, lines: list[dict]) -> tuple[Return, list[Event]]:
    """A merchant-created return of fulfilled units (status OPEN at once): [{line_item_id, quantity}]."""
    from storesync.emulator import payloads

    order = _order(store, order_id)
    if not lines:
        raise ActionError("line_items must be a non-empty list")
    plan = []
    for i, spec in enumerate(lines):
        li = order.line(_num(spec.get("line_item_id"), "LineItem") or -1)
        if li is None:
            raise ActionError(
                f"line_items[{i}].line_item_id: no line item {spec.get('line_item_id')!r} in {order.name}"
            )
        qty = spec.get("quantity", 1)
        returnable = _shipped(order, li)
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ActionError(f"line_items[{i}].quantity must be a positive integer")
        if qty > returnable:
            raise ActionError(
                f"line_items[{i}]: only {returnable} fulfilled units can be returned (only fulfilled items can be)"
            )
        plan.append((li, qty))
    ret_id, rfo_id = store.next_id(), store.next_id()
    ret_lines = []
    for li, qty in plan:
        fline = next(fl for f in order.fulfillments for fl in f.lines if fl.line_item_id == li.id)
        ret_lines.append(ReturnLine(store.next_id(), fline.id, li.id, qty, store.next_id()))
    ret = Return(ret_id, order.id, f"{order.name}-R{len(order.returns) + 1}", ret_lines, rfo_id)
    rfo = ReverseFulfillmentOrder(rfo_id, ret_id, order.id)
    order.returns.append(ret)
    order.updated_at = now_iso()
    _register(store, ret, rfo, *ret_lines)
    return ret, [
        Event("returns/approve", payloads.return_(store, order, ret)),
        Event("orders/updated", payloads.order(store, order)),
    ]


def process_return(
    store: StoreState,
    return_id: int,
    *,
    restock: bool = True,
    location_id: int | None = None,
    refund: bool = True,
) -> list[Event]:
    """Dispose every unprocessed unit of a return (RESTOCKED at `location_id`, by default where it
    shipped from, or NOT_RESTOCKED), refund it if asked, and close the return."""
    from storesync.emulator import payloads

    ret = store.objects.get(return_id)
    if not isinstance(ret, Return):
        raise ActionError(f"no return {return_id} in {store.shop}")
    if ret.status != "OPEN":
        raise ActionError(f"return {ret.name} is {ret.status.lower()}")
    if location_id is not None and (
        location_id not in store.locations or not store.locations[location_id].is_active
    ):
        raise ActionError("location_id is not an active location")
    order = store.orders[ret.order_id]
    touched: list[InventoryLevel] = []
    disposed: list[tuple[ReturnLine, Disposition]] = []
    refund_lines: list[RefundLine] = []
    for rl in ret.lines:
        n = rl.quantity - rl.processed
        if n == 0:
            continue
        li = order.line(rl.line_item_id)
        assert li is not None
        where = location_id or _shipped_from(order, li)
        if restock and where is not None:
            _move(store, li, where, {"available": n, "on_hand": n}, touched)
            disp = Disposition(store.next_id(), "RESTOCKED", n, where)
        else:
            disp = Disposition(store.next_id(), "NOT_RESTOCKED", n, None)
        rl.dispositions.append(disp)
        rl.processed += n
        disposed.append((rl, disp))
        if refund:
            li.refunded_fulfilled += n
            refund_lines.append(RefundLine(store.next_id(), li.id, n, "NO_RESTOCK", None))
        else:
            li.returned_unrefunded += n
    if not disposed:
        raise ActionError(f"return {ret.name} has nothing left to process")
    events = [
        Event("reverse_fulfillment_orders/dispose", payloads.dispositions(store, ret, disposed)),
        Event("returns/process", payloads.return_(store, order, ret)),
    ]
    if refund_lines:
        r = Refund(store.next_id(), order.id, refund_lines, note=f"Return {ret.name}", return_id=ret.id)
        order.refunds.append(r)
        _register(store, r)
        events.append(Event("refunds/create", payloads.refund(store, order, r)))
    if all(rl.processed == rl.quantity for rl in ret.lines):
        ret.status = "CLOSED"
        ret.closed_at = now_iso()
        events.append(Event("returns/close", payloads.return_(store, order, ret)))
    order.updated_at = now_iso()
    events.append(Event("orders/updated", payloads.order(store, order)))
    events += store.inventory_events(touched)
    return events


def edit_order(
    store: StoreState, order_id: int, changes: list[dict], additions: list[dict], *, restock: bool = True
) -> tuple[OrderEdit, list[Event]]:
    """A merchant's order edit: `changes` [{line_item_id, quantity}] set a line's new quantity
    (lower: unfulfilled units removed, restocked where committed when `restock`; higher: units
    added where the line is fulfilled from), `additions` [{variant_id, quantity}] add new lines
    (routed like a new order)."""
    from storesync.emulator import payloads

    order = _order(store, order_id)
    if order.cancelled_at is not None:
        raise ActionError(f"order {order.name} is cancelled")
    if not changes and not additions:
        raise ActionError("an edit needs changes or additions")
    plan: list[tuple[LineItem, int]] = []
    for i, spec in enumerate(changes):
        li = order.line(_num(spec.get("line_item_id"), "LineItem") or -1)
        if li is None:
            raise ActionError(
                f"changes[{i}].line_item_id: no line item {spec.get('line_item_id')!r} in {order.name}"
            )
        new = spec.get("quantity")
        if not isinstance(new, int) or isinstance(new, bool) or new < 0:
            raise ActionError(f"changes[{i}].quantity must be an integer >= 0")
        if new < li.fulfilled:
            raise ActionError(f"changes[{i}]: {li.fulfilled} units are fulfilled already")
        delta = new - li.current_quantity
        if delta > 0:
            fo = _fo_of_line(order, li.id, open_only=False)
            variant = store.variants.get(li.variant_id)
            if variant is None:
                raise ActionError(f"changes[{i}]: the line's variant no longer exists")
            if fo is not None and li.tracked and not _sellable(store, variant)[1]:
                lvl = _level(store, li, fo.location_id)
                have = lvl.quantities["available"] if lvl else 0
                if have < delta:
                    raise ActionError(f"changes[{i}]: only {have} available to add, {delta} asked")
        plan.append((li, delta))
    new_lines = _sale_lines(store, additions) if additions else []
    assignment = route(store, new_lines) if new_lines else []
    touched: list[InventoryLevel] = []
    edit = OrderEdit(store.next_id(), order.id, [], [])
    for li, delta in plan:
        if delta < 0:
            for location_id, n in _take_from_fos(order, li, -delta):
                moves = {"committed": -n, "available": n} if restock else {"committed": -n, "on_hand": -n}
                _move(store, li, location_id, moves, touched)
            li.removed += -delta
            edit.removals.append((li.id, -delta))
        elif delta > 0:
            fo = _fo_of_line(order, li.id, open_only=False)
            loc_id = (
                fo.location_id
                if fo is not None
                else route(store, [(store.variants[li.variant_id], delta)])[0][0].id
            )
            target = next(
                (f for f in order.fulfillment_orders if f.location_id == loc_id and f.status == "OPEN"), None
            )
            if target is None:
                target = FulfillmentOrder(store.next_id(), order.id, loc_id, [])
                order.fulfillment_orders.append(target)
                _register(store, target)
            fl = next((x for x in target.lines if x.line_item_id == li.id), None)
            if fl is None:
                target.lines.append(FulfillmentOrderLine(store.next_id(), li.id, delta, delta))
            else:
                fl.total += delta
                fl.remaining += delta
            _move(store, li, loc_id, {"available": -delta, "committed": delta}, touched)
            li.added += delta
            edit.additions.append((li.id, delta))
    for loc, idxs in assignment:
        fo = next(
            (f for f in order.fulfillment_orders if f.location_id == loc.id and f.status == "OPEN"), None
        )
        if fo is None:
            fo = FulfillmentOrder(store.next_id(), order.id, loc.id, [])
            order.fulfillment_orders.append(fo)
            _register(store, fo)
        for i in idxs:
            variant, qty = new_lines[i]
            product = store.products[variant.product_id]
            item = store.items[variant.inventory_item_id]
            li = LineItem(
                store.next_id(),
                variant.id,
                product.id,
                item.sku,
                product.title,
                variant.title,
                qty,
                variant.price,
                vendor=product.vendor,
                requires_shipping=item.requires_shipping,
                taxable=variant.taxable,
                tracked=item.tracked,
            )
            order.line_items.append(li)
            _register(store, li)
            fo.lines.append(FulfillmentOrderLine(store.next_id(), li.id, qty, qty))
            _move(store, li, loc.id, {"available": -qty, "committed": qty}, touched)
            edit.additions.append((li.id, qty))
    order.edits.append(edit)
    order.updated_at = now_iso()
    events = [
        Event("orders/edited", payloads.order_edit(store, order, edit)),
        Event("orders/updated", payloads.order(store, order)),
        *store.inventory_events(touched),
    ]
    return edit, events
