"""Reconciliation: what was sold, then what is stocked and listed, through the same code as live
sync (`storesync reconcile`, the periodic job), or, as a dry run, only the report of the drift.

1. Sales (`reconcile_sales`): each active child's orders updated since its checkpoint (minus an
   overlap, `ORDERS_OVERLAP`) are read by one bulk query per child (`orders_updated_since`: a
   few points whatever the number of orders or the overlap, outside the rate limit, so the pass
   never holds up live sync; only refunds' lines and returns' dispositions are read by id) and
   compared with the ledger through the one path every
   order webhook takes (`services/orders.py`: the same events, the same keys); whatever the
   ledger lacks (a dropped orders/create or refunds/create, an edit, a return) is enqueued as
   the item's sale jobs, which apply it once. When they have run, each child whose jobs all
   succeeded gets its checkpoint moved to the start of the read. (Not in a dry run.)
2. Catalog, collections and levels (`reconcile_merchant`): the repairs `domain/reconcile.py`
   lists. A child level that differs from the parent's once every order is applied is a move
   no order explains: handled by the child's stock policy (`services/stock.py`: set back to
   the parent's level, or reported to the parent), never silently overwritten, and printed.

The stores are read with bulk queries (`adapters.shopify.BulkCatalogScan`: a few points per
store whatever the catalog, outside the rate limit). The periodic pass (`reconcile_pass`) is
incremental (`since`: the products updated since the last pass, against what each child was
last given; levels are always read whole) or, once a day, full; it enqueues each catalog and
collection repair as the live-sync job that makes it, in the backfill lane (`routing.repair_job`).

Each run is recorded (`sync_reconcile_runs`: what each store's drift was and what was repaired)
for the dashboard and the metrics.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs, job_states
from storesync.sync.adapters.postgres import (
    Storage,
    job_storage,
    last_reconcile_pass,
    record_reconcile_pass,
    record_reconcile_run,
)
from storesync.sync.adapters.shopify import ScannedParent
from storesync.sync.domain.catalog import CatalogError, NeedsCopy, SyncPolicy
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.orders import order_event_from_graphql
from storesync.sync.domain.ports import (
    ArchivedCopies,
    AttentionLog,
    AuditSink,
    CatalogScan,
    CatalogStore,
    CollectionStore,
    LinkRepository,
    StoreAPI,
    WriteRecords,
)
from storesync.sync.domain.reconcile import (
    ReconcileReport,
    Repair,
    RepairKind,
    diff_catalog,
    diff_changed_products,
    diff_collections,
    diff_inventory,
)
from storesync.sync.domain.routing import SyncJob, child_stock_job, repair_job
from storesync.sync.domain.saga import handle_conflicted
from storesync.sync.services.catalog import sync_product_to_child
from storesync.sync.services.channels import collection_publisher
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import copy_to_child, link_pending_copies
from storesync.sync.services.orders import orders_states, route_order
from storesync.sync.services.sales import push_level
from storesync.sync.services.stock import check_child_level
from storesync.sync.services.stores import merchants, remember_read_products, without_paused

log = get_logger("storesync.sync.reconcile")

# Orders updated this long before a child's checkpoint are read again: Shopify's order search
# lags a little behind its writes, and a clock apart from ours by less than this loses nothing.
ORDERS_OVERLAP = timedelta(minutes=5)
# Orders compared with the ledger per statement.
ORDERS_BATCH = 25

# In the process that reconciles (a worker publishes it with its heartbeat).
REPAIRS = Counter(
    "storesync_sync_reconcile_repairs",
    "Drift repaired by reconciliation, by store and kind of repair (a dropped webhook, an edit "
    "made while the engine was down).",
    ["shop", "kind"],
)


async def reconcile_network(
    network: MerchantNetwork,
    scans: Mapping[str, CatalogScan],
    links_repo: LinkRepository,
    policy: SyncPolicy,
    collection_stores: Mapping[str, CollectionStore] | None = None,
    *,
    incremental: bool = False,
    dry_run: bool = False,
) -> ReconcileReport:
    """Read every store of a merchant and list the repairs (`storesync reconcile`; then
    `apply_repairs`). scans: shop -> `ports.CatalogScan`; links_repo: `ports.LinkRepository`;
    collection_stores: shop -> a store with `all_collections()` of full `Collection`s
    (`adapters.shopify.ShopifyCollections`); without them collections are not compared.
    `incremental`: the scans' products are those updated since the last pass
    (`domain.reconcile.diff_changed_products`).
    `dry_run`: store nothing (copies whose variants are not linked yet stay so)."""
    report = ReconcileReport()
    parent_scan = scans[network.parent.shop]
    parent_products = [p async for p in parent_scan.all_products()]
    maps = {c.shop: await links_repo.link_map(c.shop) for c in network.children}
    children = {c.shop: [p async for p in scans[c.shop].all_products()] for c in network.children}
    # Copies whose variants' ids never arrived (a lost create webhook); the parent levels that
    # moved while they were pending are among the inventory drift diffed below.
    for c in () if dry_run else network.children:
        if (await link_pending_copies(links_repo, maps[c.shop], children[c.shop])).pending:
            maps[c.shop] = await links_repo.link_map(c.shop)
    # The comparisons are plain CPU work over the whole catalog (seconds at 10,000 products x 3
    # children): run in a thread, the worker's event loop keeps renewing its runs' leases and
    # running live jobs meanwhile (in the loop, the pass lost its lease and started over).
    if incremental:
        await asyncio.to_thread(diff_changed_products, parent_products, children, maps, policy, report)
    else:
        await asyncio.to_thread(diff_catalog, parent_products, children, maps, policy, report)
        for shop, views in () if dry_run else report.views_found.items():
            await links_repo.set_synced_views(shop, views)
    if collection_stores is not None:
        parent_collections = [c async for c in collection_stores[network.parent.shop].all_collections()]
        child_collections = {
            c.shop: [x async for x in collection_stores[c.shop].all_collections()] for c in network.children
        }
        await asyncio.to_thread(diff_collections, parent_collections, child_collections, maps, report)
    parent_locations = sorted({p for m in network.location_maps.values() for p in m})
    parent_levels = await parent_scan.all_levels(parent_locations)
    child_levels = {
        c.shop: await scans[c.shop].all_levels(sorted(network.location_maps.get(c.shop, {}).values()))
        for c in network.children
    }
    await asyncio.to_thread(diff_inventory, network, parent_levels, child_levels, maps, report)
    return report


async def apply_repairs(
    repairs: Sequence[Repair],
    *,
    parent_store: CatalogStore,
    stores: Mapping[str, StoreAPI],
    links_repo: LinkRepository,
    writes: WriteRecords,
    audit: AuditSink,
    policy: SyncPolicy,
    cause: str,
    collection_stores: Mapping[str, CollectionStore] | None = None,
    copy_product: Callable[[str, str], Awaitable[str | None]] | None = None,
    publisher: Callable[[str, str], Callable[[str], Awaitable[None]]] | None = None,
    attention: AttentionLog | None = None,
    archived: ArchivedCopies | None = None,
) -> tuple[list[Repair], list[Repair]]:
    """Carry out repairs through the same code as live sync (stores: `ports.StoreAPI` per child
    shop; collection_stores: `ports.CollectionStore` per shop, parent included; copy_product:
    (child shop, parent product) -> the copy saga, for a product a child has no copy of, answering
    why it made none (None: made);
    publisher: (child shop, parent collection) -> what publishes a collection made there).
    Returns (fixed, not fixed); BLOCKED ones are never written, only reported. Collections are
    repaired first, so that products re-synced after them carry the memberships."""
    fixed: list[Repair] = []
    left: list[Repair] = []

    async def product(shop: str, parent_id: str) -> str | None:
        """Why the product is not repaired (None: it is)."""
        try:
            await sync_product_to_child(
                parent_store,
                stores[shop],
                parent_id,
                links_repo,
                policy,
                audit,
                cause,
                attention=attention,
                archived=archived,
            )
        except NeedsCopy:
            if copy_product is None:
                return "no copy, and no copy saga to make one"
            try:
                return await copy_product(shop, parent_id)
            except CatalogError as err:  # compensated: reported in the saga's audit
                log.warning("reconcile: copy failed", shop=shop, product=parent_id, error=str(err))
                return str(err)
        return None

    collection_kinds = (RepairKind.SYNC_COLLECTION, RepairKind.DELETE_COLLECTION)
    resynced: set[tuple[str, str]] = set()
    for r in sorted(repairs, key=lambda r: r.kind not in collection_kinds):
        if r.kind in (RepairKind.BLOCKED_PRODUCT, RepairKind.BLOCKED_COLLECTION):
            left.append(r)
        elif r.kind in collection_kinds:
            if collection_stores is None:
                left.append(r)
                continue
            outcome = await sync_collection_to_child(
                collection_stores[parent_store.shop],
                collection_stores[r.child_shop],
                r.parent_id,
                links_repo,
                audit,
                cause,
                on_created=publisher(r.child_shop, r.parent_id) if publisher else None,
            )
            for product_id in outcome.resync_products:  # copies to move into or out of it
                if (r.child_shop, product_id) not in resynced:
                    resynced.add((r.child_shop, product_id))
                    await product(r.child_shop, product_id)
            fixed.append(r)
        elif r.kind is RepairKind.SET_INVENTORY:
            assert r.child_id and r.location_id and r.expected is not None
            await push_level(
                stores[r.child_shop], writes, audit, r.child_id, r.location_id, r.expected, cause
            )
            fixed.append(r)
        elif (why := await product(r.child_shop, r.parent_id)) is None:
            fixed.append(r)
        else:
            left.append(replace(r, reason=why))
    return fixed, left


@dataclass
class SalesPass:
    """The first half of a merchant's reconciliation: its children's orders against the ledger."""

    merchant_id: str
    orders_read: dict[str, int] = field(default_factory=dict)  # child -> orders compared
    unapplied: list[str] = field(default_factory=list)  # "child order: what the ledger lacked"
    sale_jobs: dict[str, list[int]] = field(default_factory=dict)  # child -> the jobs applying it
    checkpoints: dict[str, datetime] = field(default_factory=dict)  # child -> its next checkpoint
    failed: dict[str, str] = field(default_factory=dict)  # child -> why its orders were not compared

    @property
    def job_ids(self) -> list[int]:
        return sorted({j for ids in self.sale_jobs.values() for j in ids})


def _describe_movements(job_payloads: Sequence[object]) -> str:
    parts = []
    for p in job_payloads:
        event = getattr(p, "event", None)
        if event is None:
            continue
        sold = ", ".join(f"{s.order_line_id.rsplit('/', 1)[-1]} x{s.quantity}" for s in event.sales)
        back = ", ".join(f"{r.restock_id.rsplit('/', 2)[-2]} {r.quantity}" for r in event.restocks)
        parts.append(f"lines {sold}" + (f"; given back {back}" if back else ""))
    return "; ".join(parts)


async def _compare_orders(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    shop: str,
    orders: Sequence[dict],
    cause: str,
    out: SalesPass,
) -> list[SyncJob]:
    """The sale jobs for what a batch of one child's orders (as read) holds that the ledger lacks."""
    states = await orders_states(st, shop, [o["id"] for o in orders])
    jobs: list[SyncJob] = []
    for order in orders:
        event = order_event_from_graphql(shop, order)
        routed = await route_order(rt, st, net, shop, event, states.get(order["id"], {}), cause)
        if routed.jobs:
            out.unapplied.append(
                f"{shop} {event.order_id}: {_describe_movements([j.payload for j in routed.jobs])}"
            )
            jobs.extend(routed.jobs)
    return jobs


async def reconcile_sales(rt: Runtime, st: Storage, net: MerchantNetwork, cause: str) -> SalesPass:
    """Read each active, linked child's orders updated since its checkpoint and enqueue the sale
    jobs for whatever of them the ledger lacks (nothing is applied here: the jobs do it, under
    their item's lock, exactly as for a webhook)."""
    out = SalesPass(net.merchant_id)
    active, paused = await without_paused(st, net)
    if net.parent.shop in paused:
        return out
    for child in active.children:
        if not (await st.links.link_map(child.shop)).links:
            continue
        started = datetime.now(UTC)
        checkpoint = await st.checkpoints.get(child.shop)
        since = max(checkpoint.checkpoint, checkpoint.tracked_since) - ORDERS_OVERLAP
        read = 0
        jobs: list[SyncJob] = []
        batch: list[dict] = []
        try:
            for order in await rt.api(child.shop).orders_updated_since(since):
                read += 1
                batch.append(order)
                if len(batch) >= ORDERS_BATCH:
                    jobs += await _compare_orders(rt, st, active, child.shop, batch, cause, out)
                    batch = []
            if batch:
                jobs += await _compare_orders(rt, st, active, child.shop, batch, cause, out)
        except Exception as exc:  # one child's store failing leaves the others compared
            out.failed[child.shop] = f"{type(exc).__name__}: {exc}"
            log.warning("orders not compared", child=child.shop, error=out.failed[child.shop])
            continue
        out.orders_read[child.shop] = read
        out.sale_jobs[child.shop] = await enqueue_jobs(st.conn, jobs, net.merchant_id)
        out.checkpoints[child.shop] = started
    return out


async def sales_jobs_pending(st: Storage, sales: SalesPass) -> bool:
    """Whether a sale job of the pass is still queued or running."""
    states = await job_states(st.conn, sales.job_ids)
    return any(state in ("queued", "running") for state in states.values())


async def finish_sales(st: Storage, sales: SalesPass) -> dict[str, str]:
    """Once the pass's sale jobs ran: move each child's checkpoint whose jobs all succeeded (a
    job dead-lettered leaves it, so the next pass reads those orders again). Returns the children
    left behind, with why."""
    states = await job_states(st.conn, sales.job_ids)
    behind: dict[str, str] = {}
    for shop, checkpoint in sales.checkpoints.items():
        bad = [j for j in sales.sale_jobs.get(shop, []) if states.get(j) not in (None, "succeeded")]
        if bad:
            behind[shop] = f"sale jobs {bad} did not succeed ({', '.join(sorted({states[j] for j in bad}))})"
            continue
        await st.checkpoints.advance(shop, checkpoint)
    return behind


@dataclass
class ReconcileResult:
    merchant_id: str
    report: ReconcileReport
    fixed: list[Repair] = field(default_factory=list)
    left: list[Repair] = field(default_factory=list)
    paused: dict[str, str] = field(default_factory=dict)  # skipped stores (paused, not linked) and why
    dry_run: bool = False
    sales: SalesPass | None = None
    enqueued: list[Repair] = field(default_factory=list)  # repairs handed to jobs (the periodic pass)
    since: datetime | None = None  # an incremental pass: products updated since then
    sales_behind: dict[str, str] = field(default_factory=dict)  # children whose checkpoint stayed
    levels: list[str] = field(default_factory=list)  # levels no order explains, and what was done
    levels_settled: list[Repair] = field(default_factory=list)  # those repairs, handled
    stock_jobs: list[int] = field(default_factory=list)  # `sync.child_stock` jobs it enqueued

    @property
    def drift(self) -> list[Repair]:
        """What differs (a dry run's findings; a run's: fixed and not fixed)."""
        return self.report.repairs

    def lines(self) -> list[str]:
        r = self.report
        out = []
        if self.sales is not None:
            read = sum(self.sales.orders_read.values())
            out.append(
                f"{self.merchant_id}: {read} orders compared with the ledger, "
                f"{len(self.sales.unapplied)} with movements it lacked (applied now)"
            )
            out += [f"  applied {x}" for x in self.sales.unapplied]
            out += [f"  orders NOT compared {s}: {why}" for s, why in self.sales.failed.items()]
            out += [f"  checkpoint kept {s}: {why}" for s, why in self.sales_behind.items()]
        scope = "full" if self.since is None else f"incremental since {self.since.isoformat()}"
        checked = (
            f"{self.merchant_id} ({scope}): {r.products_checked} products, {r.collections_checked} "
            f"collections and {r.levels_checked} levels checked, "
        )
        if self.dry_run:
            blocked = [x for x in r.repairs if x.kind in BLOCKED]
            out.append(
                checked
                + f"{len(r.repairs) - len(blocked)} to repair, {len(blocked)} that cannot be (dry run)"
            )
            out += [
                f"  {'cannot repair' if x.kind in BLOCKED else 'would repair'} {x.describe()}"
                + (f" ({x.reason})" if x.kind in BLOCKED else "")
                for x in r.repairs
            ]
        else:
            out.append(
                checked
                + f"{len(self.fixed)} fixed, {len(self.enqueued)} enqueued, {len(self.left)} not fixed"
            )
            out += [f"  fixed {x.describe()}" for x in self.fixed]
            out += [f"  enqueued {x.describe()}" for x in self.enqueued]
            out += [f"  no order explains {x}" for x in self.levels]
            out += [
                f"  NOT fixed {x.describe()}" + (f" ({x.reason})" if x.changes and x.reason else "")
                for x in self.left
            ]
        out += [f"  skipped {s}: {why}" for s, why in self.paused.items()]
        return out

    def by_store(self) -> dict[str, dict[str, Any]]:
        """Per store: the drift found, repaired and left, by kind, or why it was skipped."""
        out: dict[str, dict[str, Any]] = {}
        fixed = Tally(x.child_shop for x in self.fixed + self.enqueued + self.levels_settled)
        left = Tally(x.child_shop for x in self.left)
        for shop in {x.child_shop for x in self.report.repairs}:
            kinds = Tally(str(x.kind) for x in self.report.repairs if x.child_shop == shop)
            found = sum(kinds.values())
            out[shop] = {
                "found": found,
                "repaired": fixed[shop],
                "left": found if self.dry_run else left[shop],
                "skipped": None,
                "kinds": dict(kinds),
            }
        for shop, why in self.paused.items():
            out[shop] = {"found": 0, "repaired": 0, "left": 0, "skipped": why, "kinds": {}}
        return out


BLOCKED = (RepairKind.BLOCKED_PRODUCT, RepairKind.BLOCKED_COLLECTION)


async def reconcile_merchant(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    cause: str,
    *,
    sales: SalesPass | None = None,
    since: datetime | None = None,
    enqueue: bool = False,
    dry_run: bool = False,
) -> ReconcileResult:
    """Compare the parent with every active child and repair the drift through live-sync code
    (after `reconcile_sales` and its sale jobs: `sales`, for the report; `dry_run`: report the
    drift, change nothing): catalog and collection repairs at once, or (`enqueue`) as
    backfill-lane jobs; levels by each child's stock policy. `since`: an incremental pass. The
    run is recorded, with what it found per store."""
    started = datetime.now(UTC)
    result = await _reconcile_merchant(
        rt, st, net, cause, sales=sales, since=since, enqueue=enqueue, dry_run=dry_run
    )
    for r in result.fixed + result.enqueued + result.levels_settled:
        REPAIRS.labels(r.child_shop, str(r.kind)).inc()
    report = result.report
    await record_reconcile_run(
        st.conn,
        merchant_id=net.merchant_id,
        cause=cause,
        dry_run=dry_run,
        started_at=started,
        checked=(report.products_checked, report.levels_checked, report.collections_checked),
        stores={
            # every child, so that one in step shows "nothing to repair" rather than nothing
            **{
                c.shop: {"found": 0, "repaired": 0, "left": 0, "skipped": None, "kinds": {}}
                for c in net.children
            },
            **result.by_store(),
        },
    )
    return result


async def _reconcile_merchant(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    cause: str,
    *,
    sales: SalesPass | None,
    since: datetime | None,
    enqueue: bool,
    dry_run: bool,
) -> ReconcileResult:
    active, paused = await without_paused(st, net)
    if net.parent.shop in paused:
        return ReconcileResult(
            net.merchant_id, ReconcileReport(), paused=paused, dry_run=dry_run, sales=sales
        )
    # A child never linked has not been onboarded: `storesync backfill` copies its catalog with
    # collections and stock; reconciling it would create bare products instead.
    unlinked = [c.shop for c in active.children if not (await st.links.link_map(c.shop)).links]
    active = replace(active, children=tuple(c for c in active.children if c.shop not in unlinked))
    skipped = {**paused, **{s: "not linked yet (run storesync backfill)" for s in unlinked}}
    if not active.children:
        return ReconcileResult(
            net.merchant_id, ReconcileReport(), paused=skipped, dry_run=dry_run, sales=sales
        )
    policy = rt.policy(net.merchant_id)
    collections = {s.shop: rt.collections(s.shop) for s in active.stores}
    scans = rt.scans(active, updated_since=since)
    report = await reconcile_network(
        active, scans, st.links, policy, collections, incremental=since is not None, dry_run=dry_run
    )
    if dry_run:
        return ReconcileResult(
            net.merchant_id, report, paused=skipped, dry_run=True, sales=sales, since=since
        )

    await remember_read_products(st, scans)
    # The parent's answers a copy reads (its product, levels, channels), shared by this pass's
    # copies of one product into several children.
    parent_reads = ScannedParent(rt.api(net.parent.shop))

    async def copy_product(shop: str, parent_product_id: str) -> str | None:
        saga = await copy_to_child(
            rt, st, net, shop, parent_product_id, cause, final_attempt=True, parent_api=parent_reads
        )
        if saga is None or handle_conflicted(saga):
            return "a product of the child's own has its handle (storesync status lists it)"
        return None

    levels = [r for r in report.repairs if r.kind is RepairKind.SET_INVENTORY]
    enqueued: list[Repair] = []
    if enqueue:
        others = [r for r in report.repairs if r.kind is not RepairKind.SET_INVENTORY]
        jobs = [(r, repair_job(r, cause)) for r in others]
        await enqueue_jobs(st.conn, [j for _, j in jobs if j is not None], net.merchant_id)
        enqueued = [r for r, j in jobs if j is not None]
        handled, not_written, stock_jobs = await _settle_levels(rt, st, active, levels, cause)
        unwritten = {(r.child_shop, r.child_id, r.location_id) for r in not_written}
        return ReconcileResult(
            net.merchant_id,
            report,
            [],
            [r for r, j in jobs if j is None] + not_written,
            skipped,
            sales=sales,
            levels=handled,
            levels_settled=[r for r in levels if (r.child_shop, r.child_id, r.location_id) not in unwritten],
            stock_jobs=stock_jobs,
            enqueued=enqueued,
            since=since,
        )
    fixed, left = await apply_repairs(
        [r for r in report.repairs if r.kind is not RepairKind.SET_INVENTORY],
        parent_store=rt.api(net.parent.shop),
        stores=rt.apis(active),
        links_repo=st.links,
        writes=st.writes,
        audit=st.audit,
        policy=policy,
        cause=cause,
        collection_stores=collections,
        copy_product=copy_product,
        publisher=lambda shop, parent_id: collection_publisher(rt, st, net, shop, parent_id, cause),
        attention=st.attention,
        archived=st.archived,
    )
    handled, not_written, stock_jobs = await _settle_levels(rt, st, active, levels, cause)
    unwritten = {(r.child_shop, r.child_id, r.location_id) for r in not_written}
    return ReconcileResult(
        net.merchant_id,
        report,
        fixed,
        left + not_written,
        skipped,
        sales=sales,
        levels=handled,
        levels_settled=[r for r in levels if (r.child_shop, r.child_id, r.location_id) not in unwritten],
        stock_jobs=stock_jobs,
        since=since,
    )


async def _settle_levels(
    rt: Runtime, st: Storage, net: MerchantNetwork, repairs: Sequence[Repair], cause: str
) -> tuple[list[str], list[Repair], list[int]]:
    """Child levels that differ from the parent's once every order is applied: moves no order
    explains, each handled by its child's stock policy: revert sets it back now; report hands
    it to a `sync.child_stock` job (under the item's lock, like its sales), whose ids are
    returned. A level at a deactivated location (or an item no longer stocked there) is not
    written, and reported."""
    handled: list[str] = []
    left: list[Repair] = []
    jobs = []
    pairs = [(r.child_shop, r.child_id or "") for r in repairs] + [
        (net.parent.shop, r.parent_id) for r in repairs
    ]
    inactive = await st.inactive.among(pairs)
    for r in repairs:
        assert r.child_id and r.location_id
        parent_location = net.parent_location(r.child_shop, r.location_id)
        why = inactive.get((r.child_shop, r.location_id)) or (
            inactive.get((net.parent.shop, parent_location)) if parent_location else None
        )
        if why or parent_location is None:
            left.append(replace(r, reason=f"location {why or 'unmapped'}: not written"))
            continue
        if net.stock_policy(r.child_shop) == "report":
            jobs.append(child_stock_job(r.child_shop, r.child_id, r.location_id, r.parent_id, cause))
            handled.append(f"{r.describe()}: handed to its stock policy, report")
        else:
            await check_child_level(rt, st, net, r.child_shop, r.child_id, r.location_id, cause)
            handled.append(f"{r.describe()}: set back to the parent's level (stock_changes = revert)")
    ids = await enqueue_jobs(st.conn, jobs, net.merchant_id)
    return handled, left, ids


# An incremental pass starts this long before the last one did: the stores' clocks and their bulk
# queries' snapshots are not ours.
PASS_OVERLAP = timedelta(minutes=2)


async def reconcile_pass(
    rt: Runtime, st: Storage, net: MerchantNetwork, cause: str, *, sales: SalesPass | None = None
) -> ReconcileResult:
    """The periodic pass: incremental since the last one, full when there was none or the last
    full one is older than `STORESYNC_SYNC_RECONCILE_FULL_EVERY_S`; repairs enqueued as jobs.
    The pass is recorded once its repairs are enqueued (a failed pass is simply done again)."""
    last, last_full, now = await last_reconcile_pass(st.conn, net.merchant_id)
    full_every = timedelta(seconds=rt.sync_settings.reconcile_full_every_s)
    full = last is None or last_full is None or now - last_full >= full_every
    since = None if full or last is None else last - PASS_OVERLAP
    result = await reconcile_merchant(rt, st, net, cause, sales=sales, since=since, enqueue=True)
    await record_reconcile_pass(st.conn, net.merchant_id, now, full=full)
    return result


async def reconcile(
    rt: Runtime,
    *,
    merchant: str | None = None,
    cause: str = "reconcile:cli",
    wait_s: float = 300.0,
    dry_run: bool = False,
) -> list[ReconcileResult]:
    """The whole reconciliation of each merchant, from here (`storesync reconcile`): the sales
    pass, its sale jobs awaited (the workers run them), then catalog and levels (`dry_run`: only
    catalog and levels compared and reported; nothing enqueued or written)."""
    out = []
    async with job_storage(rt.pool) as st:
        for net in merchants(rt, merchant):
            if dry_run:  # no sales pass: it would enqueue sale jobs
                out.append(await reconcile_merchant(rt, st, net, cause, dry_run=True))
                continue
            sales = await reconcile_sales(rt, st, net, cause)
            deadline = asyncio.get_running_loop().time() + wait_s
            await _wait_for(st, sales.job_ids, deadline, net.merchant_id)
            behind = await finish_sales(st, sales)
            result = await reconcile_merchant(rt, st, net, cause, sales=sales)
            result.sales_behind = behind
            await _wait_for(st, result.stock_jobs, deadline, net.merchant_id)
            out.append(result)
    return out


async def _wait_for(st: Storage, ids: list[int], deadline: float, merchant_id: str) -> None:
    """Until none of the jobs `ids` is queued or running (the workers run them)."""
    while any(state in ("queued", "running") for state in (await job_states(st.conn, ids)).values()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(
                f"{merchant_id}: jobs {ids} did not finish in time (is a storesync worker running?)"
            )
        await asyncio.sleep(0.2)
