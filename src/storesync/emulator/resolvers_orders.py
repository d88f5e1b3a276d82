"""Resolvers for orders and what hangs off them: line items, fulfillment orders (where Shopify
assigned the stock), refunds, returns and their reverse fulfillment orders. Read-only: orders
are placed, cancelled, refunded, returned and edited through the control API (orders.py).

The fulfillment location of an order is read from its fulfillment orders; Order.physicalLocation
is deprecated for them ("Use `fulfillmentOrders` to get the fulfillment location for the
order", https://shopify.dev/docs/api/admin-graphql/2026-10/objects/Order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storesync.emulator.ids import gid
from storesync.emulator.orders import (
    FulfillmentOrder,
    FulfillmentOrderLine,
    LineItem,
    Order,
    Return,
    ReverseFulfillmentOrder,
)
from storesync.emulator.resolvers import (
    connection,
    matches,
    parse_id,
    parse_search,
    store_of,
)


def _object(info, id: str, type_name: str, cls: type) -> Any:
    num = parse_id(id, type_name)
    obj = store_of(info).objects.get(num) if num else None
    return obj if isinstance(obj, cls) else None


def q_order(_root, info, id: str) -> Order | None:
    num = parse_id(id, "Order")
    return store_of(info).orders.get(num) if num else None


def q_orders(_root, info, **args) -> dict:
    store = store_of(info)
    terms = parse_search(args.get("query"))
    fields = {
        "_default": lambda o: o.name,
        "name": lambda o: o.name,
        "id": lambda o: o.id,
        "updated_at": lambda o: o.updated_at,
        "created_at": lambda o: o.created_at,
        "status": lambda o: "cancelled" if o.cancelled_at else "open",
    }
    return connection([o for o in store.orders.values() if matches(o, terms, fields)], args)


def q_fulfillment_order(_root, info, id: str) -> FulfillmentOrder | None:
    return _object(info, id, "FulfillmentOrder", FulfillmentOrder)


def q_return(_root, info, id: str) -> Return | None:
    return _object(info, id, "Return", Return)


# --------------------------------------------------------------------------- Order


def o_financial(o: Order, _info) -> str:
    refunded = sum(rl.quantity for r in o.refunds for rl in r.lines)
    ordered = sum(li.quantity + li.added for li in o.line_items)
    return "REFUNDED" if refunded and refunded >= ordered else ("PARTIALLY_REFUNDED" if refunded else "PAID")


def o_fulfillment(o: Order, _info) -> str:
    if any(li.fulfilled for li in o.line_items):
        return "FULFILLED" if all(li.unfulfilled == 0 for li in o.line_items) else "PARTIALLY_FULFILLED"
    return "UNFULFILLED"


def o_fulfillment_orders(o: Order, _info, **args) -> dict:
    fos = o.fulfillment_orders
    if args.get("displayable"):
        fos = [fo for fo in fos if fo.status not in ("CANCELLED", "INCOMPLETE")]
    terms = parse_search(args.get("query"))
    fields = {"status": lambda fo: fo.status.lower(), "assigned_location_id": lambda fo: str(fo.location_id)}
    return connection([fo for fo in fos if matches(fo, terms, fields)], args)


ORDER_FIELDS: dict[str, Callable[..., Any]] = {
    "processedAt": lambda o, _i: o.created_at,
    "cancelReason": lambda o, _i: o.cancel_reason.upper() if o.cancel_reason else None,
    "closed": lambda o, _i: False,
    "edited": lambda o, _i: bool(o.edits),
    "test": lambda o, _i: False,
    "sourceName": lambda o, _i: o.source_name,
    "currencyCode": lambda o, info: store_of(info).currency,
    "displayFinancialStatus": o_financial,
    "displayFulfillmentStatus": o_fulfillment,
    "subtotalLineItemsQuantity": lambda o, _i: sum(li.quantity + li.added for li in o.line_items),
    "currentSubtotalLineItemsQuantity": lambda o, _i: sum(li.current_quantity for li in o.line_items),
    "retailLocation": lambda o, info: store_of(info).locations.get(o.location_id) if o.location_id else None,
    "lineItems": lambda o, _i, **args: connection(o.line_items, args),
    "fulfillmentOrders": o_fulfillment_orders,
    "refunds": lambda o, _i, first=None: o.refunds[:first] if first is not None else o.refunds,
    "returns": lambda o, _i, **args: connection(o.returns, args),
}


def li_refundable(li: LineItem, _info) -> int:
    return li.current_quantity


LINE_ITEM_FIELDS = {
    "quantity": lambda li, _i: li.quantity + li.added,
    "currentQuantity": lambda li, _i: li.current_quantity,
    "unfulfilledQuantity": lambda li, _i: li.unfulfilled,
    "refundableQuantity": li_refundable,
    "nonFulfillableQuantity": lambda li, _i: li.quantity + li.added - li.current_quantity,
    "restockable": lambda li, info: li.variant_id in store_of(info).variants,
    "variant": lambda li, info: store_of(info).variants.get(li.variant_id),
    "product": lambda li, info: store_of(info).products.get(li.product_id),
}


# --------------------------------------------------------------------------- FulfillmentOrder


def _order_of(obj: Any, info) -> Order:
    return store_of(info).orders[obj.order_id]


def fo_assigned_location(fo: FulfillmentOrder, info) -> dict:
    loc = store_of(info).locations[fo.location_id]
    a = loc.address
    return {
        "name": loc.name,
        "location": loc,
        "address1": a.get("address1"),
        "address2": a.get("address2"),
        "city": a.get("city"),
        "province": a.get("province"),
        "zip": a.get("zip"),
        "phone": a.get("phone"),
        "countryCode": a.get("country_code") or "US",
    }


FULFILLMENT_ORDER_FIELDS = {
    "requestStatus": lambda fo, _i: "UNSUBMITTED",
    "orderId": lambda fo, _i: gid("Order", fo.order_id),
    "orderName": lambda fo, info: _order_of(fo, info).name,
    "order": _order_of,
    "assignedLocation": fo_assigned_location,
    "lineItems": lambda fo, _i, **args: connection(fo.lines, args),
}


def _line(obj: Any, info) -> LineItem:
    line = store_of(info).objects[obj.line_item_id]
    assert isinstance(line, LineItem)
    return line


def _fo_line_variant(fl: FulfillmentOrderLine, info):
    return store_of(info).variants.get(_line(fl, info).variant_id)


FO_LINE_FIELDS = {
    "totalQuantity": lambda fl, _i: fl.total,
    "remainingQuantity": lambda fl, _i: fl.remaining,
    "lineItem": _line,
    "variant": _fo_line_variant,
    "inventoryItemId": lambda fl, info: (
        gid("InventoryItem", v.inventory_item_id) if (v := _fo_line_variant(fl, info)) else None
    ),
    "sku": lambda fl, info: _line(fl, info).sku,
    "productTitle": lambda fl, info: _line(fl, info).title,
    "variantTitle": lambda fl, info: _line(fl, info).variant_title,
    "vendor": lambda fl, info: _line(fl, info).vendor,
    "requiresShipping": lambda fl, info: _line(fl, info).requires_shipping,
}


# --------------------------------------------------------------------------- refunds and returns


REFUND_FIELDS = {
    "order": _order_of,
    "return": lambda r, info: store_of(info).objects.get(r.return_id) if r.return_id else None,
    "refundLineItems": lambda r, _i, **args: connection(r.lines, args),
}

REFUND_LINE_FIELDS = {
    "id": lambda rl, _i: gid("RefundLineItem", rl.id),
    "lineItem": _line,
    "location": lambda rl, info: store_of(info).locations.get(rl.location_id) if rl.location_id else None,
    "restocked": lambda rl, _i: rl.restock_type in ("CANCEL", "RETURN"),
    "restockType": lambda rl, _i: rl.restock_type,
}


def ret_rfos(r: Return, info, **args) -> dict:
    return connection([store_of(info).objects[r.rfo_id]], args)


def ret_refunds(r: Return, info, **args) -> dict:
    order = store_of(info).orders[r.order_id]
    return connection([x for x in order.refunds if x.return_id == r.id], args)


RETURN_FIELDS = {
    "order": _order_of,
    "totalQuantity": lambda r, _i: sum(rl.quantity for rl in r.lines),
    "returnLineItems": lambda r, _i, **args: connection(r.lines, args),
    "reverseFulfillmentOrders": ret_rfos,
    "refunds": ret_refunds,
}

RETURN_LINE_FIELDS = {
    "processedQuantity": lambda rl, _i: rl.processed,
    "unprocessedQuantity": lambda rl, _i: rl.quantity - rl.processed,
    "fulfillmentLineItem": lambda rl, info: store_of(info).objects[rl.fulfillment_line_id],
}


def rfo_lines(rfo: ReverseFulfillmentOrder, info, **args) -> dict:
    ret = store_of(info).objects[rfo.return_id]
    return connection([{"rl": rl} for rl in ret.lines], args, lambda x: (x["rl"].rfo_line_id,))


RFO_FIELDS = {
    "status": lambda rfo, info: (
        "CLOSED" if store_of(info).objects[rfo.return_id].status == "CLOSED" else "OPEN"
    ),
    "order": _order_of,
    "lineItems": rfo_lines,
}

RFO_LINE_FIELDS = {
    "id": lambda x, _i: gid("ReverseFulfillmentOrderLineItem", x["rl"].rfo_line_id),
    "totalQuantity": lambda x, _i: x["rl"].quantity,
    "fulfillmentLineItem": lambda x, info: store_of(info).objects[x["rl"].fulfillment_line_id],
    "dispositions": lambda x, _i: x["rl"].dispositions,
}

DISPOSITION_FIELDS = {
    "location": lambda d, info: store_of(info).locations.get(d.location_id) if d.location_id else None,
}

FULFILLMENT_LINE_FIELDS = {"lineItem": _line}


RESOLVERS: dict[str, dict[str, Any]] = {
    "QueryRoot": {
        "order": q_order,
        "orders": q_orders,
        "fulfillmentOrder": q_fulfillment_order,
        "return": q_return,
    },
    "Order": ORDER_FIELDS,
    "LineItem": LINE_ITEM_FIELDS,
    "FulfillmentOrder": FULFILLMENT_ORDER_FIELDS,
    "FulfillmentOrderLineItem": FO_LINE_FIELDS,
    "FulfillmentLineItem": FULFILLMENT_LINE_FIELDS,
    "Refund": REFUND_FIELDS,
    "RefundLineItem": REFUND_LINE_FIELDS,
    "Return": RETURN_FIELDS,
    "ReturnLineItem": RETURN_LINE_FIELDS,
    "ReverseFulfillmentOrder": RFO_FIELDS,
    "ReverseFulfillmentOrderLineItem": RFO_LINE_FIELDS,
    "ReverseFulfillmentOrderDisposition": DISPOSITION_FIELDS,
}

TYPE_RESOLVERS = {"ReturnLineItemType": lambda obj, _info, _type: "ReturnLineItem"}
