"""Which sync jobs a webhook (or a service) starts: pure, given what the caller looked up.

Webhook jobs (`webhook.<topic>`, enqueued by the web tier without a lock) only route: they
resolve links and enqueue the `sync.*` jobs below, whose lock keys make every job touching one
inventory item (or one product in one child) run alone (payloads: `payloads.py`):

    sync.product_to_child   ProductJob   catalog lane
        singleton+lock "product:<child>:<parent product>": a burst of edits collapses into one
        job, and the job reads both stores' current state (`services/catalog.py`).
    sync.sale               SaleJob      inventory lane
        lock "inventory:<parent item>": apply the order lines of ONE parent item through the
        ledger (`services/sales.py`), then fan that item out.
    sync.fan_out_level      FanOutJob    inventory lane
        lock "inventory:<parent item>"; singleton per item+location (+child when `only`): it reads
        the parent's current level, so collapsing loses nothing.
    sync.collection_to_child CollectionJob catalog lane
        singleton+lock "collection:<child>:<parent collection>": a collection's own fields
        (`services/collections.py`); memberships stay with the product jobs.
    sync.adjust_parent      AdjustJob    inventory lane
        singleton+lock "adjust:<parent>": with coalesced writes, sale jobs only claim their
        ledger entries; this job sends what waits for the parent in one inventoryAdjustQuantities
        and queues the new levels for the children (`services/adjusts.py`).
    sync.push_levels        PushJob      inventory lane
        singleton+lock "push:<child>": the levels waiting for one child, in one
        inventorySetQuantities (`services/pushes.py`).
    sync.child_stock        ChildStockJob inventory lane
        lock "inventory:<parent item>"; singleton per child level: a child's own move handled
        by its stock policy (`services/stock.py`; policy report: a saga to the parent).
    sync.copy_product, sync.link_pending_copies, sync.reconcile, sync.reconcile_levels   backfill lane

Level webhooks are judged in the webhook job (`services/sales.judge_level_delivery`): STALE and
ECHO end there; FAN_OUT (parent) enqueues sync.fan_out_level for all children; REASSERT (child)
enqueues, a few seconds later (so that the order webhook of a sale, which moved the child's
level, is applied to the parent first), sync.fan_out_level for that child only (policy revert)
or sync.child_stock (policy report: the move may be the child's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.conflicts import LevelDecision
from storesync.sync.domain.echoes import children_behind
from storesync.sync.domain.model import Link, LinkKind, LinkMap, Product, gid
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.orders import OrderEvent, split_by_parent_item
from storesync.sync.domain.payloads import (
    AdjustJob,
    ChildStockJob,
    CollectionJob,
    CopyJob,
    FanOutJob,
    LinkPendingJob,
    ProductJob,
    PushJob,
    ReconcileJob,
    ReconcileLevelsJob,
    SaleJob,
)
from storesync.sync.domain.reconcile import Repair, RepairKind

JOB_PRODUCT_TO_CHILD = "sync.product_to_child"
JOB_SALE = "sync.sale"
JOB_FAN_OUT_LEVEL = "sync.fan_out_level"
JOB_COLLECTION_TO_CHILD = "sync.collection_to_child"
JOB_COPY_PRODUCT = "sync.copy_product"
JOB_LINK_PENDING_COPIES = "sync.link_pending_copies"
JOB_RECONCILE = "sync.reconcile"
JOB_PUSH_LEVELS = "sync.push_levels"
JOB_ADJUST_PARENT = "sync.adjust_parent"
JOB_RECONCILE_LEVELS = "sync.reconcile_levels"
JOB_RECONCILE_ALL = "sync.reconcile_all"
JOB_SETTLE_CHANGES = "sync.settle_changes"
JOB_CHILD_STOCK = "sync.child_stock"
REASSERT_DELAY_S = 5.0
CHILD_EVENT_DEBOUNCE_S = 1.0  # a child's product events re-check the child this much later
RECHECK_CREATED_AFTER_S = 2.0  # a child's products/create with no link yet looks again this much later

Lane = Literal["inventory", "catalog", "backfill"]


@dataclass(frozen=True)
class SyncJob:
    """A job to enqueue; `adapters/jobqueue.py` makes it a `queue.JobSpec` (group = merchant id)."""

    kind: str
    payload: Any  # one of `payloads.py`'s types
    lane: Lane  # queue.Lane names
    singleton_key: str | None = None
    lock_key: str | None = None
    delay_s: float = 0.0
    run_at: datetime | None = None  # instead of delay_s: due at this time
    max_attempts: int = 10


@dataclass
class Routed:
    jobs: list[SyncJob] = field(default_factory=list)
    ignored: str = ""  # why nothing was enqueued (logged by the handler)
    unlinked: list[str] = field(default_factory=list)  # child variants sold that link to nothing


def product_job(child_shop: str, parent_product_id: str, cause: str) -> SyncJob:
    key = f"product:{child_shop}:{parent_product_id}"
    return SyncJob(
        JOB_PRODUCT_TO_CHILD,
        ProductJob(parent_product_id, child_shop, cause),
        "catalog",
        singleton_key=key,
        lock_key=key,
    )


def media_check_job(child_shop: str, parent_product_id: str, cause: str, delay_s: float) -> SyncJob:
    """The copy of a product whose media were just uploaded, looked at again once the store has
    processed them (a FAILED one is uploaded again, then reported): a product job, linked copies
    only, under a key of its own so that it does not collapse into an earlier product job."""
    return SyncJob(
        JOB_PRODUCT_TO_CHILD,
        ProductJob(parent_product_id, child_shop, cause, only_if_linked=True),
        "catalog",
        singleton_key=f"media-check:{child_shop}:{parent_product_id}",
        lock_key=f"product:{child_shop}:{parent_product_id}",
        delay_s=delay_s,
    )


def collection_job(child_shop: str, parent_collection_id: str, cause: str) -> SyncJob:
    """Singleton and lock per child and parent collection: a burst collapses into one job, which
    reads both stores now (`services/collections.sync_collection_to_child`)."""
    key = f"collection:{child_shop}:{parent_collection_id}"
    return SyncJob(
        JOB_COLLECTION_TO_CHILD,
        CollectionJob(parent_collection_id, child_shop, cause),
        "catalog",
        singleton_key=key,
        lock_key=key,
    )


def fan_out_job(
    parent_item: str,
    parent_location: str,
    cause: str,
    only: str | None = None,
    delay_s: float = 0.0,
    *,
    parent_unchanged: bool = False,
) -> SyncJob:
    scope = f":{only}" if only else ""
    # A set-back that may push the remembered level never collapses into (and so never stands
    # for) a fan-out that must read the parent.
    kind = ":remembered" if parent_unchanged else ""
    return SyncJob(
        JOB_FAN_OUT_LEVEL,
        FanOutJob(parent_item, parent_location, cause, (only,) if only else None, parent_unchanged),
        "inventory",
        singleton_key=f"fanout:{parent_item}:{parent_location}{scope}{kind}",
        lock_key=f"inventory:{parent_item}",
        delay_s=delay_s,
    )


def push_job(shop: str, *, run_at: datetime | None = None) -> SyncJob:
    """Send the level pushes waiting for one child: singleton (pushes queued meanwhile collapse
    into the waiting job) and locked per child (one flush at a time)."""
    key = f"push:{shop}"
    return SyncJob(
        JOB_PUSH_LEVELS, PushJob(shop), "inventory", singleton_key=key, lock_key=key, run_at=run_at
    )


def adjust_job(parent_shop: str) -> SyncJob:
    """Send the sale deltas waiting for one parent in one inventoryAdjustQuantities: singleton
    (sales claimed meanwhile collapse into the waiting job) and locked per parent (one flush at
    a time: its batches are planned one after the other)."""
    key = f"adjust:{parent_shop}"
    return SyncJob(JOB_ADJUST_PARENT, AdjustJob(parent_shop), "inventory", singleton_key=key, lock_key=key)


def copy_job(
    saga_id: str, parent_product_id: str | None, child_shop: str, cause: str, max_attempts: int
) -> SyncJob:
    """A copy-product saga as a job (or, without a product, the resumption of an existing saga);
    its lock key keeps two runs of one saga apart."""
    return SyncJob(
        JOB_COPY_PRODUCT,
        CopyJob(saga_id, child_shop, cause, max_attempts, parent_product_id),
        "backfill",
        singleton_key=f"saga:{saga_id}",
        lock_key=f"saga:{saga_id}",
        max_attempts=max_attempts,
    )


def link_pending_job(child_shop: str, cause: str, delay_s: float, written_before: datetime) -> SyncJob:
    """Link, `delay_s` from now, the child's copies made before `written_before` whose create
    webhook has not linked them by then."""
    return SyncJob(
        JOB_LINK_PENDING_COPIES,
        LinkPendingJob(child_shop, cause, written_before.isoformat()),
        "backfill",
        singleton_key=f"link-pending:{child_shop}",
        lock_key=f"link-pending:{child_shop}",
        delay_s=delay_s,
    )


def reconcile_job(merchant_id: str, delay_s: float = 0.0) -> SyncJob:
    key = f"reconcile:{merchant_id}"
    return SyncJob(
        JOB_RECONCILE, ReconcileJob(merchant_id), "backfill", singleton_key=key, lock_key=key, delay_s=delay_s
    )


def reconcile_levels_job(payload: ReconcileLevelsJob, delay_s: float = 0.0) -> SyncJob:
    """The second half of a reconciliation (after its sale jobs); under the reconcile's lock."""
    key = f"reconcile:{payload.merchant_id}"
    return SyncJob(JOB_RECONCILE_LEVELS, payload, "backfill", lock_key=key, delay_s=delay_s)


def sale_job(child_shop: str, event: OrderEvent, parent_item: str, cause: str) -> SyncJob:
    return SyncJob(
        JOB_SALE,
        SaleJob(child_shop, event, parent_item, cause),
        "inventory",
        lock_key=f"inventory:{parent_item}",
    )


def child_stock_job(
    child_shop: str,
    child_item: str,
    child_location: str,
    parent_item: str,
    cause: str,
    *,
    delay_s: float = 0.0,
    saga_id: str | None = None,
) -> SyncJob:
    """A child level's own move handled by its policy; a burst of moves collapses into one job
    (it reads the level when it runs), which takes the parent item's lock like its sales."""
    return SyncJob(
        JOB_CHILD_STOCK,
        ChildStockJob(child_shop, child_item, child_location, parent_item, cause, saga_id),
        "inventory",
        singleton_key=None if saga_id else f"child-stock:{child_shop}:{child_item}@{child_location}",
        lock_key=f"inventory:{parent_item}",
        delay_s=delay_s,
    )


def repair_job(repair: Repair, cause: str) -> SyncJob | None:
    """The live-sync job that carries out one reconciliation repair, in the backfill lane (live
    sync goes first; a live job with its singleton key keeps its own lane); None for a repair
    that is only reported (blocked)."""
    job: SyncJob | None
    if repair.kind in (RepairKind.RESYNC_PRODUCT, RepairKind.CREATE_PRODUCT, RepairKind.DELETE_PRODUCT):
        job = product_job(repair.child_shop, repair.parent_id, cause)
    elif repair.kind in (RepairKind.SYNC_COLLECTION, RepairKind.DELETE_COLLECTION):
        job = collection_job(repair.child_shop, repair.parent_id, cause)
    elif repair.kind is RepairKind.SET_INVENTORY and repair.parent_location_id:
        # The parent's level is read again when the job runs: the pass's reads are already old.
        job = fan_out_job(repair.parent_id, repair.parent_location_id, cause, only=repair.child_shop)
    else:
        job = None
    return replace(job, lane="backfill") if job else None


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


def route_order_event(
    network: MerchantNetwork, shop: str, event: OrderEvent | None, child_links: LinkMap | None, cause: str
) -> Routed:
    """One sale job per parent item the order's lines draw from (`event`: the order webhook's body
    as parsed once by `orders.order_event_from_webhook`; None for the parent's own orders)."""
    if shop == network.parent.shop:
        return Routed(ignored="the parent's own orders reach children through its level webhooks")
    if child_links is None or event is None:
        raise ValueError("a child's order webhook needs its event and that child's links")
    parts, unlinked = split_by_parent_item(event, child_links)
    jobs = [sale_job(shop, sub, item, cause) for item, sub in sorted(parts.items())]
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
    reassert_delay_s: float = REASSERT_DELAY_S,
) -> Routed:
    """What to do with a judged `inventory_levels/update` (see `services.sales.judge_level_delivery`);
    a child's move is looked at `reassert_delay_s` later (`STORESYNC_SYNC_REASSERT_DELAY_S`)."""
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
    if network.stock_policy(shop) == "report":
        return Routed([child_stock_job(shop, item, location, parent_item, cause, delay_s=reassert_delay_s)])
    return Routed(
        [
            fan_out_job(
                parent_item,
                parent_location,
                cause,
                only=shop,
                delay_s=reassert_delay_s,
                parent_unchanged=True,
            )
        ]
    )
