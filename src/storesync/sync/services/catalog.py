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
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.catalog import (
    CatalogBlocked,
    ProductPlan,
    SyncPolicy,
    actual_view,
    links_after_write,
    plan_child_product,
    same_view,
)
from storesync.sync.domain.copies import CopiesLinked
from storesync.sync.domain.echoes import product_shows_last_write
from storesync.sync.domain.model import LinkKind
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import AuditSink, CatalogStore, LinkRepository
from storesync.sync.domain.routing import Routed, fan_out_job, product_job, route_parent_product_update
from storesync.sync.domain.saga import SagaState
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import fan_out_levels_moved_since_copy, link_pending_copies

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
) -> ProductPlan | None:
    """Make one child's copy of one parent product match the parent, reading both stores' current
    state (never a webhook payload). Returns the plan (noop when nothing had to change), or None
    when the parent product is gone and the child's copy was deleted. A copy whose variants were
    pending is linked from the read, and `on_copy_linked` told (the parent levels that moved
    meanwhile are the caller's to fan out).

    """
    links = await links_repo.link_map(child_store.shop)
    parent = await parent_store.read_product(parent_product_id)
    child_id = links.child_id(LinkKind.PRODUCT, parent_product_id)
    if parent is None:
        if child_id:
            before = await child_store.read_product(child_id)
            await child_store.delete_product(child_id)
            await links_repo.delete_link(child_store.shop, LinkKind.PRODUCT, parent_product_id)
            await audit.record(
                AuditRecord(
                    shop=child_store.shop,
                    object_type="product",
                    object_id=child_id,
                    action="product_delete",
                    before=actual_view(before, policy, links) if before else None,
                    after=None,
                    cause=cause,
                    detail=f"parent product {parent_product_id} was deleted",
                )
            )
        return None
    child = await child_store.read_product(child_id) if child_id else None
    if child is not None and (copies := await link_pending_copies(links_repo, links, [child])).pending:
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
                object_id=child_id or parent_product_id,
                action="product_set_blocked",
                before=None,
                after=None,
                cause=cause,
                detail=plan.blocked,
            )
        )
        raise CatalogBlocked(plan.blocked)
    if plan.noop:
        link = links.link_down(LinkKind.PRODUCT, parent_product_id)
        if link is not None and not same_view(link.synced_view, plan.expected):
            # The child already shows the parent's synced fields (e.g. linked by SKU, never
            # written): remember that, so the webhooks' checks against the last write
            # (`echoes.children_behind`, the child echo check) stop asking again.
            await links_repo.set_synced_view(child_store.shop, parent_product_id, plan.expected)
        return plan
    written = await child_store.product_set(plan.input, product_id=plan.child_product_id)
    for child_variant_id in plan.removed_variants:
        parent_variant_id = links.parent_id(LinkKind.VARIANT, child_variant_id)
        if parent_variant_id:
            await links_repo.delete_link(child_store.shop, LinkKind.VARIANT, parent_variant_id)
    await links_repo.save_links(links_after_write(plan, parent, written, links))
    await audit.record(
        AuditRecord(
            shop=child_store.shop,
            object_type="product",
            object_id=written.id or "",
            action="product_create" if child is None else "product_set",
            before=actual_view(child, policy, links) if child else None,
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
                object_id=written.id or "",
                action="revert_child_edit",
                before=c.child_value,
                after=c.parent_value,
                cause=cause,
                detail=c.describe(child_store.shop),
            )
        )
    return plan


async def product_to_child(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child_shop: str,
    parent_product_id: str,
    cause: str,
    *,
    only_if_linked: bool = False,
) -> None:
    """A product job: sync one child's copy of one parent product. `only_if_linked` (caused by the
    child's own event): re-sync a linked copy, never (re)create one (the link may be gone because
    a saga compensated that very product), and leave a copy its saga is writing alone. Variants
    the write created start with the parent's stock."""
    if only_if_linked:
        down = await st.links.links_down(LinkKind.PRODUCT, parent_product_id)
        if not any(lk.child_shop == child_shop for lk in down):
            log.info("product no longer linked; not re-created", child=child_shop, product=parent_product_id)
            return
        saga = await st.steps.load(f"copy:{child_shop}:{parent_product_id}")
        if saga is not None and saga.state in (SagaState.RUNNING, SagaState.COMPENSATING):
            log.info(
                "product is being copied; its saga writes it", child=child_shop, product=parent_product_id
            )
            return

    async def copies_linked(copies: CopiesLinked) -> None:
        await fan_out_levels_moved_since_copy(st, net, child_shop, copies.linked, cause)

    plan = await sync_product_to_child(
        rt.api(net.parent.shop),
        rt.api(child_shop),
        parent_product_id,
        st.links,
        rt.policy(net.merchant_id),
        st.audit,
        cause,
        on_copy_linked=copies_linked,
    )
    log.info(
        "product synced",
        child=child_shop,
        product=parent_product_id,
        result="deleted" if plan is None else ("noop" if plan.noop else "written"),
    )
    if plan is not None and plan.created_variants:
        await stock_new_variants(st, net, child_shop, plan.created_variants, cause)


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
