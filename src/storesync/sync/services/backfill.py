"""The initial sync (`storesync backfill`): link what matches, then copy every unlinked parent
product into each child (the copy saga), then fan out what moved meanwhile. Resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg

from storesync.commerce.errors import CommerceError, StoreUnauthorized
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage, job_storage, pause_store
from storesync.sync.adapters.shopify import BulkCatalogScan, ScannedParent
from storesync.sync.domain.catalog import CatalogBlocked
from storesync.sync.domain.collections import CollectionAction
from storesync.sync.domain.linking import LinkReport
from storesync.sync.domain.model import InventoryLevel, LinkKind
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.routing import fan_out_job, link_pending_job
from storesync.sync.domain.saga import COPY_PRODUCT, SagaState, copy_saga_id, handle_conflicted
from storesync.sync.services.channels import collection_publisher
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import run_copy_saga
from storesync.sync.services.stores import link_network, merchants, remember_read_products, without_paused

log = get_logger("storesync.sync.backfill")

# How often a backfill refreshes the links table's planner statistics while it copies.
LINK_STATISTICS_EVERY_S = 10.0


@dataclass
class BackfillResult:
    reports: list[LinkReport] = field(default_factory=list)
    collections_created: list[str] = field(default_factory=list)  # "<child>: <handle>"
    completed: list[str] = field(default_factory=list)  # saga ids
    compensated: list[tuple[str, str]] = field(default_factory=list)  # (saga id, why)
    # (saga id, why): a child's own product has the handle; reported, nothing written
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (saga id or shop, why): rerun resumes
    paused: dict[str, str] = field(default_factory=dict)
    levels_moved: int = 0  # parent levels that changed during the copy, fanned out afterwards

    @property
    def ok(self) -> bool:
        return not (self.compensated or self.failed)


async def _unfinished_copies(st: Storage, children: set[str]) -> list[tuple[str, str]]:
    """(child, parent product) of copy sagas left running or compensating in these children."""
    out = []
    for saga_id, shop in await st.steps.unfinished_sagas(100_000):
        if shop not in children or not saga_id.startswith("copy:"):
            continue
        rec = await st.steps.load(saga_id)
        if rec is not None and rec.steps:
            out.append((shop, rec.steps[0].params["parent_product_id"]))
    return out


async def _create_missing_collections(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child: str,
    report: LinkReport,
    result: BackfillResult,
    parent_api: ScannedParent,
) -> None:
    """The parent's collections the child lacks, made by the collection sync itself (title,
    description, SEO, sort order, a smart collection's rules) and linked with the view written,
    so the copies' memberships and the collection jobs agree with them from the start. A
    collection that cannot be converted (smart vs manual) is reported; the copies go on."""
    if not report.missing_collections:
        return
    parent, mine = rt.collections(net.parent.shop), rt.collections(child)
    for pid in report.missing_collections:
        try:
            out = await sync_collection_to_child(
                parent,
                mine,
                pid,
                st.links,
                st.audit,
                "backfill:collections",
                with_members=False,
                on_created=collection_publisher(
                    rt, st, net, child, pid, "backfill:collections", parent=parent_api
                ),
            )
        except CatalogBlocked as err:
            result.failed.append((f"{child}: collection {pid}", str(err)))
            continue
        if out.action in (CollectionAction.CREATED, CollectionAction.UPDATED) and out.plan is not None:
            result.collections_created.append(f"{child}: {out.plan.input.get('handle') or pid}")


async def backfill(
    rt: Runtime,
    *,
    merchant: str | None = None,
    child: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    concurrency: int = 4,
) -> BackfillResult:
    """Initial sync: link what matches, then copy every unlinked parent product into the child
    (copy-product saga: create -> collections -> levels; a failed step compensates the done ones).
    Resumable: rerunning links the copies already made and resumes unfinished sagas."""
    result = BackfillResult()
    work: list[tuple[MerchantNetwork, str, str]] = []  # (merchant, child, parent product)
    scanned: dict[str, ScannedParent] = {}  # merchant -> its parent as scanned
    # merchant -> (scan, the levels the copies use)
    parent_scans: dict[str, tuple[BulkCatalogScan, dict[tuple[str, str], InventoryLevel]]] = {}
    looked_at: list[tuple[MerchantNetwork, str]] = []  # the children linked (and copied into) by this run
    levels_read_at: dict[str, datetime] = {}  # merchant -> when the scan read the parent's levels
    async with job_storage(rt.pool) as st:
        for net in merchants(rt, merchant):
            active, paused = await without_paused(st, net)
            result.paused.update(paused)
            if net.parent.shop in paused:
                continue
            if child is not None:
                if child not in [c.shop for c in net.children]:
                    continue
                active = replace(active, children=tuple(c for c in active.children if c.shop == child))
            # Sagas an earlier run left unfinished (it crashed) are resumed first, whatever the
            # linking below finds: a half-made copy it adopts by SKU still needs its last steps.
            unfinished = await _unfinished_copies(st, {c.shop for c in active.children})
            work += [(active, shop, pid) for shop, pid in unfinished]
            # Every store read with bulk queries (outside the rate limit), all at once: paging a
            # 1,000-product parent costs its bucket ~18,000 points before the first copy.
            scans = {s.shop: BulkCatalogScan(rt.api(s.shop)) for s in active.stores}
            parent_scan = scans[net.parent.shop]
            await asyncio.gather(*(scan.products() for scan in scans.values()))
            await remember_read_products(st, scans)
            levels_read_at[net.merchant_id] = datetime.now(UTC)
            parent_levels = await parent_scan.levels()
            reports = await link_network(active, scans, st.links, rt.policy(net.merchant_id))
            result.reports += reports
            parent_products = await parent_scan.products()
            scanned_parent = ScannedParent(rt.api(net.parent.shop), parent_products, parent_levels)
            scanned[net.merchant_id] = scanned_parent
            parent_scans[net.merchant_id] = (parent_scan, dict(parent_levels))

            # The children's missing collections at once (each child on its own connection): the
            # copies start after them, and every second before the first copy leaves the
            # children's full buckets unused.
            async def collections_of(
                report: LinkReport, net: MerchantNetwork = active, parent: ScannedParent = scanned_parent
            ) -> None:
                async with job_storage(rt.pool) as mine:
                    await _create_missing_collections(
                        rt, mine, net, report.child_shop, report, result, parent
                    )

            await asyncio.gather(*(collections_of(r) for r in reports))
            for report in reports:
                looked_at.append((active, report.child_shop))
                links = await st.links.link_map(report.child_shop)
                work += [
                    (active, report.child_shop, p.id)
                    for p in parent_products
                    if p.id
                    and links.child_id(LinkKind.PRODUCT, p.id) is None
                    and (report.child_shop, p.id) not in unfinished
                ]
    if on_total:
        on_total(len(work))

    async with job_storage(rt.pool) as st:
        sagas = await st.steps.states(COPY_PRODUCT)
    refresh = asyncio.create_task(_refresh_link_statistics(rt))

    async def copy_all(items: list[tuple[MerchantNetwork, str, str]]) -> None:
        async with job_storage(rt.pool) as st:
            for net, shop, pid in items:
                if shop in result.paused:
                    continue
                saga_id = copy_saga_id(sagas, shop, pid)
                try:
                    rec = await run_copy_saga(
                        rt,
                        st,
                        net,
                        saga_id,
                        pid,
                        shop,
                        f"backfill:{saga_id}",
                        final_attempt=True,
                        parent_api=scanned[net.merchant_id],
                        levels_read_at=levels_read_at.get(net.merchant_id),
                    )
                except StoreUnauthorized as err:
                    reason = err.pause_reason
                    await pause_store(st.conn, err.shop or shop, reason)
                    result.paused[err.shop or shop] = reason
                    result.failed.append((saga_id, reason))
                except (CommerceError, psycopg.Error, OSError) as err:
                    result.failed.append((saga_id, f"{type(err).__name__}: {err}"))
                else:
                    if rec.state is SagaState.COMPLETED:
                        result.completed.append(saga_id)
                    elif handle_conflicted(rec):
                        result.conflicts.append((saga_id, rec.error or ""))
                    else:
                        result.compensated.append((saga_id, rec.error or str(rec.state)))
                if progress:
                    progress(1)

    # `concurrency` sagas at once per child (each holds a connection; the budget needs a few
    # more); each store's budget paces its own calls.
    children = len({shop for _, shop, _ in work}) or 1
    concurrency = max(1, min(concurrency, (rt.pool.max_size - 4) // children))
    lanes: dict[str, list[list]] = {}
    for item in work:
        per_child = lanes.setdefault(item[1], [[] for _ in range(concurrency)])
        per_child[sum(len(x) for x in per_child) % concurrency].append(item)
    try:
        await asyncio.gather(*(copy_all(chunk) for chunks in lanes.values() for chunk in chunks if chunk))
    finally:
        refresh.cancel()
    await fan_out_levels_moved_meanwhile(
        rt, parent_scans, {net.merchant_id: net for net, _, _ in work}, result
    )
    await _link_overdue_copies_later(rt, {shop: net for net, shop in looked_at})
    return result


async def _link_overdue_copies_later(rt: Runtime, children: dict[str, MerchantNetwork]) -> None:
    """The copies' variants are linked from their products/create webhooks as the workers handle
    them; a job per child (`sync.link_pending_copies`) links, a little later, those whose
    webhook never came (a copy an earlier run left pending included). The backfill itself does
    not wait for the webhooks: its copies are complete in the stores."""
    delay, now = rt.sync_settings.link_pending_after_s, datetime.now(UTC)
    async with job_storage(rt.pool) as st:
        for shop, net in sorted(children.items()):
            if await st.links.pending_links(shop):
                await enqueue_jobs(st.conn, [link_pending_job(shop, "backfill", delay, now)], net.merchant_id)


async def _refresh_link_statistics(rt: Runtime) -> None:
    """ANALYZE the links table now and every `LINK_STATISTICS_EVERY_S` while the copies run (a
    bulk load outpaces autovacuum; see `adapters.postgres.ANALYZE_LINKS`). A failure is logged: the
    copies do not depend on it."""
    while True:
        try:
            async with job_storage(rt.pool) as st:
                await st.links.analyze()
        except psycopg.Error as err:
            log.warning("links statistics not refreshed", error=str(err))
        await asyncio.sleep(LINK_STATISTICS_EVERY_S)


async def fan_out_levels_moved_meanwhile(
    rt: Runtime,
    parent_scans: dict[str, tuple[BulkCatalogScan, dict[tuple[str, str], InventoryLevel]]],
    copied: dict[str, MerchantNetwork],
    result: BackfillResult,
) -> None:
    """The copies wrote the parent's levels as the scan read them. A level that moved before its
    product was linked in a child found no link to fan out to: read every level again (one bulk
    query) and fan out each one that differs, through the workers' `sync.fan_out_level` jobs
    (they read the parent's level then). Moves after this read reach the linked copies through
    the parent's level webhooks."""
    for merchant_id, _net in copied.items():
        if merchant_id not in parent_scans:
            continue
        scan, used = parent_scans[merchant_id]
        try:
            now = await scan.levels(fresh=True)
        except CommerceError as err:  # the copies stand; the periodic reconcile compares levels too
            result.failed.append(
                (
                    f"{merchant_id}: levels moved during the copy",
                    f"not re-read ({type(err).__name__}: {err}); run storesync reconcile",
                )
            )
            continue
        moved = sorted(
            key
            for key in set(used) | set(now)
            if (used.get(key) and used[key].available) != (now.get(key) and now[key].available)
        )
        if moved:
            async with job_storage(rt.pool) as st:
                await enqueue_jobs(
                    st.conn,
                    [fan_out_job(item, loc, "backfill:levels-moved") for item, loc in moved],
                    merchant_id,
                )
        result.levels_moved += len(moved)
