"""Webhook jobs (`webhook.<topic>`, one per recorded delivery): they only route. Each reads the
few links it needs, asks the domain which sync jobs the delivery means (`domain/routing.py`) and
enqueues them; the sync jobs (`catalog.py`, `inventory.py`, `copies.py`) do the writes. Which
topic runs which handler: `domain/topics.py` (the family) and `registry.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import Counter

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage, order_pruned, pause_store
from storesync.sync.domain.audit import delivery_cause
from storesync.sync.domain.conflicts import level_from_webhook, version_of_delivery
from storesync.sync.domain.echoes import is_publication_change, is_stock_move, product_digest
from storesync.sync.domain.health import webhook_change
from storesync.sync.domain.model import LinkKind, gid
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.orders import order_id_of
from storesync.sync.domain.payloads import WebhookJob
from storesync.sync.domain.routing import (
    CHILD_EVENT_DEBOUNCE_S,
    RECHECK_CREATED_AFTER_S,
    SyncJob,
    route_collection_webhook,
    route_level_decision,
    route_product_webhook,
)
from storesync.sync.jobs.context import Job
from storesync.sync.services import catalog, collections, copies, locations, orders, sales

log = get_logger("storesync.sync.jobs")

# Served by `storesync worker --metrics-port` (the process-wide registry).
TRIGGERED_AT_REFUSED = Counter(
    "storesync_sync_triggered_at_refused",
    "Level deliveries whose X-Shopify-Triggered-At lay outside the window around their signed "
    "updated_at (ignored: ordered by updated_at).",
)


async def enqueue_routed(st: Storage, net: MerchantNetwork, p: WebhookJob, jobs: Sequence[SyncJob]) -> None:
    """Enqueue the jobs a delivery routed; when there are any, its change is tracked first
    (`sync_changes`: its writes, carrying its cause, measure how long it took to propagate)."""
    if jobs:
        await st.changes.start(
            webhook_change(
                p.delivery_id,
                net.merchant_id,
                p.shop,
                p.topic,
                p.triggered_at,
                p.received_at,
                datetime.now(UTC),
            )
        )
    await enqueue_jobs(st.conn, jobs, net.merchant_id)


def _product_id(p: WebhookJob) -> str:
    return gid("Product", p.body.get("admin_graphql_api_id") or p.body.get("id"))


async def product_webhook(job: Job, p: WebhookJob) -> None:
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    cause = delivery_cause(p.delivery_id)
    if store.role == "child" and p.topic == "products/create":
        # A product new in a child is either our own copy (a saga wrote it and its product link)
        # or a child-only product: neither has synced fields to revert, so no store is read. A
        # copy's variants are linked from the payload (its answer named the product only).
        async with job.storage() as st:
            # Its payload is what the next products/update is compared with (a copy's own
            # publishing then sends one that shows only that: `is_publication_change`).
            await st.product_payloads.swap(store.shop, _product_id(p), product_digest(p.body))
            if not await copies.link_created_copy(st, net, store.shop, p.body, cause, rechecked=p.rechecked):
                # The webhook can outrun the copy's saving of its link: look once more, later.
                again = SyncJob(
                    job.ctx.kind, replace(p, rechecked=True), "catalog", delay_s=RECHECK_CREATED_AFTER_S
                )
                await enqueue_jobs(st.conn, [again], net.merchant_id)
        return
    async with job.storage() as st:
        links = None
        product_id = _product_id(p)
        published_only = False
        if p.topic in ("products/create", "products/update"):
            # Most products/update are stock moves (every level write of ours makes one): one
            # that shows nothing else new is neither read back nor starts a job.
            digest = product_digest(p.body)
            previous = await st.product_payloads.swap(store.shop, product_id, digest)
            if p.topic == "products/update" and is_stock_move(previous, digest):
                log.debug("product webhook reports a stock move", shop=store.shop, product=product_id)
                return
            # Nor one that shows only a publish (a copy's own, its saga's last step): channels
            # are set when a copy is made, never synced afterwards. A pending copy is still
            # linked from it below.
            published_only = p.topic == "products/update" and is_publication_change(previous, digest)
        if store.role == "child":
            links = await st.links.child_links(store.shop, products=[product_id])
            copy = links.link_up(LinkKind.PRODUCT, product_id)
            if (
                p.topic == "products/update"
                and copy is not None
                and copy.pending is not None
                and await copies.link_updated_copy(st, net, store.shop, copy, p.body, cause)
            ):
                # A copy made moments ago (its saga's media and publishing send this): linked
                # from the payload, nothing read, no job.
                log.info("copy linked from its update webhook", shop=store.shop, product=product_id)
                return
        if published_only:
            log.debug("product webhook reports a publish", shop=store.shop, product=product_id)
            return
        if store.role == "parent" and p.topic == "products/update":
            routed = await catalog.route_parent_update(rt, st, net, product_id, cause)
        else:
            routed = route_product_webhook(net, store.shop, p.body, links, cause)
        if routed.ignored:
            log.info("product webhook ignored", shop=store.shop, why=routed.ignored)
        if (
            store.role == "child"
            and routed.jobs
            and p.topic != "products/delete"
            and await catalog.child_shows_last_write(rt, st, net, store.shop, product_id)
        ):
            # Our own writes and every stock move make the child send products/update: while
            # the child shows exactly the synced fields we last wrote, nothing was edited there
            # (a parent change has jobs of its own), so no job reads both stores for it.
            log.info("child product webhook reports nothing new", shop=store.shop, product=product_id)
            return
        jobs = routed.jobs
        if store.role == "child":
            # A child's event re-syncs a linked copy; it never (re)creates one: the link may be
            # gone because a saga compensated that very product. It waits a moment, so the burst
            # of products/update a child sends for our own writes (and its stock moves)
            # collapses into one job (singleton key), or into a parent-caused job already queued.
            jobs = [
                replace(
                    j,
                    payload=replace(j.payload, only_if_linked=True),
                    delay_s=max(j.delay_s, CHILD_EVENT_DEBOUNCE_S),
                )
                for j in jobs
            ]
        await enqueue_routed(st, net, p, jobs)


async def collection_webhook(job: Job, p: WebhookJob) -> None:
    """A parent's event becomes one `sync.collection_to_child` per child; a child's event about a
    linked collection re-syncs that one, unless the child shows exactly the synced fields last
    written (our own write, or a membership change: memberships travel with the product jobs),
    a moment later so a burst collapses."""
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    async with job.storage() as st:
        link = None
        if store.role == "child":
            collection_id = gid("Collection", p.body.get("admin_graphql_api_id") or p.body.get("id"))
            found = await st.links.links_of(store.shop, LinkKind.COLLECTION, child_ids=[collection_id])
            link = found[0] if found else None
        routed = route_collection_webhook(
            net, store.shop, p.topic, p.body, link, delivery_cause(p.delivery_id)
        )
        if routed.ignored:
            log.info("collection webhook ignored", shop=store.shop, why=routed.ignored)
            return
        jobs = routed.jobs
        if store.role == "child" and link is not None:
            if p.topic == "collections/update" and await collections.child_shows_last_write(
                rt, store.shop, link
            ):
                log.info(
                    "child collection webhook reports nothing new", shop=store.shop, collection=link.child_id
                )
                return
            jobs = [replace(j, delay_s=max(j.delay_s, CHILD_EVENT_DEBOUNCE_S)) for j in jobs]
        await enqueue_routed(st, net, p, jobs)


async def order_webhook(job: Job, p: WebhookJob) -> None:
    """A child's order, refund, order edit or return: one sale job per parent item whose
    movements the ledger lacks (`services/orders.py`: the body parsed once here, the order read
    when the body lacks where its stock moved). A bad body is dead-lettered. An order whose
    ledger entries retention pruned is not applied again by a late webhook about it."""
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    cause = delivery_cause(p.delivery_id)
    if store.role != "child":
        log.info("the parent's own orders reach children through its level webhooks", shop=store.shop)
        return
    async with job.storage() as st:
        if await order_pruned(st.conn, store.shop, order_id_of(p.topic, p.body)):
            log.warning(
                "webhook about an order older than the ledger's retention: not applied again",
                shop=store.shop,
                order=order_id_of(p.topic, p.body),
                delivery=p.delivery_id,
            )
            return

        async def work() -> None:
            event, state = await orders.webhook_event(rt, st, store.shop, p.topic, p.body)
            if event is None:
                return
            routed = await orders.route_order(rt, st, net, store.shop, event, state, cause)
            if routed.unlinked:
                log.warning(
                    "sold variants link to no parent item (run storesync link)",
                    shop=store.shop,
                    variants=routed.unlinked,
                )
            if routed.ignored:
                log.info("order webhook applies nothing new", shop=store.shop, why=routed.ignored)
            await enqueue_routed(st, net, p, routed.jobs)

        await job.guarded(st, [store.shop], work)


async def level_webhook(job: Job, p: WebhookJob) -> None:
    """An `inventory_levels/update`, judged (stale, echo, the parent's change to fan out, a
    child's own move to set back) and routed."""
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    report = level_from_webhook(p.body)
    version = version_of_delivery(
        {
            "triggered_at": p.triggered_at,
            "event_id": p.event_id,
            "delivery_id": p.delivery_id,
            "body": p.body,
        },
        TRIGGERED_AT_REFUSED.inc,
    )
    async with job.storage() as st:
        links = None
        if store.role == "child":
            # A child level of an item linked to nothing is none of the engine's business (a
            # child-only product, or a copy whose variants are not linked yet: its links bring
            # the echo records): one lookup, nothing judged or recorded.
            links = await st.links.child_links(store.shop, items=[report.inventory_item_id])
            if links.parent_item(report.inventory_item_id) is None:
                log.debug("level webhook of an unlinked item", shop=store.shop, item=report.inventory_item_id)
                return
        decision = await sales.judge_level_delivery(
            shop=store.shop,
            role=store.role,
            inventory_item_id=report.inventory_item_id,
            location_id=report.location_id,
            available=report.available,
            version=version,
            versions=st.versions,
            writes=st.writes,
        )
        routed = route_level_decision(
            net,
            store.shop,
            decision,
            item=report.inventory_item_id,
            location=report.location_id,
            child_links=links,
            cause=delivery_cause(p.delivery_id),
            reassert_delay_s=job.settings.reassert_delay_s,
        )
        log.info(
            "level webhook judged",
            shop=store.shop,
            item=report.inventory_item_id,
            decision=str(decision),
            jobs=len(routed.jobs),
        )
        await enqueue_routed(st, net, p, routed.jobs)


async def not_synced_webhook(job: Job, p: WebhookJob) -> None:
    """Recorded by the web tier, nothing to do."""


async def level_connection_webhook(job: Job, p: WebhookJob) -> None:
    """`inventory_levels/connect|disconnect`: an item stocked at, or removed from, a location. A
    linked item removed from a mapped location is not written there any more (reported), until
    it is stocked there again (then set from the parent)."""
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    async with job.storage() as st:
        await locations.level_connection_changed(
            st, net, store.shop, p.topic, p.body, delivery_cause(p.delivery_id)
        )


async def location_webhook(job: Job, p: WebhookJob) -> None:
    """`locations/activate|deactivate`: a mapped location deactivated or gone is reported
    and no longer written (sales waiting for it are parked); reactivated, they run again and the
    merchant is reconciled."""
    rt = await job.runtime()
    net, store = rt.of_shop(p.shop)
    async with job.storage() as st:
        await locations.location_changed(st, net, store.shop, p.topic, p.body, delivery_cause(p.delivery_id))


async def app_uninstalled(job: Job, p: WebhookJob) -> None:
    async with job.storage() as st:
        await pause_store(st.conn, p.shop, f"app uninstalled (webhook {p.delivery_id})")
