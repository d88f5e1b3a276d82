"""Collections: a parent collection's counterpart in one child made to match the parent's synced
fields (`domain/collections.py`), reading both stores now (never a webhook payload: deliveries
come out of order)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from storesync.commerce.errors import BudgetBusy, CommerceError
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.catalog import CatalogBlocked, same_view
from storesync.sync.domain.collections import (
    CollectionAction,
    CollectionOutcome,
    collection_view,
    membership_resyncs,
    plan_child_collection,
)
from storesync.sync.domain.echoes import collection_shows_last_write
from storesync.sync.domain.model import Link, LinkKind, MatchedBy
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import AuditSink, CollectionStore, LinkRepository
from storesync.sync.domain.routing import product_job
from storesync.sync.services.channels import collection_publisher
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.collections")


async def sync_collection_to_child(
    parent_store: CollectionStore,
    child_store: CollectionStore,
    parent_collection_id: str,
    links_repo: LinkRepository,
    audit: AuditSink,
    cause: str,
    *,
    with_members: bool = True,
    on_created: Callable[[str], Awaitable[None]] | None = None,
) -> CollectionOutcome:
    """Make one child's counterpart of one parent collection match the parent, reading both
    stores now (never a webhook payload: deliveries come out of order). Idempotent: a rerun
    after a crash between the create and the link finds the collection by its handle.

    `with_members=False` reads neither store's members and computes no membership resyncs (a
    backfill: its copies carry their memberships; the member ids cost up to ~250 points per
    read on the parent's bucket). `on_created`: told the id of a collection this call made
    (it is published on the child's channels: `channels.collection_publisher`)."""
    shop = child_store.shop
    link = next(
        (
            lk
            for lk in await links_repo.links_down(LinkKind.COLLECTION, parent_collection_id)
            if lk.child_shop == shop
        ),
        None,
    )
    parent = await parent_store.read_collection(parent_collection_id, with_products=with_members)
    if parent is None:
        if link is None:
            return CollectionOutcome(CollectionAction.NOTHING)
        before = await child_store.read_collection(link.child_id)
        await child_store.delete_collection(link.child_id)
        await links_repo.delete_link(shop, LinkKind.COLLECTION, parent_collection_id)
        await audit.record(
            AuditRecord(
                shop=shop,
                object_type="collection",
                object_id=link.child_id,
                action="collection_delete",
                before=collection_view(before) if before else None,
                after=None,
                cause=cause,
                detail=f"parent collection {parent_collection_id} was deleted",
            )
        )
        return CollectionOutcome(CollectionAction.DELETED, link.child_id)

    child = await child_store.read_collection(link.child_id, with_products=with_members) if link else None
    last_view = link.synced_view if link and child else None
    matched_by = link.matched_by if link else MatchedBy.CREATED
    if child is None:
        # Never linked, or the linked one was deleted in the child: a collection of the same
        # handle is adopted (a create we made before crashing, or the child's own one).
        found = await child_store.find_collection_by_handle(parent.handle)
        if found is not None and found.id:
            taken = await links_repo.links_of(shop, LinkKind.COLLECTION, child_ids=[found.id])
            if any(lk.parent_id != parent_collection_id for lk in taken):
                raise CatalogBlocked(
                    f"{shop}: collection {parent.handle!r} is linked to another parent collection "
                    f"({taken[0].parent_id})"
                )
            child = await child_store.read_collection(found.id, with_products=with_members)
            if link is None:
                matched_by = MatchedBy.HANDLE
    plan = plan_child_collection(parent, child, shop, last_view)
    if plan.blocked:
        await audit.record(
            AuditRecord(
                shop=shop,
                object_type="collection",
                object_id=plan.child_collection_id or "",
                action="collection_blocked",
                before=None,
                after=None,
                cause=cause,
                detail=plan.blocked,
            )
        )
        raise CatalogBlocked(plan.blocked)

    if child is None:
        written = await child_store.create_collection(plan.input)
        action = CollectionAction.CREATED
    elif plan.changes:
        written = await child_store.update_collection(child.id or "", plan.input)
        action = CollectionAction.UPDATED
    else:
        written = child
        action = CollectionAction.UNCHANGED
    child_id = written.id or ""
    if link is None or link.child_id != child_id or not same_view(link.synced_view, plan.expected):
        await links_repo.save_links(
            [
                Link(
                    LinkKind.COLLECTION,
                    shop,
                    parent_collection_id,
                    child_id,
                    matched_by,
                    synced_view=plan.expected,
                )
            ]
        )
    if action is CollectionAction.CREATED and on_created is not None:
        await on_created(child_id)
    if action is not CollectionAction.UNCHANGED:
        await audit.record(
            AuditRecord(
                shop=shop,
                object_type="collection",
                object_id=child_id,
                action="collection_create" if action is CollectionAction.CREATED else "collection_update",
                before=collection_view(child) if child else None,
                after=plan.expected,
                cause=cause,
                detail="; ".join(c.describe(shop) for c in plan.changes),
            )
        )
    for c in plan.reverted:
        await audit.record(
            AuditRecord(
                shop=shop,
                object_type="collection",
                object_id=child_id,
                action="revert_child_edit",
                before=c.child_value,
                after=c.parent_value,
                cause=cause,
                detail=c.describe(shop),
            )
        )

    resync: list[str] = []
    if parent.conditions is None and parent.product_ids is not None:
        members = list(child.product_ids or ()) if child is not None else []
        links = await links_repo.links_of(
            shop, LinkKind.PRODUCT, parent_ids=list(parent.product_ids), child_ids=members
        )
        resync = membership_resyncs(parent, members, links)
    return CollectionOutcome(action, child_id, plan, tuple(resync))


async def collection_to_child(
    rt: Runtime, st: Storage, net: MerchantNetwork, child_shop: str, parent_collection_id: str, cause: str
) -> None:
    """A collection job: sync one child's counterpart, then a product job for every parent
    product whose copy sits in the wrong place for that collection."""
    outcome = await sync_collection_to_child(
        rt.collections(net.parent.shop),
        rt.collections(child_shop),
        parent_collection_id,
        st.links,
        st.audit,
        cause,
        on_created=collection_publisher(rt, st, net, child_shop, parent_collection_id, cause),
    )
    log.info(
        "collection synced",
        child=child_shop,
        collection=parent_collection_id,
        result=str(outcome.action),
        products_to_resync=len(outcome.resync_products),
    )
    await enqueue_jobs(
        st.conn, [product_job(child_shop, pid, cause) for pid in outcome.resync_products], net.merchant_id
    )


async def child_shows_last_write(rt: Runtime, shop: str, link: Link) -> bool:
    """Whether the child's collection shows exactly the synced fields last written to it
    (`echoes.collection_shows_last_write`): one read of the child collection; any doubt (no
    record, a store error) answers False."""
    try:
        child = await rt.collections(shop).read_collection(link.child_id)
    except BudgetBusy:
        raise  # the job goes back to the queue until the store's bucket can pay
    except CommerceError as err:
        log.info(
            "child collection not read; its job decides", shop=shop, collection=link.child_id, error=str(err)
        )
        return False
    return child is not None and collection_shows_last_write(child, link)
