"""The catalog: a parent product's copy in one child made to match the parent (parent
precedence, `domain/catalog.py`), reading both stores' current state (never a webhook payload),
and the checks a product webhook needs to start no more product jobs than it must.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from storesync.commerce.errors import BudgetBusy, CommerceError
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import ScannedParent
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.catalog import (
    CatalogBlocked,
    NeedsCopy,
    ProductPlan,
    SyncPolicy,
    actual_view,
    links_after_write,
    plan_child_product,
    same_view,
)
from storesync.sync.domain.catalog_rules import DeleteAction, parent_delete_action
from storesync.sync.domain.copies import CopiesLinked
from storesync.sync.domain.echoes import product_shows_last_write
from storesync.sync.domain.media import MAX_UPLOADS, media_links
from storesync.sync.domain.metafields import PRODUCT_OWNER
from storesync.sync.domain.model import LinkKind, LinkMap, Product
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import ArchivedCopies, AttentionLog, AuditSink, CatalogStore, LinkRepository
from storesync.sync.domain.routing import (
    Routed,
    fan_out_job,
    media_check_job,
    product_job,
    route_parent_product_update,
)
from storesync.sync.domain.saga import COPY_PRODUCT, SagaState
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import (
    copy_to_child,
    fan_out_levels_moved_since_copy,
    link_pending_copies,
)

log = get_logger("storesync.sync.catalog")


async def sync_product_to_child(
    parent_store: CatalogStore,
    child_store: CatalogStore,
    parent_product_id: str,
    links_repo: LinkRepository,
    policy: SyncPolicy,
    audit: AuditSink,
    cause: str,
    on_copy_linked: Callable[[CopiesLinked], Awaitable[None]] | None = None,
    *,
    attention: AttentionLog | None = None,
    archived: ArchivedCopies | None = None,
) -> ProductPlan | None:
    """Make one child's copy of one parent product match the parent, reading both stores' current
    state (never a webhook payload). Returns the plan (noop when nothing had to change), or None
    when the parent product is gone (its copy archived, deleted or left as the child's rules
    say; a product the child had before it was linked only unlinked and reported). A copy whose
    variants were pending is linked from the read, and `on_copy_linked` told (the parent levels
    that moved meanwhile are the caller's to fan out). No copy in the child (never made, or
    deleted there): `NeedsCopy`, for the copy saga.

    The write: one productSet of what the product itself lacks (no metafields: the child's
    stay), then the synced namespaces' metafields (`metafieldsSet` / `metafieldsDelete`), then
    the media (`domain/media.py`), each only when it has something to do. `attention`: where
    what needs the merchant is recorded (a media given up on, a product of the child's own
    unlinked); `archived`: where archived copies are remembered.
    """
    links = await links_repo.link_map(child_store.shop)
    parent = await parent_store.read_product(parent_product_id)
    child_id = links.child_id(LinkKind.PRODUCT, parent_product_id)
    if parent is None:
        if child_id:
            await parent_product_deleted(
                child_store, parent_product_id, links, links_repo, policy, audit, cause, attention, archived
            )
        return None
    if child_id is None:
        raise NeedsCopy(f"{child_store.shop} has no copy of {parent_product_id}", parent)
    child = await child_store.read_product(child_id)
    if child is None:
        # Deleted in the child: its links go, and the copy saga makes it again.
        await forget_product_links(links_repo, links, parent_product_id)
        raise NeedsCopy(f"{child_store.shop}: the copy {child_id} of {parent_product_id} is gone", parent)
    if (copies := await link_pending_copies(links_repo, links, [child])).pending:
        links = await links_repo.link_map(
            child_store.shop
        )  # a copy's variants, linked just now (here or elsewhere)
        if copies.linked and on_copy_linked is not None:
            await on_copy_linked(copies)
    plan = plan_child_product(parent, child, links, policy)
    if plan.blocked:
        await audit.record(
            AuditRecord(
                shop=child_store.shop,
                object_type="product",
                object_id=child_id,
                action="product_set_blocked",
                before=None,
                after=None,
                cause=cause,
                detail=plan.blocked,
            )
        )
        raise CatalogBlocked(plan.blocked)
    if plan.media is not None:
        await _report_media_given_up(child_store, plan, parent, child_id, audit, attention, cause)
    if plan.noop:
        link = links.link_down(LinkKind.PRODUCT, parent_product_id)
        if link is not None and not same_view(link.synced_view, plan.expected):
            # The child already shows the parent's synced fields (e.g. linked by SKU, never
            # written): remember that, so the webhooks' checks against the last write
            # (`echoes.children_behind`, the child echo check) stop asking again.
            await links_repo.set_synced_view(child_store.shop, parent_product_id, plan.expected)
        return plan
    new_links = await _write_product(child_store, plan, parent, links, links_repo)
    await _write_metafields(child_store, plan, child_id, new_links)
    await _write_media(child_store, plan, parent, child_id, links_repo, audit, cause)
    # The view is saved last: a write that failed halfway leaves the link behind (a retry or
    # the next delivery finds the child behind and writes what is left).
    await links_repo.set_synced_view(child_store.shop, parent_product_id, plan.expected)
    await audit.record(
        AuditRecord(
            shop=child_store.shop,
            object_type="product",
            object_id=child_id,
            action="product_set",
            before=actual_view(child, policy, links),
            after=plan.expected,
            cause=cause,
            detail="; ".join(c.describe(child_store.shop) for c in plan.changes),
        )
    )
    for c in plan.reverted:
        await audit.record(
            AuditRecord(
                shop=child_store.shop,
                object_type="product",
                object_id=child_id,
                action="revert_child_edit",
                before=c.child_value,
                after=c.parent_value,
                cause=cause,
                detail=c.describe(child_store.shop),
            )
        )
    return plan


async def _write_product(
    child_store: CatalogStore, plan: ProductPlan, parent: Product, links: LinkMap, links_repo: LinkRepository
) -> LinkMap:
    """The productSet, when the product itself has something to write; the child's links after it
    (variants created linked, removed ones forgotten)."""
    if not (plan.product_changes or plan.created_variants or plan.removed_variants):
        return links
    written = await child_store.product_set(plan.input, product_id=plan.child_product_id)
    for child_variant_id in plan.removed_variants:
        parent_variant_id = links.parent_id(LinkKind.VARIANT, child_variant_id)
        if parent_variant_id:
            await links_repo.delete_link(child_store.shop, LinkKind.VARIANT, parent_variant_id)
    saved = links_after_write(plan, parent, written, links)
    await links_repo.save_links(saved)
    return LinkMap(links.child_shop, [*(lk for lk in links.links if lk.kind is not LinkKind.VARIANT), *saved])


async def _write_metafields(
    child_store: CatalogStore, plan: ProductPlan, child_id: str, links: LinkMap
) -> None:
    """The synced namespaces' metafields, set and deleted by owner (`domain/metafields.py`)."""
    if not plan.metafields:
        return
    sets, deletes = [], []
    for w in plan.metafields:
        owner = child_id if w.owner == PRODUCT_OWNER else links.child_id(LinkKind.VARIANT, w.owner)
        if owner is None:
            continue  # a variant not linked (yet): its own write carries its metafields
        key = {"ownerId": owner, "namespace": w.namespace, "key": w.key}
        if w.deletes:
            deletes.append(key)
        else:
            sets.append({**key, "type": w.type, "value": w.value})
    if sets:
        await child_store.set_metafields(sets)
    if deletes:
        await child_store.delete_metafields(deletes)


async def _write_media(
    child_store: CatalogStore,
    plan: ProductPlan,
    parent: Product,
    child_id: str,
    links_repo: LinkRepository,
    audit: AuditSink,
    cause: str,
) -> None:
    """The media write (`domain/media.py`): the new uploads linked to the parent media they copy
    (a FAILED copy uploaded again is audited)."""
    media = plan.media
    if media is None:
        return
    if media.files is not None:
        ids = await child_store.set_media(child_id, media.files)
        for parent_media_id in media.dropped:
            await links_repo.delete_link(child_store.shop, LinkKind.MEDIA, parent_media_id)
        await links_repo.save_links(media_links(child_store.shop, parent, child_id, media, ids))
        retried = [pm.id for pm, number in media.uploaded if number > 1]
        if retried:
            await audit.record(
                AuditRecord(
                    child_store.shop,
                    "product",
                    child_id,
                    "media_retry",
                    None,
                    {"media": retried},
                    cause,
                    detail=f"{len(retried)} media of {parent.id} FAILED in {child_store.shop}; uploaded again",
                )
            )


async def _report_media_given_up(
    child_store: CatalogStore,
    plan: ProductPlan,
    parent: Product,
    child_id: str,
    audit: AuditSink,
    attention: AttentionLog | None,
    cause: str,
) -> None:
    """Copies that FAILED as often as they may: reported once (they stay as they are)."""
    assert plan.media is not None
    for parent_media_id, child_media_id in plan.media.given_up:
        why = (
            f"media {parent_media_id} of parent product {parent.id} ({parent.handle}) FAILED in "
            f"{child_store.shop} after {MAX_UPLOADS} uploads (child media {child_media_id}); "
            "the rest of the product is synced"
        )
        if attention is not None and await attention.report(
            child_store.shop, "media_failed", f"{parent.id} {parent_media_id}", why
        ):
            await audit.record(
                AuditRecord(
                    child_store.shop, "product", child_id, "media_failed", None, None, cause, detail=why
                )
            )


async def forget_product_links(links_repo: LinkRepository, links: LinkMap, parent_product_id: str) -> None:
    """A parent product's links in one child (product, variants, media) forgotten."""
    for link in list(links.links):
        if (link.kind is LinkKind.PRODUCT and link.parent_id == parent_product_id) or (
            link.kind in (LinkKind.VARIANT, LinkKind.MEDIA) and link.parent_product_id == parent_product_id
        ):
            await links_repo.delete_link(links.child_shop, link.kind, link.parent_id)


async def parent_product_deleted(
    child_store: CatalogStore,
    parent_product_id: str,
    links: LinkMap,
    links_repo: LinkRepository,
    policy: SyncPolicy,
    audit: AuditSink,
    cause: str,
    attention: AttentionLog | None,
    archived: ArchivedCopies | None,
) -> DeleteAction:
    """The parent product is gone: its copy in this child archived, deleted or left as the
    child's rules say (`catalog_rules.parent_delete_action`); a product the child had before it
    was linked is never touched, only unlinked and reported. The links go in every case."""
    link = links.link_down(LinkKind.PRODUCT, parent_product_id)
    assert link is not None
    shop, child_id = child_store.shop, link.child_id
    action = parent_delete_action(link, policy.rules(shop))
    before = await child_store.read_product(child_id)
    detail = f"parent product {parent_product_id} was deleted"
    if before is None:
        action_name = "product_gone"
    elif action is DeleteAction.ARCHIVE:
        if before.status != "ARCHIVED":
            await child_store.update_product_fields(child_id, {"status": "ARCHIVED"})
        if archived is not None:
            await archived.add(shop, child_id, before.handle, parent_product_id)
        action_name = "product_archive"
    elif action is DeleteAction.DELETE:
        await child_store.delete_product(child_id)
        action_name = "product_delete"
    elif action is DeleteAction.LEAVE:
        action_name = "product_unlink"
        detail += "; the copy is left as it is (on_parent_delete = leave)"
    else:
        action_name = "product_unlink"
        detail = (
            f"parent product {parent_product_id} was deleted; {shop}'s own product {before.handle!r} "
            f"({child_id}, linked by {link.matched_by}) is kept as it is and no longer synced"
        )
        if attention is not None:
            await attention.report(shop, "own_product_unlinked", parent_product_id, detail)
    await forget_product_links(links_repo, links, parent_product_id)
    await audit.record(
        AuditRecord(
            shop=shop,
            object_type="product",
            object_id=child_id,
            action=action_name,
            before=actual_view(before, policy, links) if before else None,
            after={"status": "ARCHIVED"} if action_name == "product_archive" else None,
            cause=cause,
            detail=detail,
        )
    )
    return action


async def product_to_child(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child_shop: str,
    parent_product_id: str,
    cause: str,
    *,
    only_if_linked: bool = False,
    final_attempt: bool = True,
) -> None:
    """A product job: sync one child's copy of one parent product; a product the child has no
    copy of is copied by the copy saga (`copies.copy_to_child`; `final_attempt`: a store error
    of its later steps is final). `only_if_linked` (caused by the child's own event): re-sync a
    linked copy, never create one (the link may be gone because a saga compensated that very
    product), and leave a copy its saga is writing alone. Variants the write created start
    with the parent's stock; media it uploaded are looked at again once processed."""
    if only_if_linked:
        down = await st.links.links_down(LinkKind.PRODUCT, parent_product_id)
        if not any(lk.child_shop == child_shop for lk in down):
            log.info("product no longer linked; not re-created", child=child_shop, product=parent_product_id)
            return
        sagas = await st.steps.states(COPY_PRODUCT, prefix=f"copy:{child_shop}:{parent_product_id}")
        if any(state in (SagaState.RUNNING, SagaState.COMPENSATING) for state in sagas.values()):
            log.info(
                "product is being copied; its saga writes it", child=child_shop, product=parent_product_id
            )
            return

    async def copies_linked(copies: CopiesLinked) -> None:
        await fan_out_levels_moved_since_copy(st, net, child_shop, copies.linked, cause)

    try:
        plan = await sync_product_to_child(
            rt.api(net.parent.shop),
            rt.api(child_shop),
            parent_product_id,
            st.links,
            rt.policy(net.merchant_id),
            st.audit,
            cause,
            on_copy_linked=copies_linked,
            attention=st.attention,
            archived=st.archived,
        )
    except NeedsCopy as why:
        log.info("no copy in the child; copying", child=child_shop, product=parent_product_id, why=str(why))
        saga = await copy_to_child(
            rt,
            st,
            net,
            child_shop,
            parent_product_id,
            cause,
            final_attempt=final_attempt,
            parent_api=ScannedParent(rt.api(net.parent.shop), [why.parent] if why.parent else ()),
        )
        media = ((saga.steps[1].result or {}).get("media") or 0) if saga and len(saga.steps) > 1 else 0
        if media:
            await check_media_later(rt, st, net, child_shop, parent_product_id, cause)
        return
    log.info(
        "product synced",
        child=child_shop,
        product=parent_product_id,
        result="deleted" if plan is None else ("noop" if plan.noop else "written"),
    )
    if plan is not None and plan.created_variants:
        await stock_new_variants(st, net, child_shop, plan.created_variants, cause)
    if plan is not None and plan.media is not None and plan.media.uploaded:
        await check_media_later(rt, st, net, child_shop, parent_product_id, cause)


async def check_media_later(
    rt: Runtime, st: Storage, net: MerchantNetwork, child_shop: str, parent_product_id: str, cause: str
) -> None:
    """Media just uploaded are processed by the store for a while and may end FAILED, which no
    webhook tells: the copy is looked at again once they should be done (a FAILED one is then
    uploaded again, a bounded number of times, then reported)."""
    delay = rt.sync_settings.media_check_after_s
    await enqueue_jobs(
        st.conn, [media_check_job(child_shop, parent_product_id, cause, delay)], net.merchant_id
    )


async def stock_new_variants(
    st: Storage, net: MerchantNetwork, child_shop: str, parent_variants: Iterable[str], cause: str
) -> None:
    """Variants just created in a child start with no stock: fan the parent's level out to them
    (the parent's own level webhooks may have come before the link existed)."""
    jobs = []
    for variant_id in parent_variants:
        for link in await st.links.links_down(LinkKind.VARIANT, variant_id):
            if link.child_shop == child_shop and link.parent_inventory_item_id:
                jobs += [
                    fan_out_job(link.parent_inventory_item_id, parent_loc, cause, only=child_shop)
                    for parent_loc in net.location_maps.get(child_shop, {})
                ]
    await enqueue_jobs(st.conn, jobs, net.merchant_id)


async def route_parent_update(
    rt: Runtime, st: Storage, net: MerchantNetwork, product_id: str, cause: str
) -> Routed:
    """A parent products/update starts product jobs only for the children whose copy was last
    given other synced fields than the parent has now (one read of the parent): the update
    Shopify sends for each stock move starts none. A store error reading the parent: every child."""
    try:
        parent = await rt.api(net.parent.shop).read_product(product_id)
    except BudgetBusy:
        raise  # the job goes back to the queue until the store's bucket can pay
    except CommerceError as err:
        log.info("parent product not read; every child's job decides", product=product_id, error=str(err))
        return Routed([product_job(c.shop, product_id, cause) for c in net.children])
    links = await st.links.product_fan_out_links(product_id, parent.collections) if parent else []
    return route_parent_product_update(net, product_id, parent, links, rt.policy(net.merchant_id), cause)


async def child_shows_last_write(
    rt: Runtime, st: Storage, net: MerchantNetwork, shop: str, product_id: str
) -> bool:
    """Whether the child product shows exactly the synced fields the engine last wrote to it
    (the link's `synced_view`, `echoes.product_shows_last_write`). One read of the child; any
    doubt (no record, a store error) answers False, and the product job decides as before."""
    links = await st.links.child_links(shop, products=[product_id])
    link = next((lk for lk in links.links if lk.kind is LinkKind.PRODUCT and lk.child_id == product_id), None)
    if link is None or link.synced_view is None:
        return False
    try:
        child = await rt.api(shop).read_product(product_id)
    except BudgetBusy:
        raise  # the job goes back to the queue until the store's bucket can pay
    except CommerceError as err:
        log.info("child product not read; its job decides", shop=shop, product=product_id, error=str(err))
        return False
    if child is None:
        return False
    links = await st.links.child_links(
        shop, products=[product_id], variants=[v.id for v in child.variants if v.id], collections=True
    )
    return product_shows_last_write(actual_view(child, rt.policy(net.merchant_id), links), link)
