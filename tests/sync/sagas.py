"""Shared saga test fixtures: a parent + 2 children in memory and the copy-product saga's deps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.model import Link, LinkKind, MatchedBy
from storesync.sync.domain.saga import COPY_PRODUCT, PermanentStepError, SagaRecord, copy_product_steps
from storesync.sync.services.copies import SagaDeps, copy_product_actions
from storesync.sync.services.sagas import SagaExecutor
from tests.fakes import MemoryAudit, MemoryLinks, MemoryStepLog, MemoryStore, MemoryWriteRecords
from tests.sync.builders import (
    A_LOC1,
    A_LOC2,
    CHILD_A,
    CHILD_B,
    CHILD_C,
    P_LOC1,
    P_LOC2,
    PARENT,
    merchant,
    tee,
)


class FailingLevels(MemoryStore):
    """A child whose inventory writes are rejected for good (e.g. the location was deactivated)."""

    allowed = 1  # the first write goes through, so there is something to undo

    async def set_level(self, *args, **kw):
        if self.allowed <= 0:
            raise PermanentStepError("location is not active")
        self.allowed -= 1
        return await super().set_level(*args, **kw)


def copy_world(child_cls=MemoryStore):
    parent = MemoryStore(PARENT)
    stores = {
        PARENT: parent,
        CHILD_A: child_cls(CHILD_A),
        CHILD_B: MemoryStore(CHILD_B),
        CHILD_C: MemoryStore(CHILD_C),
    }
    pp = parent.add_product(replace(tee(), collections=("gid://shopify/Collection/1",)))
    for i, v in enumerate(pp.variants):
        parent.levels[(v.inventory_item_id, P_LOC1)] = 5 + i
        parent.levels[(v.inventory_item_id, P_LOC2)] = 1
    writes = MemoryWriteRecords()
    deps = SagaDeps(merchant(), stores, MemoryLinks(writes), writes, MemoryAudit(), SyncPolicy())
    return deps, pp


async def link_copy_variants(deps: SagaDeps, child_shop: str, parent_product_id: str):
    """What the child's products/create webhook does for a copy: link its pending variants from
    the child product (here read from the memory store)."""
    from storesync.sync.services.copies import link_pending_copy

    link = (await deps.links.link_map(child_shop)).link_down(LinkKind.PRODUCT, parent_product_id)
    assert link is not None and link.pending is not None
    child = await deps.stores[child_shop].read_product(link.child_id)
    return await link_pending_copy(deps.links, link, child.variants)


async def link_collection(deps: SagaDeps) -> None:
    await deps.links.save_links(
        [
            Link(
                LinkKind.COLLECTION,
                CHILD_A,
                "gid://shopify/Collection/1",
                "gid://shopify/Collection/501",
                MatchedBy.HANDLE,
            )
        ]
    )


async def copy_now(
    stores: Mapping[str, MemoryStore],
    links: MemoryLinks,
    policy: SyncPolicy,
    audit: MemoryAudit,
    parent_product_id: str,
    child_shop: str,
    *,
    attention=None,
    archived=None,
    steps: MemoryStepLog | None = None,
    link: bool = True,
) -> SagaRecord:
    """A copy made as the engine makes one (the copy saga, real services, stores in memory),
    its variants then linked as the child's products/create webhook would."""
    deps = SagaDeps(
        merchant(), dict(stores), links, MemoryWriteRecords(), audit, policy, None, attention, archived
    )
    executor = SagaExecutor(steps or MemoryStepLog(), copy_product_actions(deps), audit)
    rec = await executor.start(
        f"copy:{child_shop}:{parent_product_id}",
        COPY_PRODUCT,
        child_shop,
        "test",
        copy_product_steps(parent_product_id, child_shop, stock_in_create=True),
    )
    lk = (await links.link_map(child_shop)).link_down(LinkKind.PRODUCT, parent_product_id)
    if link and lk is not None and lk.pending is not None:
        await link_copy_variants(deps, child_shop, parent_product_id)
    return rec


async def sync_or_copy(
    parent: MemoryStore,
    child: MemoryStore,
    parent_product_id: str,
    links: MemoryLinks,
    policy: SyncPolicy,
    audit: MemoryAudit,
    cause: str = "job:1",
):
    """What a product job does: re-sync the child's copy, or make it by the copy saga."""
    from storesync.sync.domain.catalog import NeedsCopy
    from storesync.sync.services.catalog import sync_product_to_child

    try:
        return await sync_product_to_child(parent, child, parent_product_id, links, policy, audit, cause)
    except NeedsCopy:
        await copy_now(
            {PARENT: parent, child.shop: child}, links, policy, audit, parent_product_id, child.shop
        )
        return None


__all__ = [
    "A_LOC1",
    "A_LOC2",
    "FailingLevels",
    "copy_now",
    "copy_world",
    "link_collection",
    "link_copy_variants",
    "sync_or_copy",
]
