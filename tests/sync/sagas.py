"""Shared saga test fixtures: a parent + 2 children in memory and the copy-product saga's deps."""

from __future__ import annotations

from dataclasses import replace

from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.model import Link, LinkKind, MatchedBy
from storesync.sync.domain.saga import PermanentStepError
from storesync.sync.services.copies import SagaDeps
from tests.fakes import MemoryAudit, MemoryLinks, MemoryStore, MemoryWriteRecords
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


__all__ = ["A_LOC1", "A_LOC2", "FailingLevels", "copy_world", "link_collection", "link_copy_variants"]
