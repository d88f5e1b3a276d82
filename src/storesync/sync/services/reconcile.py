"""Reconciliation: read every store of a merchant, list the repairs (`domain/reconcile.py`) and
carry them out through the same code as live sync (`storesync reconcile`, the periodic job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from storesync.logs import get_logger
from storesync.sync.adapters.postgres import Storage, job_storage
from storesync.sync.domain.catalog import CatalogError, NeedsCopy, SyncPolicy
from storesync.sync.domain.network import MerchantNetwork
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
    diff_collections,
    diff_inventory,
)
from storesync.sync.domain.saga import handle_conflicted
from storesync.sync.services.catalog import sync_product_to_child
from storesync.sync.services.channels import collection_publisher
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import copy_to_child, link_pending_copies
from storesync.sync.services.sales import push_level
from storesync.sync.services.stores import merchants, without_paused

log = get_logger("storesync.sync.reconcile")


async def reconcile_network(
    network: MerchantNetwork,
    scans: Mapping[str, CatalogScan],
    links_repo: LinkRepository,
    policy: SyncPolicy,
    collection_stores: Mapping[str, CollectionStore] | None = None,
) -> ReconcileReport:
    """Read every store of a merchant and list the repairs (`storesync reconcile`; then
    `apply_repairs`). scans: shop -> `ports.CatalogScan`; links_repo: `ports.LinkRepository`;
    collection_stores: shop -> a store with `all_collections()` of full `Collection`s
    (`adapters.shopify.ShopifyCollections`); without them collections are not compared."""
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
class ReconcileResult:
    merchant_id: str
    report: ReconcileReport
    fixed: list[Repair] = field(default_factory=list)
    left: list[Repair] = field(default_factory=list)
    paused: dict[str, str] = field(default_factory=dict)  # skipped stores (paused, not linked) and why

    def lines(self) -> list[str]:
        r = self.report
        out = [
            f"{self.merchant_id}: {r.products_checked} products, {r.collections_checked} collections and "
            f"{r.levels_checked} levels checked, "
            f"{len(self.fixed)} fixed, {len(self.left)} not fixed"
        ]
        out += [f"  fixed {x.describe()}" for x in self.fixed]
        out += [
            f"  NOT fixed {x.describe()}" + (f" ({x.reason})" if x.changes and x.reason else "")
            for x in self.left
        ]
        out += [f"  skipped {s}: {why}" for s, why in self.paused.items()]
        return out


async def reconcile_merchant(rt: Runtime, st: Storage, net: MerchantNetwork, cause: str) -> ReconcileResult:
    """Compare the parent with every active child and repair the drift through live-sync code."""
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

    async def copy_product(shop: str, parent_product_id: str) -> str | None:
        saga = await copy_to_child(rt, st, net, shop, parent_product_id, cause, final_attempt=True)
        if saga is None or handle_conflicted(saga):
            return "a product of the child's own has its handle (storesync status lists it)"
        return None

    report = await reconcile_network(active, rt.scans(active), st.links, policy, collections)
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
        copy_product=copy_product,
        publisher=lambda shop, parent_id: collection_publisher(rt, st, net, shop, parent_id, cause),
        attention=st.attention,
        archived=st.archived,
    )
    return ReconcileResult(net.merchant_id, report, fixed, left, skipped)


async def reconcile(
    rt: Runtime, *, merchant: str | None = None, cause: str = "reconcile:cli"
) -> list[ReconcileResult]:
    async with job_storage(rt.pool) as st:
        return [await reconcile_merchant(rt, st, net, cause) for net in merchants(rt, merchant)]
