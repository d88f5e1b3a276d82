"""Stores and links: which stores of a merchant are active, linking existing catalogs
(`storesync link`), webhook subscriptions (`storesync webhooks sync`), resuming a paused store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import psycopg

from storesync.commerce.subscriptions import SubscriptionChanges, reconcile_subscriptions
from storesync.db.credentials_sql import forget_token
from storesync.db.network_sql import resume_store as resume
from storesync.queue import ops as queue_ops
from storesync.sync.adapters.postgres import Storage, job_storage, paused_among
from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.echoes import ProductDigest, read_product_digest
from storesync.sync.domain.linking import (
    LinkReport,
    match_catalogs,
    match_collections,
    with_views_already_in_step,
)
from storesync.sync.domain.model import Product
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import CatalogScan, LinkRepository
from storesync.sync.domain.topics import subscriptions
from storesync.sync.services.context import Runtime


def merchants(rt: Runtime, merchant: str | None) -> list[MerchantNetwork]:
    """Every merchant of the network, or the one named."""
    if merchant is None:
        return list(rt.network.merchants)
    return [rt.merchant(merchant)]


async def without_paused(st: Storage, net: MerchantNetwork) -> tuple[MerchantNetwork, dict[str, str]]:
    """The merchant without its paused children (and the paused stores with their reason)."""
    paused = await paused_among(st.conn, [s.shop for s in net.stores])
    return replace(net, children=tuple(c for c in net.children if c.shop not in paused)), paused


# --------------------------------------------------------------------------- link


async def remember_read_products(st: Storage, scans: Mapping[str, CatalogScan]) -> int:
    """Keep, for every product the scans read, its digest as the last payload seen
    (`echoes.read_product_digest`): the first products/update after a link, backfill or
    reconcile pass that shows only a stock move is then known as one without reading the
    product again (a freshly linked catalog otherwise costs a product read per store on the
    first sale of each product). Returns how many were kept."""
    kept = 0
    for shop, scan in scans.items():
        products = [p async for p in scan.all_products()]
        # Seconds of hashing for a large catalog: in a thread, off the worker's event loop.
        digests = await asyncio.to_thread(_read_digests, products)
        kept += await st.product_payloads.remember_read(shop, digests)
    return kept


def _read_digests(products: list[Product]) -> list[tuple[str, ProductDigest]]:
    return [(p.id, d) for p in products if p.id is not None and (d := read_product_digest(p)) is not None]


async def link_network(
    network: MerchantNetwork,
    scans: Mapping[str, CatalogScan],
    links_repo: LinkRepository | None = None,
    policy: SyncPolicy | None = None,
) -> list[LinkReport]:
    """Match every child of a merchant against its parent (`domain/linking.py`). With
    `links_repo` the links are stored; without, it is a dry run. With `policy`, a product link
    whose child already shows the parent's synced fields is stored with that view
    (`linking.with_views_already_in_step`)."""
    parent_scan = scans[network.parent.shop]
    parent_products = [p async for p in parent_scan.all_products()]
    parent_collections = [c async for c in parent_scan.all_collections()]
    reports = []
    for child in network.children:
        scan = scans[child.shop]
        child_products = [p async for p in scan.all_products()]
        report = match_catalogs(parent_products, child_products, child.shop)
        report.collection_links, report.missing_collections = match_collections(
            parent_collections, [c async for c in scan.all_collections()], child.shop
        )
        if links_repo is not None:
            links = report.links()
            if policy is not None:
                links = with_views_already_in_step(links, parent_products, child_products, policy, child.shop)
            await links_repo.save_links(links)
        reports.append(report)
    return reports


async def link(rt: Runtime, *, dry_run: bool, merchant: str | None = None) -> list[tuple[str, LinkReport]]:
    """Match every child against its parent by SKU, then barcode, then handle; store the links
    unless `dry_run`. Duplicates, missing SKUs and conflicts are reported, never guessed."""
    out = []
    async with job_storage(rt.pool) as st:
        for net in merchants(rt, merchant):
            scans = rt.scans(net)
            reports = await link_network(
                net, scans, None if dry_run else st.links, rt.policy(net.merchant_id)
            )
            if not dry_run:
                await remember_read_products(st, scans)
            out += [(net.merchant_id, r) for r in reports]
    return out


# --------------------------------------------------------------------------- webhooks

_NOT_OFFERED = "does not exist in 'WebhookSubscriptionTopic'"


@dataclass
class StoreSubscriptions:
    shop: str
    changes: SubscriptionChanges
    not_offered: list[str] = field(default_factory=list)  # topics this store's API does not know

    @property
    def failed(self) -> dict[str, str]:
        return {t: why for t, why in self.changes.failed.items() if t not in self.not_offered}


async def webhooks_sync(
    rt: Runtime, callback_url: str, *, keep_others: bool = False
) -> list[StoreSubscriptions]:
    """Every store's subscriptions made exactly the topics its role needs (`domain/topics.py`), to
    `callback_url` (idempotent: a second run keeps everything). A topic the store's API version
    does not offer is reported apart from real failures."""
    out = []
    for m in rt.config.merchants:
        for s in m.stores:
            topics = subscriptions("parent" if s.shop == m.parent.shop else "child")
            ch = await reconcile_subscriptions(
                rt.clients.client(s.shop), callback_url, topics, keep_others=keep_others
            )
            out.append(
                StoreSubscriptions(s.shop, ch, [t for t, why in ch.failed.items() if _NOT_OFFERED in why])
            )
    return out


# --------------------------------------------------------------------------- paused stores


def resume_store(conn: psycopg.Connection, shop: str) -> int | None:
    """Make a paused store active again and its parked jobs due now; None if no such store. An
    issued token is forgotten: the next call fetches a fresh one (with the scopes granted now)."""
    with conn.transaction():
        if not resume(conn, shop):
            return None
        forget_token(conn, shop)
        return queue_ops.unpark(conn, shop)
