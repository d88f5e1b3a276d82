"""A child's orders into sale jobs: the one path every order webhook and the reconciliation of
sales take, so both derive the same ledger keys and nothing applies twice.

An order (a webhook's body, or a read of the order) becomes an `OrderEvent`
(`domain/orders.py`); what of it the ledger lacks (`orders.unapplied_part`) is routed into one
`sync.sale` job per parent item (`routing.route_order_event`), which applies it through the
ledger (`services/sales.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storesync.logs import get_logger
from storesync.sync.adapters.postgres import Storage, order_pruned
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.orders import (
    ORDER_TOPICS,
    LedgerRow,
    LineState,
    OrderEvent,
    needs_order_read,
    order_event_from_graphql,
    order_event_from_webhook,
    order_id_of,
    order_state,
    tracked,
    unapplied_part,
)
from storesync.sync.domain.routing import Routed, route_order_event
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import link_sold_copies

log = get_logger("storesync.sync.orders")


async def webhook_event(
    rt: Runtime, st: Storage, shop: str, topic: str, body: Mapping[str, Any]
) -> tuple[OrderEvent | None, dict[str, LineState]]:
    """The order a webhook is about, as an event with what applying it needs, and the ledger's
    state of it. The body is enough for a point-of-sale order or an order the ledger knows; an
    online order's first sale (where Shopify committed its stock: its fulfillment orders),
    a refund of an order never seen, an edit or a return need the order read. None: the
    store no longer has the order and the body says nothing usable."""
    event = order_event_from_webhook(shop, topic, body) if topic in ORDER_TOPICS else None
    order_id = event.order_id if event is not None else order_id_of(topic, body)
    state = order_state(await st.ledger.order_entries(shop, order_id))
    if event is None or needs_order_read(event, state):
        order = await rt.api(shop).read_order(order_id)
        if order is not None:
            event = order_event_from_graphql(shop, order)
        elif event is None:
            log.warning("order webhook about an order the store no longer has", shop=shop, order=order_id)
    return event, state


async def route_order(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    shop: str,
    event: OrderEvent,
    state: Mapping[str, LineState],
    cause: str,
) -> Routed:
    """The sale jobs for what of `event` the ledger lacks (nothing when it has it all, or when
    retention pruned the order's entries: its movements were applied long ago)."""
    if await order_pruned(st.conn, shop, event.order_id):
        return Routed(ignored="the order's ledger entries are past their retention (applied long ago)")
    checkpoint = await st.checkpoints.get(shop)
    part = unapplied_part(tracked(event, checkpoint.tracked_since), state)
    if part is None:
        return Routed(ignored="every movement of the order is in the ledger")
    variants = [s.child_variant_id for s in part.sales]
    links = await st.links.child_links(shop, variants=variants)
    if await link_sold_copies(rt, st, net, shop, part, links, cause):
        links = await st.links.child_links(shop, variants=variants)
    return route_order_event(net, shop, part, links, cause)


async def orders_states(st: Storage, shop: str, order_ids: Sequence[str]) -> dict[str, dict[str, LineState]]:
    """The ledger's state of several orders of one child (one statement)."""
    rows: dict[str, list[LedgerRow]] = await st.ledger.orders_entries(shop, order_ids)
    return {order_id: order_state(r) for order_id, r in rows.items()}
