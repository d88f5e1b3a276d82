"""The operator commands over the wired engine: `storesync link`, `backfill`, `reconcile`,
`webhooks sync` and resuming a paused store. Each runs in the calling process against the
stores (shared Postgres rate-limit budget) and the sync tables; the CLI adds the progress bars.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg

from storesync.commerce.errors import CommerceError, StoreUnauthorized
from storesync.config import Settings
from storesync.db.pools import async_pooled_pool
from storesync.logs import get_logger
from storesync.sync.linking import LinkReport, link_network
from storesync.sync.model import LinkKind
from storesync.sync.network import MerchantNetwork
from storesync.sync.reconcile import ReconcileReport, Repair, apply_repairs, reconcile_network
from storesync.sync.runtime import (
    Storage,
    SyncRuntime,
    SyncSettings,
    job_storage,
    load_network_config,
    pause_store,
    paused_among,
)
from storesync.sync.saga import SagaState
from storesync.sync.shopify_adapter import BulkCatalogScan, ScannedParent

log = get_logger("storesync.sync.commands")

Progress = Callable[[str, int], None]  # (description, units done since the last call)


@asynccontextmanager
async def cli_runtime(
    settings: Settings, *, sync_settings: SyncSettings | None = None, max_connections: int = 24
) -> AsyncIterator[SyncRuntime]:
    """A runtime for a command: its own small pool (budget and sync tables) and API clients."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call drowns the report
    pool = async_pooled_pool(
        settings, name="storesync-cli", min_size=1, max_size=max(max_connections, settings.pool_max_size)
    )
    await pool.open(wait=True, timeout=settings.connect_timeout * 2)
    try:
        config = await asyncio.to_thread(load_network_config, settings)
        rt = SyncRuntime(settings, config, pool=pool, sync_settings=sync_settings)
        try:
            yield rt
        finally:
            await rt.aclose()
    finally:
        await pool.close()


def _merchants(rt: SyncRuntime, merchant: str | None) -> list[MerchantNetwork]:
    if merchant is None:
        return list(rt.network.merchants)
    return [rt.merchant(merchant)]


async def _active(st: Storage, net: MerchantNetwork) -> tuple[MerchantNetwork, dict[str, str]]:
    """The merchant without its paused children (and the paused ones with their reason)."""
    paused = await paused_among(st.conn, [s.shop for s in net.stores])
    return replace(net, children=tuple(c for c in net.children if c.shop not in paused)), paused


# --------------------------------------------------------------------------- link


async def link(
    rt: SyncRuntime, *, dry_run: bool, merchant: str | None = None
) -> list[tuple[str, LinkReport]]:
    """Match every child against its parent by SKU, then barcode, then handle; store the links
    unless `dry_run`. Duplicates, missing SKUs and conflicts are reported, never guessed."""
    out = []
    async with job_storage(rt.pool) as st:
        for net in _merchants(rt, merchant):
            reports = await link_network(
                net, rt.scans(net), None if dry_run else st.links, rt.policy(net.merchant_id)
            )
            out += [(net.merchant_id, r) for r in reports]
    return out


# --------------------------------------------------------------------------- reconcile


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
        out += [f"  NOT fixed {x.describe()} ({x.reason})" for x in self.left]
        out += [f"  skipped {s}: {why}" for s, why in self.paused.items()]
        return out


async def reconcile_merchant(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, cause: str
) -> ReconcileResult:
    """Compare the parent with every active child and repair the drift through live-sync code."""
    active, paused = await _active(st, net)
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
    from storesync.sync.shopify_collections import ShopifyCollections

    collections = {s.shop: ShopifyCollections(rt.api(s.shop).client) for s in active.stores}
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
    )
    return ReconcileResult(net.merchant_id, report, fixed, left, skipped)


async def reconcile(
    rt: SyncRuntime, *, merchant: str | None = None, cause: str = "reconcile:cli"
) -> list[ReconcileResult]:
    async with job_storage(rt.pool) as st:
        return [await reconcile_merchant(rt, st, net, cause) for net in _merchants(rt, merchant)]


# --------------------------------------------------------------------------- backfill


@dataclass
class BackfillResult:
    reports: list[LinkReport] = field(default_factory=list)
    collections_created: list[str] = field(default_factory=list)  # "<child>: <handle>"
    completed: list[str] = field(default_factory=list)  # saga ids
    compensated: list[tuple[str, str]] = field(default_factory=list)  # (saga id, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (saga id or shop, why): rerun resumes
    paused: dict[str, str] = field(default_factory=dict)
    levels_moved: int = 0  # parent levels that changed during the copy, fanned out afterwards

    @property
    def ok(self) -> bool:
        return not (self.compensated or self.failed)


def _saga_id(known: dict[str, str], child_shop: str, parent_product_id: str) -> str:
    """Deterministic, so a rerun after a crash resumes the same saga; a compensated one is
    retried under the next number. `known`: the copy sagas' states (`_copy_saga_states`)."""
    base = f"copy:{child_shop}:{parent_product_id}"
    saga_id, n = base, 1
    while known.get(saga_id) in (SagaState.COMPENSATED, SagaState.STUCK):
        n += 1
        saga_id = f"{base}:{n}"
    return saga_id


async def _copy_saga_states(st: Storage) -> dict[str, str]:
    """Every copy saga's state, read once per backfill (not one read per copy)."""
    from storesync.sync.wiring_sql import COPY_SAGA_STATES

    cur = await st.conn.execute(COPY_SAGA_STATES)
    return dict(await cur.fetchall())


async def _unfinished_copies(st: Storage, children: set[str]) -> list[tuple[str, str]]:
    """(child, parent product) of copy sagas left running or compensating in these children."""
    from storesync.sync.wiring_sql import UNFINISHED_SAGAS

    cur = await st.conn.execute(UNFINISHED_SAGAS, {"limit": 100_000})
    out = []
    for saga_id, shop in await cur.fetchall():
        if shop not in children or not saga_id.startswith("copy:"):
            continue
        rec = await st.steps.load(saga_id)
        if rec is not None and rec.steps:
            out.append((shop, rec.steps[0].params["parent_product_id"]))
    return out


async def _create_missing_collections(
    rt: SyncRuntime, st: Storage, net: MerchantNetwork, child: str, report: LinkReport, result: BackfillResult
) -> None:
    """The parent's collections the child lacks, made by the collection sync itself (title,
    description, SEO, sort order, a smart collection's rules) and linked with the view written,
    so the copies' memberships and the collection jobs agree with them from the start. A
    collection that cannot be converted (smart vs manual) is reported; the copies go on."""
    if not report.missing_collections:
        return
    from storesync.sync.catalog import CatalogBlocked
    from storesync.sync.collection_sync import CollectionAction, sync_collection_to_child
    from storesync.sync.shopify_collections import ShopifyCollections

    parent, mine = (
        ShopifyCollections(rt.api(net.parent.shop).client),
        ShopifyCollections(rt.api(child).client),
    )
    for pid in report.missing_collections:
        try:
            out = await sync_collection_to_child(
                parent, mine, pid, st.links, st.audit, "backfill:collections", with_members=False
            )
        except CatalogBlocked as err:
            result.failed.append((f"{child}: collection {pid}", str(err)))
            continue
        if out.action in (CollectionAction.CREATED, CollectionAction.UPDATED) and out.plan is not None:
            result.collections_created.append(f"{child}: {out.plan.input.get('handle') or pid}")


async def backfill(
    rt: SyncRuntime,
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
    from storesync.sync.handlers import run_copy_saga

    result = BackfillResult()
    work: list[tuple[MerchantNetwork, str, str]] = []  # (merchant, child, parent product)
    scanned: dict[str, ScannedParent] = {}  # merchant -> its parent as scanned
    parent_scans: dict[
        str, tuple[BulkCatalogScan, dict]
    ] = {}  # merchant -> (scan, the levels the copies use)
    looked_at: list[tuple[MerchantNetwork, str]] = []  # the children linked (and copied into) by this run
    levels_read_at: dict[str, datetime] = {}  # merchant -> when the scan read the parent's levels
    async with job_storage(rt.pool) as st:
        for net in _merchants(rt, merchant):
            active, paused = await _active(st, net)
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
            levels_read_at[net.merchant_id] = datetime.now(UTC)
            parent_levels = await parent_scan.levels()
            reports = await link_network(active, scans, st.links, rt.policy(net.merchant_id))
            result.reports += reports
            parent_products = await parent_scan.products()
            scanned[net.merchant_id] = ScannedParent(rt.api(net.parent.shop), parent_products, parent_levels)
            parent_scans[net.merchant_id] = (parent_scan, dict(parent_levels))

            # The children's missing collections at once (each child on its own connection): the
            # copies start after them, and every second before the first copy leaves the
            # children's full buckets unused.
            async def collections_of(report: LinkReport, net: MerchantNetwork = active) -> None:
                async with job_storage(rt.pool) as mine:
                    await _create_missing_collections(rt, mine, net, report.child_shop, report, result)

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
        sagas = await _copy_saga_states(st)
    refresh = asyncio.create_task(_refresh_link_statistics(rt))

    async def copy_all(items: list[tuple[MerchantNetwork, str, str]]) -> None:
        async with job_storage(rt.pool) as st:
            for net, shop, pid in items:
                if shop in result.paused:
                    continue
                saga_id = _saga_id(sagas, shop, pid)
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
    await _levels_moved_meanwhile(rt, parent_scans, {net.merchant_id: net for net, _, _ in work}, result)
    await _link_overdue_copies_later(rt, {shop: net for net, shop in looked_at})
    return result


async def _link_overdue_copies_later(rt: SyncRuntime, children: dict[str, MerchantNetwork]) -> None:
    """The copies' variants are linked from their products/create webhooks as the workers handle
    them; a job per child (`sync.link_pending_copies`) links, a little later, those whose
    webhook never came (a copy an earlier run left pending included). The backfill itself does
    not wait for the webhooks: its copies are complete in the stores."""
    from storesync.queue.enqueue import enqueue_many_async
    from storesync.sync.handlers import link_pending_job

    delay, now = rt.sync_settings.link_pending_after_s, datetime.now(UTC)
    async with job_storage(rt.pool) as st:
        specs = [
            link_pending_job(net, shop, "backfill", delay, now)
            for shop, net in sorted(children.items())
            if await st.links.pending_links(shop)
        ]
        if specs:
            async with st.conn.transaction():
                await enqueue_many_async(st.conn, specs)


# How often a backfill refreshes the links table's planner statistics while it copies.
LINK_STATISTICS_EVERY_S = 10.0


async def _refresh_link_statistics(rt: SyncRuntime) -> None:
    """ANALYZE the links table now and every `LINK_STATISTICS_EVERY_S` while the copies run (a
    bulk load outpaces autovacuum; see `wiring_sql.ANALYZE_LINKS`). A failure is logged: the
    copies do not depend on it."""
    from storesync.sync.wiring_sql import ANALYZE_LINKS

    while True:
        try:
            async with job_storage(rt.pool) as st:
                await st.conn.execute(ANALYZE_LINKS)
        except psycopg.Error as err:
            log.warning("links statistics not refreshed", error=str(err))
        await asyncio.sleep(LINK_STATISTICS_EVERY_S)


async def _levels_moved_meanwhile(
    rt: SyncRuntime,
    parent_scans: dict[str, tuple[BulkCatalogScan, dict]],
    copied: dict[str, MerchantNetwork],
    result: BackfillResult,
) -> None:
    """The copies wrote the parent's levels as the scan read them. A level that moved before its
    product was linked in a child found no link to fan out to: read every level again (one bulk
    query) and fan out each one that differs, through the workers' `sync.fan_out_level` jobs
    (they read the parent's level then). Moves after this read reach the linked copies through
    the parent's level webhooks."""
    from storesync.sync.handlers import enqueue_jobs
    from storesync.sync.routing import fan_out_job

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


# --------------------------------------------------------------------------- webhooks and stores


# What each role needs: the parent's catalog (products, collections) and stock flow down; a
# child's sales flow up and its edits (products, linked collections) and stock moves are reverted.
PARENT_TOPICS = (
    "products/create",
    "products/update",
    "products/delete",
    "collections/create",
    "collections/update",
    "collections/delete",
    "inventory_levels/update",
    "app/uninstalled",
)
CHILD_TOPICS = (*PARENT_TOPICS, "orders/create", "orders/updated", "orders/cancelled", "refunds/create")
_NOT_OFFERED = "does not exist in 'WebhookSubscriptionTopic'"


@dataclass
class StoreSubscriptions:
    shop: str
    changes: object  # commerce.subscriptions.SubscriptionChanges
    not_offered: list[str] = field(default_factory=list)  # topics this store's API does not know

    @property
    def failed(self) -> dict[str, str]:
        return {t: why for t, why in self.changes.failed.items() if t not in self.not_offered}  # type: ignore[attr-defined]


async def webhooks_sync(
    rt: SyncRuntime, callback_url: str, *, keep_others: bool = False
) -> list[StoreSubscriptions]:
    """Every store's subscriptions made exactly the topics its role needs, to `callback_url`
    (idempotent: a second run keeps everything). A topic the store's API version does not offer
    is reported apart from real failures."""
    from storesync.commerce.subscriptions import reconcile_subscriptions

    out = []
    for m in rt.config.merchants:
        for s in m.stores:
            topics = PARENT_TOPICS if s.shop == m.parent.shop else CHILD_TOPICS
            ch = await reconcile_subscriptions(
                rt.clients.client(s.shop), callback_url, list(topics), keep_others=keep_others
            )
            out.append(
                StoreSubscriptions(s.shop, ch, [t for t, why in ch.failed.items() if _NOT_OFFERED in why])
            )
    return out


def resume_store(conn: psycopg.Connection, shop: str) -> int | None:
    """Make a paused store active again and its parked jobs due now; None if no such store. An
    issued token is forgotten: the next call fetches a fresh one (with the scopes granted now)."""
    from storesync.db.credentials_sql import forget_token
    from storesync.db.network_sql import resume_store as resume
    from storesync.sync.wiring_sql import NOTIFY_JOBS, UNPARK_JOBS

    with conn.transaction():
        if not resume(conn, shop):
            return None
        forget_token(conn, shop)
        n = conn.execute(UNPARK_JOBS, {"shop": shop}).rowcount
        conn.execute(NOTIFY_JOBS)
    return n
