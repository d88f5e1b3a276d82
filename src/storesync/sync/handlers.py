"""The sync engine's job handlers: `registry`, the worker's default `--handlers`.

Webhook jobs (`webhook.<topic>`) only route (`routing.py`) and enqueue `sync.*` jobs; the sync
jobs call the domain with the Admin API adapters (`commerce.store_api.ShopifyStoreAPI`) and the
Postgres storage adapters (`store_pg.py`) on an autocommit pooled connection. Errors map to the
queue's classes: bad input or writes that would destroy data -> `PermanentError` (dead letter);
lost compare-and-set races, connection and 5xx faults -> retry. Commerce errors already carry
their class. A store that refuses the app is paused and the job parked (see `runtime.py`).

Periodic (the queue's scheduler, group `storesync`): `sync.reconcile_all` enqueues one
`sync.reconcile` per merchant; `sync.prune` deletes what is past its retention (deliveries, audit,
finished sagas, ledger, write records: `storesync.retention`). An order whose ledger entries were
pruned is not applied again by a late webhook about it. At worker start, `storesync worker` enqueues `sync.copy_product` resume jobs for
unfinished sagas (`enqueue_saga_resumes`); a saga job's lock key keeps it from running twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import Counter

from storesync.commerce.errors import CommerceError, PermanentCommerceError, StoreUnauthorized
from storesync.logs import get_logger
from storesync.queue.enqueue import JobSpec, Lane, enqueue_many, enqueue_many_async
from storesync.queue.handlers import HandlerRegistry, JobContext, PermanentError, RetryableError
from storesync.sync import routing
from storesync.sync.audit import delivery_cause, job_cause
from storesync.sync.catalog import (
    CatalogBlocked,
    CatalogError,
    PendingResolution,
    actual_view,
    created_webhook_describes_it,
    link_pending_copies,
    link_pending_copy,
    same_view,
    sync_product_to_child,
    variants_from_product_webhook,
)
from storesync.sync.conflicts import judge_level_delivery, level_from_webhook, version_of_delivery
from storesync.sync.inventory import (
    InventoryError,
    Outcome,
    SaleContext,
    StaleRetriesExhausted,
    apply_order_event,
    fan_out_level,
    order_event_from_webhook,
)
from storesync.sync.model import LinkKind, LinkMap, gid
from storesync.sync.network import MerchantNetwork, UnknownStore
from storesync.sync.runtime import (
    SerializedStorage,
    Storage,
    SyncRuntime,
    SyncSettings,
    child_links,
    job_storage,
    park_job,
    pause_store,
    paused_among,
    process_runtime,
)
from storesync.sync.saga import PermanentStepError, SagaConflict, SagaExecutor, SagaState, SagaStuck
from storesync.sync.saga_actions import SagaDeps, copy_product_actions, copy_product_steps
from storesync.sync.store_pg import order_pruned
from storesync.sync.wiring_sql import UNFINISHED_SAGAS

log = get_logger("storesync.sync.handlers")

JOB_COPY_PRODUCT = "sync.copy_product"
JOB_RECONCILE = "sync.reconcile"
JOB_RECONCILE_ALL = "sync.reconcile_all"
JOB_PRUNE_WRITES = "sync.prune_write_records"  # before `sync.prune`: queued ones still run
JOB_PRUNE = "sync.prune"
CHILD_EVENT_DEBOUNCE_S = 1.0  # a child's product events re-check the child this much later
RECHECK_CREATED_AFTER_S = 2.0  # a child's products/create with no link yet looks again this much later
SYSTEM_GROUP = "storesync"  # fairness group of network-wide periodic jobs

# Served by `storesync worker --metrics-port` (the process-wide registry).
TRIGGERED_AT_REFUSED = Counter(
    "storesync_sync_triggered_at_refused",
    "Level deliveries whose X-Shopify-Triggered-At lay outside the window around their signed "
    "updated_at (ignored: ordered by updated_at).",
)

registry = HandlerRegistry()
_sync_settings = SyncSettings.load()
registry.schedule(
    "sync.reconcile", JOB_RECONCILE_ALL, every_seconds=_sync_settings.reconcile_every_s, group=SYSTEM_GROUP
)
registry.schedule("sync.prune", JOB_PRUNE, every_seconds=_sync_settings.prune_every_s, group=SYSTEM_GROUP)

_PERMANENT_DOMAIN = (InventoryError, CatalogError, PermanentStepError, ValueError, KeyError, UnknownStore)


# --------------------------------------------------------------------------- plumbing


def job_specs(jobs: Iterable[routing.SyncJob], group: str) -> list[JobSpec]:
    now = datetime.now(UTC)
    return [
        JobSpec(
            j.kind,
            j.payload,
            group=group,
            lane=Lane[j.lane.upper()],
            singleton_key=j.singleton_key,
            lock_key=j.lock_key,
            run_at=now + timedelta(seconds=j.delay_s) if j.delay_s else None,
        )
        for j in jobs
    ]


async def enqueue_jobs(conn: psycopg.AsyncConnection, jobs: list[routing.SyncJob], group: str) -> None:
    if jobs:
        async with conn.transaction():
            await enqueue_many_async(conn, job_specs(jobs, group))


def _lookup(rt: SyncRuntime, shop: str):
    try:
        return rt.of_shop(shop)
    except UnknownStore as err:
        raise PermanentError(str(err)) from None


async def _guarded(
    ctx: JobContext, st: Storage, shops: Iterable[str], work: Callable[[], Awaitable[None]]
) -> None:
    """Run `work` unless one of `shops` is paused; a store refusing the app pauses it. Either
    way the job is parked, not failed; domain errors map to the queue's classes."""
    rt_settings = _sync_settings
    paused = await paused_among(st.conn, shops)
    shop = next(iter(paused), None)
    if shop is None:
        try:
            await work()
            return
        except StoreUnauthorized as err:
            shop = err.shop or next(iter(shops))
            await pause_store(st.conn, shop, err.pause_reason)
        except (PermanentError, RetryableError):
            raise
        except (StaleRetriesExhausted, SagaConflict) as err:
            raise RetryableError(str(err)) from err
        except _PERMANENT_DOMAIN as err:
            raise PermanentError(f"{type(err).__name__}: {err}") from err
    await park_job(
        st.conn,
        kind=ctx.kind,
        payload={k: v for k, v in ctx.payload.items() if k != "parked_for"},
        group=ctx.group,
        lane=ctx.lane,
        lock_key=ctx.lock_key,
        shop=shop,
        delay_s=rt_settings.pause_recheck_s,
    )


async def _child_maps_for_item(st: Storage, net: MerchantNetwork, parent_item: str) -> dict[str, LinkMap]:
    links = await st.links.links_for_parent_item(parent_item)
    return {c.shop: LinkMap(c.shop, [lk for lk in links if lk.child_shop == c.shop]) for c in net.children}


class _LevelReadOnce:
    """The parent store for one fan-out: its level is read once for all children (not once per
    child, on the parent's bucket and on the measured path of every sale)."""

    def __init__(self, api) -> None:
        self.api = api
        self.shop = api.shop
        self._reads: dict[tuple[str, str], asyncio.Task] = {}

    async def read_level(self, inventory_item_id: str, location_id: str):
        key = (inventory_item_id, location_id)
        if key not in self._reads:
            self._reads[key] = asyncio.ensure_future(self.api.read_level(inventory_item_id, location_id))
        return await asyncio.shield(self._reads[key])

    def __getattr__(self, name: str):
        return getattr(self.api, name)


async def _fan_out(
    ctx: JobContext,
    rt: SyncRuntime,
    st: Storage,
    net: MerchantNetwork,
    item: str,
    location: str,
    cause: str,
    only: list[str] | None,
    moved: Collection[str] = (),
) -> None:
    """Set every (or `only` these) active children to the parent's level; a paused child gets
    its own parked fan-out job so the others are not held back. `moved`: children whose level
    changed since the engine's last write (the seller), read before their compare-and-set."""
    targets = [c.shop for c in net.children if only is None or c.shop in only]
    paused = await paused_among(st.conn, targets)
    for shop in paused:
        job = routing.fan_out_job(item, location, cause, only=shop)
        await park_job(
            st.conn,
            kind=job.kind,
            payload=job.payload,
            group=net.merchant_id,
            lane=Lane.INVENTORY,
            lock_key=job.lock_key,
            shop=shop,
            delay_s=_sync_settings.pause_recheck_s,
        )
    active = [s for s in targets if s not in paused]
    if not active:
        return
    # One `fan_out_level` per child, all at once: each reads the parent's level and sets its
    # child; the store calls overlap, the few statements take turns on the job's connection.
    maps = await _child_maps_for_item(st, net, item)
    shared = SerializedStorage(st)
    parent = _LevelReadOnce(rt.api(net.parent.shop))
    per_child = await asyncio.gather(
        *(
            fan_out_level(
                net,
                parent,
                {shop: rt.api(shop)},
                maps,
                shared.writes,
                shared.audit,
                item,
                location,
                cause,
                only=[shop],
                moved=moved,
            )
            for shop in active
        ),
        return_exceptions=True,
    )
    failures = [r for r in per_child if isinstance(r, BaseException)]
    outcomes = [o for r in per_child if not isinstance(r, BaseException) for o in r]
    log.info(
        "level fanned out",
        item=item,
        location=location,
        results={o.shop: f"{o.result}:{o.before}->{o.after}" for o in outcomes},
    )
    if failures:
        raise failures[0]  # the job retries; children already set are unchanged on the rerun


async def _runtime(ctx: JobContext) -> SyncRuntime:
    return await process_runtime(ctx.settings, ctx.pool)


# --------------------------------------------------------------------------- webhook jobs (route only)


@registry.register("webhook.products_create")
@registry.register("webhook.products_update")
@registry.register("webhook.products_delete")
async def product_webhook(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, store = _lookup(rt, p["shop"])
    if store.role == "child" and p["topic"] == "products/create":
        # A product new in a child is either our own copy (a saga wrote it and its product link)
        # or a child-only product: neither has synced fields to revert, so no store is read. A
        # copy's variants are linked from the payload (its answer named the product only).
        await _link_created_copy(ctx, net, store.shop, p["body"], delivery_cause(p["delivery_id"]))
        return
    async with job_storage(ctx.pool) as st:
        links = None
        body = p["body"]
        product_id = gid("Product", body.get("admin_graphql_api_id") or body.get("id"))
        if store.role == "child":
            links = await child_links(st.conn, store.shop, products=[product_id])
        if store.role == "parent" and p["topic"] == "products/update":
            routed = await _route_parent_update(rt, st, net, product_id, delivery_cause(p["delivery_id"]))
        else:
            routed = routing.route_product_webhook(
                net, store.shop, body, links, delivery_cause(p["delivery_id"])
            )
        if routed.ignored:
            log.info("product webhook ignored", shop=store.shop, why=routed.ignored)
        if (
            store.role == "child"
            and routed.jobs
            and p["topic"] != "products/delete"
            and await _child_shows_last_write(rt, st, net, store.shop, product_id)
        ):
            # Our own writes and every stock move make the child send products/update: while
            # the child shows exactly the synced fields we last wrote, nothing was edited there
            # (a parent change has jobs of its own), so no job reads both stores for it.
            log.info("child product webhook reports nothing new", shop=store.shop, product=product_id)
            return
        if store.role == "child":
            # A child's event re-syncs a linked copy; it never (re)creates one: the link may be
            # gone because a saga compensated that very product. It waits a moment, so the burst
            # of products/update a child sends for our own writes (and its stock moves)
            # collapses into one job (singleton key), or into a parent-caused job already queued.
            for job in routed.jobs:
                job.payload["only_if_linked"] = True
            routed.jobs = [replace(j, delay_s=max(j.delay_s, CHILD_EVENT_DEBOUNCE_S)) for j in routed.jobs]
        await enqueue_jobs(st.conn, routed.jobs, net.merchant_id)


async def _link_created_copy(
    ctx: JobContext, net: MerchantNetwork, shop: str, body: dict, cause: str
) -> None:
    """Link a copy's variants from its products/create payload, with the echo records of the
    stock the copy wrote. A parent level that moved after the copy wrote it found no link to fan
    out to: those levels are fanned out to this child now.

    The webhook can outrun the copy: the store sends it while answering the create, before the
    copy has saved its product link. A product with no link is therefore looked at once more,
    `RECHECK_CREATED_AFTER_S` later (the same job again); then it is a child-only product."""
    product_id = gid("Product", body.get("admin_graphql_api_id") or body.get("id"))
    async with job_storage(ctx.pool) as st:
        links = await child_links(st.conn, shop, products=[product_id])
        link = links.link_up(LinkKind.PRODUCT, product_id)
        if link is None and not ctx.payload.get("rechecked"):
            await enqueue_many_async(
                st.conn,
                [
                    JobSpec(
                        ctx.kind,
                        {**ctx.payload, "rechecked": True},
                        group=net.merchant_id,
                        lane=Lane.CATALOG,
                        run_at=datetime.now(UTC) + timedelta(seconds=RECHECK_CREATED_AFTER_S),
                    )
                ],
            )
            return
        if link is None or link.pending is None:
            log.info(
                "child product created; nothing to link",
                shop=shop,
                product=product_id,
                why="a child-only product" if link is None else "linked already",
            )
            return
        if not created_webhook_describes_it(link.pending):
            # Sent again since: this payload's variants are gone. The resend's products/update
            # starts a product job, whose read links it (or the backfill's link job does).
            log.info(
                "copy rewritten since this create webhook; linked from a read", shop=shop, product=product_id
            )
            return
        resolution = await link_pending_copy(st.links, link, variants_from_product_webhook(body))
        if resolution is None:
            return  # another path linked them first
        if resolution.unmatched:
            log.warning(
                "copy's variants not all in its create webhook",
                shop=shop,
                product=product_id,
                parent_variants=resolution.unmatched,
            )
        await _fan_out_levels_moved_since_copy(st, net, shop, [resolution], cause)


async def _fan_out_levels_moved_since_copy(
    st: Storage, net: MerchantNetwork, shop: str, resolutions: Iterable[PendingResolution], cause: str
) -> None:
    """Copies just linked wrote the parent's levels as read then: a parent level that moved
    since (a newer version applied) found no link to fan out to. Fan those out to this child
    (every path that links a copy calls this)."""
    resolutions = list(resolutions)
    if not resolutions:
        return
    moved: set[tuple[str, str]] = set()
    for r in resolutions:
        levels = r.parent_levels(net.location_maps.get(shop, {}))
        if levels and r.levels_read_at is not None:
            moved.update(await st.versions.moved_since(net.parent.shop, levels, r.levels_read_at))
    log.info("copies' variants linked", shop=shop, levels_moved_since=len(moved))
    await enqueue_jobs(
        st.conn,
        [routing.fan_out_job(item, loc, cause, only=shop) for item, loc in sorted(moved)],
        net.merchant_id,
    )


async def _route_parent_update(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, product_id: str, cause: str
) -> routing.Routed:
    """A parent products/update starts product jobs only for the children whose copy was last
    given other synced fields than the parent has now (one read of the parent): the update
    Shopify sends for each stock move starts none. A store error reading the parent: every child."""
    try:
        parent = await rt.api(net.parent.shop).read_product(product_id)
    except CommerceError as err:
        log.info("parent product not read; every child's job decides", product=product_id, error=str(err))
        return routing.Routed([routing.product_job(c.shop, product_id, cause) for c in net.children])
    links = await st.links.product_fan_out_links(product_id, parent.collections) if parent else []
    return routing.route_parent_product_update(
        net, product_id, parent, links, rt.policy(net.merchant_id), cause
    )


async def _child_shows_last_write(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, shop: str, product_id: str
) -> bool:
    """Whether the child product shows exactly the synced fields the engine last wrote to it
    (the link's `synced_view`). One read of the child; any doubt (no record, a store error)
    answers False, and the product job decides as before."""
    links = await child_links(st.conn, shop, products=[product_id])
    link = next((lk for lk in links.links if lk.kind is LinkKind.PRODUCT and lk.child_id == product_id), None)
    if link is None or link.synced_view is None:
        return False
    try:
        child = await rt.api(shop).read_product(product_id)
    except CommerceError as err:
        log.info("child product not read; its job decides", shop=shop, product=product_id, error=str(err))
        return False
    if child is None:
        return False
    links = await child_links(
        st.conn,
        shop,
        products=[product_id],
        variants=[v.id for v in child.variants if v.id],
        collections=True,
    )
    return same_view(actual_view(child, rt.policy(net.merchant_id), links), link.synced_view)


@registry.register("webhook.orders_create")
@registry.register("webhook.orders_updated")
@registry.register("webhook.orders_cancelled")
@registry.register("webhook.orders_paid")
@registry.register("webhook.refunds_create")
async def order_webhook(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, store = _lookup(rt, p["shop"])
    async with job_storage(ctx.pool) as st:
        try:
            links = None
            if store.role == "child":
                event = order_event_from_webhook(store.shop, p["topic"], p["body"])
                if await order_pruned(st.conn, store.shop, event.order_id):
                    log.warning(
                        "webhook about an order older than the ledger's retention: not applied again",
                        shop=store.shop,
                        order=event.order_id,
                        delivery=p["delivery_id"],
                    )
                    return
                variants = [s.child_variant_id for s in event.sales]
                links = await child_links(st.conn, store.shop, variants=variants)
                if await _link_sold_copies(
                    rt, st, net, store.shop, event, links, delivery_cause(p["delivery_id"])
                ):
                    links = await child_links(st.conn, store.shop, variants=variants)
            routed = routing.route_order_webhook(
                net, store.shop, p["topic"], p["body"], links, delivery_cause(p["delivery_id"])
            )
        except (InventoryError, ValueError) as err:
            raise PermanentError(f"order webhook {p['delivery_id']}: {err}") from err
        if routed.unlinked:
            log.warning(
                "sold variants link to no parent item (run storesync link)",
                shop=store.shop,
                variants=routed.unlinked,
            )
        await enqueue_jobs(st.conn, routed.jobs, net.merchant_id)


async def _link_sold_copies(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, shop: str, event, links: LinkMap, cause: str
) -> bool:
    """A sale of a copy made moments ago, whose variants wait for the ids its create webhook
    brings: read those products and link their variants now (a sale is never left unapplied
    for want of a link), fanning out the parent levels that moved meanwhile. True when the sold
    products are copies: the caller reads the links again (linked here, or by another path
    since its first read). Store errors propagate: the order job retries."""
    products = {
        s.child_product_id
        for s in event.sales
        if s.child_product_id and links.parent_item_for_child_variant(s.child_variant_id) is None
    }
    if not products:
        return False
    copies = await child_links(st.conn, shop, products=sorted(products))
    if not any(lk.kind is LinkKind.PRODUCT for lk in copies.links):
        return False  # not copies: child-only products
    pending = [lk for lk in copies.links if lk.kind is LinkKind.PRODUCT and lk.pending is not None]
    read = [await rt.api(shop).read_product(lk.child_id) for lk in pending]
    linked = await link_pending_copies(st.links, copies, [p for p in read if p is not None])
    await _fan_out_levels_moved_since_copy(st, net, shop, linked.linked, cause)
    return True


@registry.register("webhook.inventory_levels_update")
async def level_webhook(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, store = _lookup(rt, p["shop"])
    try:
        report = level_from_webhook(p["body"])
        version = version_of_delivery(p, TRIGGERED_AT_REFUSED.inc)
    except ValueError as err:
        raise PermanentError(f"inventory level webhook {p['delivery_id']}: {err}") from err
    async with job_storage(ctx.pool) as st:
        links = None
        if store.role == "child":
            # A child level of an item linked to nothing is none of the engine's business (a
            # child-only product, or a copy whose variants are not linked yet: its links bring
            # the echo records): one lookup, nothing judged or recorded.
            links = await child_links(st.conn, store.shop, items=[report.inventory_item_id])
            if links.parent_item(report.inventory_item_id) is None:
                log.debug("level webhook of an unlinked item", shop=store.shop, item=report.inventory_item_id)
                return
        decision = await judge_level_delivery(
            shop=store.shop,
            role=store.role,
            inventory_item_id=report.inventory_item_id,
            location_id=report.location_id,
            available=report.available,
            version=version,
            versions=st.versions,
            writes=st.writes,
        )
        routed = routing.route_level_decision(
            net,
            store.shop,
            decision,
            item=report.inventory_item_id,
            location=report.location_id,
            child_links=links,
            cause=delivery_cause(p["delivery_id"]),
        )
        log.info(
            "level webhook judged",
            shop=store.shop,
            item=report.inventory_item_id,
            decision=str(decision),
            jobs=len(routed.jobs),
        )
        await enqueue_jobs(st.conn, routed.jobs, net.merchant_id)


@registry.register("webhook.inventory_levels_connect")
@registry.register("webhook.inventory_levels_disconnect")
async def not_synced_webhook(ctx: JobContext) -> None:
    """Level (dis)connections are not synced: levels travel with the parent's level webhooks.
    Recorded by the web tier, nothing to do. (Collections: `collection_handlers.py`.)"""


@registry.register("webhook.app_uninstalled")
async def app_uninstalled(ctx: JobContext) -> None:
    p = ctx.payload
    async with job_storage(ctx.pool) as st:
        await pause_store(st.conn, p["shop"], f"app uninstalled (webhook {p['delivery_id']})")


# --------------------------------------------------------------------------- sync jobs


@registry.register(routing.JOB_PRODUCT_TO_CHILD)
async def product_to_child(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, _ = _lookup(rt, p["child_shop"])
    cause = p.get("cause") or job_cause(ctx.job_id)

    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            if p.get("only_if_linked"):
                down = await st.links.links_down(LinkKind.PRODUCT, p["parent_product_id"])
                if not any(lk.child_shop == p["child_shop"] for lk in down):
                    log.info(
                        "product no longer linked; not re-created",
                        child=p["child_shop"],
                        product=p["parent_product_id"],
                    )
                    return
                saga = await st.steps.load(f"copy:{p['child_shop']}:{p['parent_product_id']}")
                if saga is not None and saga.state in (SagaState.RUNNING, SagaState.COMPENSATING):
                    log.info(
                        "product is being copied; its saga writes it",
                        child=p["child_shop"],
                        product=p["parent_product_id"],
                    )
                    return
            try:
                plan = await sync_product_to_child(
                    rt.api(net.parent.shop),
                    rt.api(p["child_shop"]),
                    p["parent_product_id"],
                    st.links,
                    rt.policy(net.merchant_id),
                    st.audit,
                    cause,
                    on_copy_linked=lambda copies: _fan_out_levels_moved_since_copy(
                        st, net, p["child_shop"], copies.linked, cause
                    ),
                )
            except CatalogBlocked as err:
                raise PermanentError(f"{p['child_shop']}: {err}") from err
            log.info(
                "product synced",
                child=p["child_shop"],
                product=p["parent_product_id"],
                result="deleted" if plan is None else ("noop" if plan.noop else "written"),
            )
            if plan is not None and plan.created_variants:
                await _stock_new_variants(st, net, p["child_shop"], plan.created_variants, cause)

        await _guarded(ctx, st, [net.parent.shop, p["child_shop"]], work)


@registry.register(routing.JOB_SALE)
async def sale(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, _ = _lookup(rt, p["child_shop"])
    cause = p.get("cause") or job_cause(ctx.job_id)
    event = routing.order_event_from_payload(p["event"])

    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            links = await child_links(
                st.conn, p["child_shop"], variants=[s.child_variant_id for s in event.sales]
            )
            sctx = SaleContext(net, links, st.ledger, rt.api(net.parent.shop), st.writes, st.audit)
            outcomes = await apply_order_event(sctx, event, cause)
            for o in outcomes:
                if o.outcome in (Outcome.UNLINKED, Outcome.NO_LOCATION):
                    log.warning(
                        "sale line not applied",
                        child=p["child_shop"],
                        line=o.key.order_line_id,
                        outcome=str(o.outcome),
                    )
                elif o.oversold:
                    log.warning("oversold", child=p["child_shop"], item=o.parent_item_id, units=o.oversold)
            for item, loc in sorted(
                {
                    (o.parent_item_id, o.parent_location_id)
                    for o in outcomes
                    if o.parent_item_id and o.parent_location_id
                }
            ):
                await _fan_out(ctx, rt, st, net, item, loc, cause, None, moved={p["child_shop"]})

        await _guarded(ctx, st, [net.parent.shop], work)


@registry.register(routing.JOB_FAN_OUT_LEVEL)
async def fan_out(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net = rt.merchant(ctx.group)
    cause = p.get("cause") or job_cause(ctx.job_id)
    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            level = await rt.api(net.parent.shop).read_level(p["parent_item"], p["parent_location"])
            if level is None:  # e.g. a new variant the parent does not stock at this location
                log.info(
                    "parent does not stock the item there; nothing to fan out",
                    item=p["parent_item"],
                    location=p["parent_location"],
                )
                return
            await _fan_out(ctx, rt, st, net, p["parent_item"], p["parent_location"], cause, p.get("only"))

        await _guarded(ctx, st, [net.parent.shop], work)


async def _stock_new_variants(
    st: Storage, net: MerchantNetwork, child_shop: str, parent_variants, cause: str
) -> None:
    """Variants just created in a child start with no stock: fan the parent's level out to them
    (the parent's own level webhooks may have come before the link existed)."""
    jobs = []
    for variant_id in parent_variants:
        for link in await st.links.links_down(LinkKind.VARIANT, variant_id):
            if link.child_shop == child_shop and link.parent_inventory_item_id:
                jobs += [
                    routing.fan_out_job(link.parent_inventory_item_id, parent_loc, cause, only=child_shop)
                    for parent_loc in net.location_maps.get(child_shop, {})
                ]
    await enqueue_jobs(st.conn, jobs, net.merchant_id)


def copy_job(
    net: MerchantNetwork,
    saga_id: str,
    parent_product_id: str | None,
    child_shop: str,
    cause: str,
    max_attempts: int,
) -> JobSpec:
    """A copy-product saga as a job (or, without a product, the resumption of an existing saga)."""
    payload = {"saga_id": saga_id, "child_shop": child_shop, "cause": cause, "max_attempts": max_attempts}
    if parent_product_id:
        payload["parent_product_id"] = parent_product_id
    return JobSpec(
        JOB_COPY_PRODUCT,
        payload,
        group=net.merchant_id,
        lane=Lane.BACKFILL,
        singleton_key=f"saga:{saga_id}",
        lock_key=f"saga:{saga_id}",
        max_attempts=max_attempts,
    )


async def run_copy_saga(
    rt: SyncRuntime,
    st: Storage,
    net: MerchantNetwork,
    saga_id: str,
    parent_product_id: str | None,
    child_shop: str,
    cause: str,
    *,
    final_attempt: bool,
    parent_api=None,
    levels_read_at: datetime | None = None,
):
    """Drive one copy-product saga to its end. A step failing permanently - or with a retryable
    error on the final attempt - compensates the steps done, in reverse."""

    def is_permanent(exc: BaseException) -> bool:
        if isinstance(exc, StoreUnauthorized):
            return False  # the store gets paused; the saga resumes once it is back
        if isinstance(exc, (PermanentStepError, PermanentError, PermanentCommerceError, *_PERMANENT_DOMAIN)):
            return True
        # A store still failing after the last retry: undo. Our own infrastructure failing
        # (database, pool) is not the store's fault: the saga stays resumable.
        return final_attempt and isinstance(exc, CommerceError)

    stores = rt.apis(net)
    if parent_api is not None:  # e.g. the backfill's scanned parent (`shopify_adapter.ScannedParent`)
        stores = {**stores, net.parent.shop: parent_api}
    deps = SagaDeps(net, stores, st.links, st.writes, st.audit, rt.policy(net.merchant_id), levels_read_at)
    executor = SagaExecutor(st.steps, copy_product_actions(deps), st.audit, is_permanent=is_permanent)
    if parent_product_id:
        return await executor.start(
            saga_id,
            "copy_product",
            child_shop,
            cause,
            copy_product_steps(parent_product_id, child_shop, stock_in_create=True),
        )
    return await executor.run(saga_id)


JOB_LINK_PENDING_COPIES = "sync.link_pending_copies"
# More pending copies than this in one child are read with one bulk query instead of one read each.
BULK_READ_PENDING_FROM = 20


def link_pending_job(
    net: MerchantNetwork, child_shop: str, cause: str, delay_s: float, written_before: datetime
) -> JobSpec:
    """Link, `delay_s` from now, the child's copies made before `written_before` whose create
    webhook has not linked them by then."""
    payload = {"child_shop": child_shop, "cause": cause, "written_before": written_before.isoformat()}
    return JobSpec(
        JOB_LINK_PENDING_COPIES,
        payload,
        group=net.merchant_id,
        lane=Lane.BACKFILL,
        singleton_key=f"link-pending:{child_shop}",
        lock_key=f"link-pending:{child_shop}",
        run_at=datetime.now(UTC) + timedelta(seconds=delay_s) if delay_s else None,
    )


@registry.register(JOB_LINK_PENDING_COPIES)
async def link_pending_copies_job(ctx: JobContext) -> None:
    """The copies of one child whose variants are still not linked a while after the copy (their
    products/create webhook was lost): read them and link them, fanning out the parent levels
    that moved since (`storesync backfill` enqueues it at its end)."""
    p = ctx.payload
    rt = await _runtime(ctx)
    net, _ = _lookup(rt, p["child_shop"])
    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            await link_overdue_copies(
                rt,
                st,
                net,
                p["child_shop"],
                p.get("cause") or job_cause(ctx.job_id),
                written_before=datetime.fromisoformat(p["written_before"]),
            )

        await _guarded(ctx, st, [p["child_shop"]], work)


async def link_overdue_copies(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, shop: str, cause: str, *, written_before: datetime
) -> int:
    """Read and link the child's copies made before `written_before` that are still pending;
    returns how many it linked. Store errors propagate (the job retries)."""
    overdue = [
        lk
        for lk in await st.links.pending_links(shop)
        if lk.pending and datetime.fromisoformat(lk.pending["written_at"]) <= written_before
    ]
    if not overdue:
        return 0
    api = rt.api(shop)
    if len(overdue) > BULK_READ_PENDING_FROM:
        from storesync.sync.shopify_adapter import BulkCatalogScan

        products = await BulkCatalogScan(api).products()
    else:
        products = [p for lk in overdue if (p := await api.read_product(lk.child_id)) is not None]
    by_id = {p.id: p for p in products if p.id}
    resolutions = [
        r
        for lk in overdue
        if lk.child_id in by_id
        and (r := await link_pending_copy(st.links, lk, by_id[lk.child_id].variants)) is not None
    ]
    gone = [lk.child_id for lk in overdue if lk.child_id not in by_id]
    if gone:  # deleted in the child meanwhile: the product job or reconcile makes them again
        log.warning("pending copies no longer in the child", shop=shop, products=gone)
    await _fan_out_levels_moved_since_copy(st, net, shop, resolutions, cause)
    log.info("overdue copies linked", shop=shop, copies=len(resolutions), overdue=len(overdue))
    return len(resolutions)


@registry.register(JOB_COPY_PRODUCT)
async def copy_product(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, _ = _lookup(rt, p["child_shop"])
    final = ctx.attempt >= int(p.get("max_attempts", 10))
    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            try:
                rec = await run_copy_saga(
                    rt,
                    st,
                    net,
                    p["saga_id"],
                    p.get("parent_product_id"),
                    p["child_shop"],
                    p.get("cause") or job_cause(ctx.job_id),
                    final_attempt=final,
                )
            except SagaStuck as err:
                raise PermanentError(f"saga {p['saga_id']} is stuck: {err}") from err
            if rec.state is SagaState.COMPENSATED:
                raise PermanentError(f"saga {p['saga_id']} failed and was compensated: {rec.error}")

        await _guarded(ctx, st, [net.parent.shop, p["child_shop"]], work)


@registry.register(JOB_RECONCILE_ALL)
async def reconcile_all(ctx: JobContext) -> None:
    rt = await _runtime(ctx)
    async with job_storage(ctx.pool) as st, st.conn.transaction():
        await enqueue_many_async(
            st.conn,
            [
                JobSpec(
                    JOB_RECONCILE,
                    {"merchant_id": m.merchant_id},
                    group=m.merchant_id,
                    lane=Lane.BACKFILL,
                    singleton_key=f"reconcile:{m.merchant_id}",
                    lock_key=f"reconcile:{m.merchant_id}",
                )
                for m in rt.network.merchants
            ],
        )


@registry.register(JOB_RECONCILE)
async def reconcile(ctx: JobContext) -> None:
    from storesync.sync.commands import reconcile_merchant

    rt = await _runtime(ctx)
    net = rt.merchant(ctx.payload.get("merchant_id") or ctx.group)
    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            result = await reconcile_merchant(rt, st, net, f"reconcile:job:{ctx.job_id}")
            for line in result.lines():
                log.info("reconcile", merchant=net.merchant_id, line=line)

        await _guarded(ctx, st, [net.parent.shop], work)


@registry.register(JOB_PRUNE)
@registry.register(JOB_PRUNE_WRITES)
async def prune_old_rows(ctx: JobContext) -> None:
    """Everything past its retention, in short batches (jobs: the queue's scheduler prunes them)."""
    from storesync.retention import prune

    async with job_storage(ctx.pool) as st:
        report = await prune(st.conn, include_jobs=False)
    for table in report:
        if table.deleted:
            log.info("pruned", table=table.table, rows=table.deleted, kept_for=table.kept_for)


# --------------------------------------------------------------------------- worker start


def enqueue_saga_resumes(conn: psycopg.Connection, network_cfg, *, limit: int = 1000) -> int:
    """At worker start: one resume job per unfinished saga (a crash mid-saga continues forward
    or backward). Collapses into a queued copy job of the same saga; its lock key keeps it from
    overlapping a running one."""
    from storesync.sync.network import Network

    net = Network.from_config(network_cfg)
    specs = []
    for saga_id, shop in conn.execute(UNFINISHED_SAGAS, {"limit": limit}).fetchall():
        try:
            m, _ = net.of_shop(shop)
        except UnknownStore:
            continue
        specs.append(
            copy_job(m, saga_id, None, shop, f"resume:{saga_id}", _sync_settings.backfill_max_attempts)
        )
    if specs:
        with conn.transaction():
            enqueue_many(conn, specs)
    return len(specs)


# Collection objects' handlers register on `registry` (their own module; imported last because
# it uses this module's plumbing).
from storesync.sync import collection_handlers as _collection_handlers  # noqa: E402,F401
