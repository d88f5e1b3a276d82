"""Reconciliation: read every store of a merchant, list the repairs (`domain/reconcile.py`) and
carry them out through the same code as live sync (`storesync reconcile`, the periodic job), or,
as a dry run, only report them. Each run is recorded (`sync_reconcile_runs`: what each store's
drift was and what was repaired) for the dashboard and the metrics."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from storesync.sync.adapters.postgres import Storage, job_storage, record_reconcile_run
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
from storesync.sync.domain.reconcile import (
    ReconcileReport,
    Repair,
    RepairKind,
    diff_catalog,
    diff_collections,
    diff_inventory,
)
from storesync.sync.services.catalog import sync_product_to_child
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import link_pending_copies
from storesync.sync.services.sales import push_level
from storesync.sync.services.stores import merchants, without_paused

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
    dry_run: bool = False,
) -> ReconcileReport:
    """Read every store of a merchant and list the repairs (`storesync reconcile`; then
    `apply_repairs`). scans: shop -> `ports.CatalogScan`; links_repo: `ports.LinkRepository`;
    collection_stores: shop -> a store with `all_collections()` of full `Collection`s
    (`adapters.shopify.ShopifyCollections`); without them collections are not compared.
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
    diff_catalog(parent_products, children, maps, policy, report)
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
    dry_run: bool = False

    @property
    def drift(self) -> list[Repair]:
        """What differs (a dry run's findings; a run's: fixed and not fixed)."""
        return self.report.repairs

    def lines(self) -> list[str]:
        r = self.report
        checked = (
            f"{self.merchant_id}: {r.products_checked} products, {r.collections_checked} collections and "
            f"{r.levels_checked} levels checked, "
        )
        if self.dry_run:
            blocked = [x for x in r.repairs if x.kind in BLOCKED]
            out = [
                checked
                + f"{len(r.repairs) - len(blocked)} to repair, {len(blocked)} that cannot be (dry run)"
            ]
            out += [
                f"  {'cannot repair' if x.kind in BLOCKED else 'would repair'} {x.describe()}"
                + (f" ({x.reason})" if x.kind in BLOCKED else "")
                for x in r.repairs
            ]
        else:
            out = [checked + f"{len(self.fixed)} fixed, {len(self.left)} not fixed"]
            out += [f"  fixed {x.describe()}" for x in self.fixed]
            out += [f"  NOT fixed {x.describe()} ({x.reason})" for x in self.left]
        out += [f"  skipped {s}: {why}" for s, why in self.paused.items()]
        return out

    def by_store(self) -> dict[str, dict[str, Any]]:
        """Per store: the drift found, repaired and left, by kind, or why it was skipped."""
        out: dict[str, dict[str, Any]] = {}
        fixed = Tally(x.child_shop for x in self.fixed)
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
    rt: Runtime, st: Storage, net: MerchantNetwork, cause: str, *, dry_run: bool = False
) -> ReconcileResult:
    """Compare the parent with every active child and repair the drift through live-sync code
    (`dry_run`: report it, change nothing). The run is recorded, with what it found per store."""
    started = datetime.now(UTC)
    result = await _reconcile_merchant(rt, st, net, cause, dry_run=dry_run)
    for r in result.fixed:
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
    rt: Runtime, st: Storage, net: MerchantNetwork, cause: str, *, dry_run: bool
) -> ReconcileResult:
    active, paused = await without_paused(st, net)
    if net.parent.shop in paused:
        return ReconcileResult(net.merchant_id, ReconcileReport(), paused=paused, dry_run=dry_run)
    # A child never linked has not been onboarded: `storesync backfill` copies its catalog with
    # collections and stock; reconciling it would create bare products instead.
    unlinked = [c.shop for c in active.children if not (await st.links.link_map(c.shop)).links]
    active = replace(active, children=tuple(c for c in active.children if c.shop not in unlinked))
    skipped = {**paused, **{s: "not linked yet (run storesync backfill)" for s in unlinked}}
    if not active.children:
        return ReconcileResult(net.merchant_id, ReconcileReport(), paused=skipped, dry_run=dry_run)
    policy = rt.policy(net.merchant_id)
    collections = {s.shop: rt.collections(s.shop) for s in active.stores}
    report = await reconcile_network(active, rt.scans(active), st.links, policy, collections, dry_run=dry_run)
    if dry_run:
        return ReconcileResult(net.merchant_id, report, paused=skipped, dry_run=True)
    fixed, left = await apply_repairs(
        report.repairs,
        parent_store=rt.api(net.parent.shop),
        stores=rt.apis(active),
        links_repo=st.links,
        writes=st.writes,
        audit=st.audit,
        policy=policy,
        cause=cause,
        collection_stores=collections,
    )
    return ReconcileResult(net.merchant_id, report, fixed, left, skipped)


async def reconcile(
    rt: Runtime, *, merchant: str | None = None, cause: str = "reconcile:cli", dry_run: bool = False
) -> list[ReconcileResult]:
    async with job_storage(rt.pool) as st:
        return [
            await reconcile_merchant(rt, st, net, cause, dry_run=dry_run) for net in merchants(rt, merchant)
        ]
