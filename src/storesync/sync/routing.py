"""Which sync jobs a webhook becomes (pure: the handler passes in what it looked up).

Webhook jobs (`webhook.<topic>`, enqueued by the web tier without a lock) only route: they
resolve links and enqueue the `sync.*` jobs below, whose lock keys make every job touching one
inventory item (or one product in one child) run alone:

    sync.product_to_child   {parent_product_id, child_shop, cause}   catalog lane
        singleton+lock "product:<child>:<parent product>": a burst of edits collapses into one
        job, and the job reads both stores' current state (`catalog.sync_product_to_child`).
    sync.sale               {child_shop, event, parent_item, cause}   inventory lane
        lock "inventory:<parent item>": apply the order lines of ONE parent item through the
        ledger (`inventory.apply_order_event`), then fan that item out.
    sync.fan_out_level      {parent_item, parent_location, only, cause}   inventory lane
        lock "inventory:<parent item>"; singleton per item+location (+child when `only`): it reads
        the parent's current level, so collapsing loses nothing (`inventory.fan_out_level`).
    sync.collection_to_child {parent_collection_id, child_shop, cause}   catalog lane
        singleton+lock "collection:<child>:<parent collection>": a collection's own fields
        (`collection_sync.sync_collection_to_child`); memberships stay with the product jobs.

Level webhooks are judged in the webhook job (`conflicts.judge_level_delivery`): STALE and ECHO
end there; FAN_OUT (parent) enqueues sync.fan_out_level for all children; REASSERT (child)
enqueues it for that child only, a few seconds later so that the order webhook of a sale,
which moved the child's level, is applied to the parent first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storesync.sync.catalog import SyncPolicy, expected_view, same_view
from storesync.sync.conflicts import LevelDecision
from storesync.sync.inventory import OrderEvent, RestockLine, SaleLine, order_event_from_webhook
from storesync.sync.model import Link, LinkKind, LinkMap, Product, gid
from storesync.sync.network import MerchantNetwork

JOB_PRODUCT_TO_CHILD = "sync.product_to_child"
JOB_SALE = "sync.sale"
JOB_FAN_OUT_LEVEL = "sync.fan_out_level"
JOB_COLLECTION_TO_CHILD = "sync.collection_to_child"
REASSERT_DELAY_S = 5.0

ORDER_TOPICS = {"orders/create", "orders/updated", "orders/cancelled", "orders/paid", "refunds/create"}
PRODUCT_TOPICS = {"products/create", "products/update", "products/delete"}


@dataclass(frozen=True)
class SyncJob:
    """A job to enqueue; the wiring maps it to `queue.JobSpec` (group = merchant id)."""

    kind: str
    payload: dict[str, Any]
    lane: str  # "inventory" or "catalog" (queue.Lane names)
    singleton_key: str | None = None
    lock_key: str | None = None
    delay_s: float = 0.0


@dataclass
class Routed:
    jobs: list[SyncJob] = field(default_factory=list)
    ignored: str = ""  # why nothing was enqueued (logged by the handler)
    unlinked: list[str] = field(default_factory=list)  # child variants sold that link to nothing


def product_job(child_shop: str, parent_product_id: str, cause: str) -> SyncJob:
    key = f"product:{child_shop}:{parent_product_id}"
    return SyncJob(
        JOB_PRODUCT_TO_CHILD,
        {"parent_product_id": parent_product_id, "child_shop": child_shop, "cause": cause},
        "catalog",
        singleton_key=key,
        lock_key=key,
    )


def collection_job(child_shop: str, parent_collection_id: str, cause: str) -> SyncJob:
    """Singleton and lock per child and parent collection: a burst collapses into one job, which
    reads both stores now (`collection_sync.sync_collection_to_child`)."""
    key = f"collection:{child_shop}:{parent_collection_id}"
    return SyncJob(
        JOB_COLLECTION_TO_CHILD,
        {"parent_collection_id": parent_collection_id, "child_shop": child_shop, "cause": cause},
        "catalog",
        singleton_key=key,
        lock_key=key,
    )


def fan_out_job(
    parent_item: str, parent_location: str, cause: str, only: str | None = None, delay_s: float = 0.0
) -> SyncJob:
    scope = f":{only}" if only else ""
    return SyncJob(
        JOB_FAN_OUT_LEVEL,
        {
            "parent_item": parent_item,
            "parent_location": parent_location,
            "only": [only] if only else None,
            "cause": cause,
        },
        "inventory",
        singleton_key=f"fanout:{parent_item}:{parent_location}{scope}",
        lock_key=f"inventory:{parent_item}",
        delay_s=delay_s,
    )


def route_product_webhook(
    network: MerchantNetwork, shop: str, body: Mapping[str, Any], child_links: LinkMap | None, cause: str
) -> Routed:
    """Parent product change: one job per child. Child product change: re-sync that child from
    its parent product (reverting edits to synced fields); a child-only product is left alone."""
    product_id = gid("Product", body.get("admin_graphql_api_id") or body.get("id"))
    if shop == network.parent.shop:
        return Routed([product_job(c.shop, product_id, cause) for c in network.children])
    if child_links is None:
        raise ValueError("a child's product webhook needs that child's links")
    parent_id = child_links.parent_id(LinkKind.PRODUCT, product_id)
    if parent_id is None:
        return Routed(ignored=f"{product_id} is a child-only product")
    return Routed([product_job(shop, parent_id, cause)])


def children_behind(
    network: MerchantNetwork, parent: Product, links: Sequence[Link], policy: SyncPolicy
) -> list[str]:
    """The children whose copy of `parent` may not show its synced fields: no product link,
    or a link whose `synced_view` (what the engine last wrote there, or last found there) is
    not what the parent implies now. `links`: the product's links and the links of the
    collections it belongs to, every child's.

    A parent `products/update` that changed no synced field (Shopify sends one for every stock
    move, e.g. after each sale) leaves no child behind, so it starts no product job. Nothing is
    recorded when a job is enqueued: a product job that fails, dies or is cancelled leaves its
    link as it was, so the next delivery for that product (or reconciliation) finds that
    child behind again; deliveries out of order do not matter, the parent is read now.
    """
    behind = []
    for child in network.children:
        mine = LinkMap(child.shop, [lk for lk in links if lk.child_shop == child.shop])
        link = mine.link_down(LinkKind.PRODUCT, parent.id or "")
        if (
            link is None
            or link.synced_view is None
            or not same_view(expected_view(parent, policy, mine), link.synced_view)
        ):
            behind.append(child.shop)
    return behind


def route_parent_product_update(
    network: MerchantNetwork,
    parent_product_id: str,
    parent: Product | None,
    links: Sequence[Link],
    policy: SyncPolicy,
    cause: str,
) -> Routed:
    """A parent `products/update`, judged on one read of the parent (`parent`; None: it is
    gone, so every child's job checks its copy): one product job per child left behind."""
    if parent is None:
        return Routed([product_job(c.shop, parent_product_id, cause) for c in network.children])
    behind = children_behind(network, parent, links, policy)
    if not behind:
        return Routed(ignored="no synced field differs from what every child was last given")
    return Routed([product_job(shop, parent_product_id, cause) for shop in behind])


def route_collection_webhook(
    network: MerchantNetwork,
    shop: str,
    topic: str,
    body: Mapping[str, Any],
    child_link: Link | None,
    cause: str,
) -> Routed:
    """Parent collection created, updated or deleted: one job per child. A child's event about a
    collection linked to a parent one (`child_link`): re-sync that child's counterpart (a child
    edit is reverted; a collection deleted in the child is made again). A child's own collection,
    and a collection the child just created, are left alone (our own creates are linked by then,
    and their jobs wrote what they show)."""
    collection_id = gid("Collection", body.get("admin_graphql_api_id") or body.get("id"))
    if shop == network.parent.shop:
        return Routed([collection_job(c.shop, collection_id, cause) for c in network.children])
    if topic == "collections/create":
        return Routed(ignored="a collection created in a child is the child's own (or ours, already linked)")
    if child_link is None:
        return Routed(ignored=f"{collection_id} is a child-only collection")
    return Routed([collection_job(shop, child_link.parent_id, cause)])


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


def route_order_webhook(
    network: MerchantNetwork,
    shop: str,
    topic: str,
    body: Mapping[str, Any],
    child_links: LinkMap | None,
    cause: str,
) -> Routed:
    if shop == network.parent.shop:
        return Routed(ignored="the parent's own orders reach children through its level webhooks")
    if child_links is None:
        raise ValueError("a child's order webhook needs that child's links")
    event = order_event_from_webhook(shop, topic, body)
    parts, unlinked = split_by_parent_item(event, child_links)
    jobs = [
        SyncJob(
            JOB_SALE,
            {"child_shop": shop, "event": order_event_to_payload(sub), "parent_item": item, "cause": cause},
            "inventory",
            lock_key=f"inventory:{item}",
        )
        for item, sub in sorted(parts.items())
    ]
    return Routed(jobs, "" if jobs else "no inventory lines", unlinked)


def route_level_decision(
    network: MerchantNetwork,
    shop: str,
    decision: LevelDecision,
    *,
    item: str,
    location: str,
    child_links: LinkMap | None,
    cause: str,
) -> Routed:
    """What to do with a judged `inventory_levels/update` (see `conflicts.judge_level_delivery`)."""
    if decision in (LevelDecision.STALE, LevelDecision.ECHO):
        return Routed(ignored=str(decision))
    if decision is LevelDecision.FAN_OUT:
        return Routed([fan_out_job(item, location, cause)])
    if child_links is None:
        raise ValueError("a child's level webhook needs that child's links")
    parent_item = child_links.parent_item(item)
    parent_location = network.parent_location(shop, location)
    if parent_item is None or parent_location is None:
        return Routed(ignored="level of an unlinked item or unmapped location")
    return Routed([fan_out_job(parent_item, parent_location, cause, only=shop, delay_s=REASSERT_DELAY_S)])


def order_event_to_payload(e: OrderEvent) -> dict[str, Any]:
    return {
        "child_shop": e.child_shop,
        "order_id": e.order_id,
        "child_location_id": e.child_location_id,
        "sales": [[s.order_line_id, s.child_variant_id, s.quantity] for s in e.sales],
        "restocks": [[r.order_line_id, r.refund_line_id, r.quantity] for r in e.restocks],
    }


def order_event_from_payload(p: Mapping[str, Any]) -> OrderEvent:
    return OrderEvent(
        p["child_shop"],
        p["order_id"],
        tuple(SaleLine(*s) for s in p["sales"]),
        tuple(RestockLine(*r) for r in p["restocks"]),
        p.get("child_location_id"),
    )
