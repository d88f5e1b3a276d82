"""Reconciliation: read every store of a merchant, list the repairs (`domain/reconcile.py`) and
carry them out through the same code as live sync (`storesync reconcile`, the periodic job).

The stores are read with bulk queries (`adapters.shopify.BulkCatalogScan`: a few points per
store whatever the catalog, outside the rate limit). A pass is full (every product and level)
or incremental (`since`: the products updated since the last pass, against what each child was
last given; levels are always read whole, one bulk query per store). The periodic job enqueues
each repair as the live-sync job that makes it, in the backfill lane (`routing.repair_job`):
live sync goes first, a busy store's repairs wait for its bucket without holding a worker, and
a level is set from the parent's level read when the repair runs. `storesync reconcile` applies
them at once and reports each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import (
    Storage,
    job_storage,
    last_reconcile_pass,
    record_reconcile_pass,
)
from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import (
    AuditSink,
    CatalogScan,
    CatalogStore,
    CollectionStore,
    LinkRepository,
    StoreAPI,
    WriteRecords,
)
from storesync.sync.domain.pushes import PendingPush
from storesync.sync.domain.reconcile import (
    ReconcileReport,
    Repair,
    RepairKind,
    diff_catalog,
    diff_changed_products,
    diff_collections,
    diff_inventory,
)
from storesync.sync.domain.routing import repair_job
from storesync.sync.services.catalog import sync_product_to_child
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import link_pending_copies
from storesync.sync.services.pushes import set_now
from storesync.sync.services.sales import push_level
from storesync.sync.services.stores import merchants, without_paused


async def reconcile_network(
    network: MerchantNetwork,
    scans: Mapping[str, CatalogScan],
    links_repo: LinkRepository,
    policy: SyncPolicy,
    collection_stores: Mapping[str, CollectionStore] | None = None,
    *,
    incremental: bool = False,
) -> ReconcileReport:
    """Read every store of a merchant and list the repairs (`storesync reconcile`; then
    `apply_repairs`). scans: shop -> `ports.CatalogScan`; links_repo: `ports.LinkRepository`;
    collection_stores: shop -> a store with `all_collections()` of full `Collection`s
    (`adapters.shopify.ShopifyCollections`); without them collections are not compared.
    `incremental`: the scans' products are those updated since the last pass
    (`domain.reconcile.diff_changed_products`)."""
    report = ReconcileReport()
    parent_scan = scans[network.parent.shop]
    parent_products = [p async for p in parent_scan.all_products()]
    maps = {c.shop: await links_repo.link_map(c.shop) for c in network.children}
    children = {c.shop: [p async for p in scans[c.shop].all_products()] for c in network.children}
    # Copies whose variants' ids never arrived (a lost create webhook); the parent levels that
    # moved while they were pending are among the inventory drift diffed below.
    for c in network.children:
        if (await link_pending_copies(links_repo, maps[c.shop], children[c.shop])).pending:
            maps[c.shop] = await links_repo.link_map(c.shop)
    if incremental:
        diff_changed_products(parent_products, children, maps, policy, report)
    else:
        diff_catalog(parent_products, children, maps, policy, report)
        for shop, views in report.views_found.items():
            await links_repo.set_synced_views(shop, views)
    if collection_stores is not None:
        parent_collections = [c async for c in collection_stores[network.parent.shop].all_collections()]
        child_collections = {
            c.shop: [x async for x in collection_stores[c.shop].all_collections()] for c in network.children
        }
        diff_collections(parent_collections, child_collections, maps, report)
    parent_locations = sorted({p for m in network.location_maps.values() for p in m})
    parent_levels = await parent_scan.all_levels(parent_locations)
    child_levels = {
        c.shop: await scans[c.shop].all_levels(sorted(network.location_maps.get(c.shop, {}).values()))
        for c in network.children
    }
    diff_inventory(network, parent_levels, child_levels, maps, report)
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
) -> tuple[list[Repair], list[Repair]]:
    """Carry out repairs through the same code as live sync (stores: `ports.StoreAPI` per child
    shop; collection_stores: `ports.CollectionStore` per shop, parent included).
    Returns (fixed, not fixed); BLOCKED ones are never written, only reported. Collections are
    repaired first, so that products re-synced after them carry the memberships."""
    fixed: list[Repair] = []
    left: list[Repair] = []
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
            )
            for product_id in outcome.resync_products:  # copies to move into or out of it
                if (r.child_shop, product_id) not in resynced:
                    resynced.add((r.child_shop, product_id))
                    await sync_product_to_child(
                        parent_store, stores[r.child_shop], product_id, links_repo, policy, audit, cause
                    )
            fixed.append(r)
        elif r.kind is RepairKind.SET_INVENTORY:
            assert r.child_id and r.location_id and r.expected is not None
            await push_level(
                stores[r.child_shop], writes, audit, r.child_id, r.location_id, r.expected, cause
            )
            fixed.append(r)
        else:
            await sync_product_to_child(
                parent_store, stores[r.child_shop], r.parent_id, links_repo, policy, audit, cause
            )
            fixed.append(r)
    return fixed, left


@dataclass
class ReconcileResult:
    merchant_id: str
    report: ReconcileReport
    fixed: list[Repair] = field(default_factory=list)
    left: list[Repair] = field(default_factory=list)
    paused: dict[str, str] = field(default_factory=dict)  # skipped stores (paused, not linked) and why
    enqueued: list[Repair] = field(default_factory=list)  # repairs handed to jobs (the periodic pass)
    since: datetime | None = None  # an incremental pass: products updated since then

    def lines(self) -> list[str]:
        r = self.report
        scope = "full" if self.since is None else f"incremental since {self.since.isoformat()}"
        out = [
            f"{self.merchant_id} ({scope}): {r.products_checked} products, {r.collections_checked} "
            f"collections and {r.levels_checked} levels checked, "
            f"{len(self.fixed)} fixed, {len(self.enqueued)} enqueued, {len(self.left)} not fixed"
        ]
        out += [f"  fixed {x.describe()}" for x in self.fixed]
        out += [f"  enqueued {x.describe()}" for x in self.enqueued]
        out += [f"  NOT fixed {x.describe()} ({x.reason})" for x in self.left]
        out += [f"  skipped {s}: {why}" for s, why in self.paused.items()]
        return out


async def reconcile_merchant(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    cause: str,
    *,
    since: datetime | None = None,
    enqueue: bool = False,
) -> ReconcileResult:
    """Compare the parent with every active child and repair the drift through live-sync code:
    at once, or (`enqueue`) as backfill-lane jobs. `since`: an incremental pass."""
    active, paused = await without_paused(st, net)
    if net.parent.shop in paused:
        return ReconcileResult(net.merchant_id, ReconcileReport(), paused=paused)
    # A child never linked has not been onboarded: `storesync backfill` copies its catalog with
    # collections and stock; reconciling it would create bare products instead.
    unlinked = [c.shop for c in active.children if not (await st.links.link_map(c.shop)).links]
    active = replace(active, children=tuple(c for c in active.children if c.shop not in unlinked))
    skipped = {**paused, **{s: "not linked yet (run storesync backfill)" for s in unlinked}}
    if not active.children:
        return ReconcileResult(net.merchant_id, ReconcileReport(), paused=skipped)
    policy = rt.policy(net.merchant_id)
    collections = {s.shop: rt.collections(s.shop) for s in active.stores}
    report = await reconcile_network(
        active,
        rt.scans(active, updated_since=since),
        st.links,
        policy,
        collections,
        incremental=since is not None,
    )
    if enqueue:
        jobs = [(r, repair_job(r, cause)) for r in report.repairs]
        await enqueue_jobs(st.conn, [j for _, j in jobs if j is not None], net.merchant_id)
        return ReconcileResult(
            net.merchant_id,
            report,
            left=[r for r, j in jobs if j is None],
            paused=skipped,
            enqueued=[r for r, j in jobs if j is not None],
            since=since,
        )
    # Level repairs go out together per child (a read and a set per level took a minute for a
    # few hundred); `STORESYNC_SYNC_COALESCE_WRITES=false` keeps one call per level.
    batch = rt.sync_settings.coalesce_writes
    batched = [r for r in report.repairs if batch and r.kind is RepairKind.SET_INVENTORY]
    fixed, left = await apply_repairs(
        [r for r in report.repairs if not (batch and r.kind is RepairKind.SET_INVENTORY)],
        parent_store=rt.api(net.parent.shop),
        stores=rt.apis(active),
        links_repo=st.links,
        writes=st.writes,
        audit=st.audit,
        policy=policy,
        cause=cause,
        collection_stores=collections,
    )
    for shop in sorted({r.child_shop for r in batched}):
        mine = [r for r in batched if r.child_shop == shop]
        await set_now(rt, st, shop, [level_push(r, cause) for r in mine])
        fixed += mine
    return ReconcileResult(net.merchant_id, report, fixed, left, skipped, since=since)


def level_push(r: Repair, cause: str) -> PendingPush:
    """A level repair as a push to set now: the parent's level and the child's, as the pass read
    them (a stale one is read again)."""
    assert r.child_id and r.location_id and r.parent_location_id and r.expected is not None
    return PendingPush(
        r.child_shop,
        r.child_id,
        r.location_id,
        r.parent_id,
        r.parent_location_id,
        r.expected,
        r.actual,
        None,
        cause,
    )


# An incremental pass starts this long before the last one did: the stores' clocks and their bulk
# queries' snapshots are not ours.
PASS_OVERLAP = timedelta(minutes=2)


async def reconcile_pass(rt: Runtime, st: Storage, net: MerchantNetwork, cause: str) -> ReconcileResult:
    """The periodic pass: incremental since the last one, full when there was none or the last
    full one is older than `STORESYNC_SYNC_RECONCILE_FULL_EVERY_S`; repairs enqueued as jobs.
    The pass is recorded once its repairs are enqueued (a failed pass is simply done again)."""
    last, last_full, now = await last_reconcile_pass(st.conn, net.merchant_id)
    full_every = timedelta(seconds=rt.sync_settings.reconcile_full_every_s)
    full = last is None or last_full is None or now - last_full >= full_every
    since = None if full or last is None else last - PASS_OVERLAP
    result = await reconcile_merchant(rt, st, net, cause, since=since, enqueue=True)
    await record_reconcile_pass(st.conn, net.merchant_id, now, full=full)
    return result


async def reconcile(
    rt: Runtime, *, merchant: str | None = None, cause: str = "reconcile:cli"
) -> list[ReconcileResult]:
    async with job_storage(rt.pool) as st:
        return [await reconcile_merchant(rt, st, net, cause) for net in merchants(rt, merchant)]
