"""Job handlers for collection objects, on `handlers.registry` (imported by `handlers.py`, so the
worker's default `--handlers` has them).

- `webhook.collections_create/update/delete` route (`routing.route_collection_webhook`): a
  parent's event becomes one `sync.collection_to_child` per child; a child's event about a linked
  collection re-syncs that one, unless the child shows exactly the synced fields last written
  (our own write, or a membership change: memberships travel with the product jobs), 1 s later
  so a burst collapses.
- `sync.collection_to_child` runs `collection_sync.sync_collection_to_child`, then enqueues a
  product job for every parent product whose copy sits in the wrong place for that collection.
"""

from __future__ import annotations

from dataclasses import replace

from storesync.commerce.errors import CommerceError
from storesync.queue.handlers import JobContext
from storesync.sync import routing
from storesync.sync.audit import delivery_cause, job_cause
from storesync.sync.collection_sync import child_shows_last_write, sync_collection_to_child
from storesync.sync.handlers import (
    CHILD_EVENT_DEBOUNCE_S,
    _guarded,
    _lookup,
    _runtime,
    enqueue_jobs,
    log,
    registry,
)
from storesync.sync.model import LinkKind, gid
from storesync.sync.runtime import SyncRuntime, job_storage
from storesync.sync.shopify_collections import ShopifyCollections


def collections_api(rt: SyncRuntime, shop: str) -> ShopifyCollections:
    return ShopifyCollections(rt.api(shop).client)


@registry.register("webhook.collections_create")
@registry.register("webhook.collections_update")
@registry.register("webhook.collections_delete")
async def collection_webhook(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, store = _lookup(rt, p["shop"])
    body = p["body"]
    async with job_storage(ctx.pool) as st:
        link = None
        if store.role == "child":
            collection_id = gid("Collection", body.get("admin_graphql_api_id") or body.get("id"))
            found = await st.links.links_of(store.shop, LinkKind.COLLECTION, child_ids=[collection_id])
            link = found[0] if found else None
        routed = routing.route_collection_webhook(
            net, store.shop, p["topic"], body, link, delivery_cause(p["delivery_id"])
        )
        if routed.ignored:
            log.info("collection webhook ignored", shop=store.shop, why=routed.ignored)
            return
        if store.role == "child" and link is not None:
            if p["topic"] == "collections/update" and await _child_shows_last_write(rt, store.shop, link):
                log.info(
                    "child collection webhook reports nothing new", shop=store.shop, collection=link.child_id
                )
                return
            routed.jobs = [replace(j, delay_s=max(j.delay_s, CHILD_EVENT_DEBOUNCE_S)) for j in routed.jobs]
        await enqueue_jobs(st.conn, routed.jobs, net.merchant_id)


async def _child_shows_last_write(rt: SyncRuntime, shop: str, link) -> bool:
    """One read of the child collection; any doubt (no record, a store error) answers False."""
    try:
        child = await collections_api(rt, shop).read_collection(link.child_id)
    except CommerceError as err:
        log.info(
            "child collection not read; its job decides", shop=shop, collection=link.child_id, error=str(err)
        )
        return False
    return child is not None and child_shows_last_write(child, link)


@registry.register(routing.JOB_COLLECTION_TO_CHILD)
async def collection_to_child(ctx: JobContext) -> None:
    p = ctx.payload
    rt = await _runtime(ctx)
    net, _ = _lookup(rt, p["child_shop"])
    cause = p.get("cause") or job_cause(ctx.job_id)
    async with job_storage(ctx.pool) as st:

        async def work() -> None:
            outcome = await sync_collection_to_child(
                collections_api(rt, net.parent.shop),
                collections_api(rt, p["child_shop"]),
                p["parent_collection_id"],
                st.links,
                st.audit,
                cause,
            )
            log.info(
                "collection synced",
                child=p["child_shop"],
                collection=p["parent_collection_id"],
                result=str(outcome.action),
                products_to_resync=len(outcome.resync_products),
            )
            await enqueue_jobs(
                st.conn,
                [routing.product_job(p["child_shop"], pid, cause) for pid in outcome.resync_products],
                net.merchant_id,
            )

        await _guarded(ctx, st, [net.parent.shop, p["child_shop"]], work)
