"""Saga steps for copying one parent product into a child: the initial sync / backfill saga.

    create_child_product -> set_child_collections -> set_child_levels

The create writes the collection memberships too (one productSet per copy); the collections
step then only records them, and writes them itself for sagas logged by earlier versions.

Each step records what undoes it before it runs (see `saga.py`): the create is undone by
deleting the product found by its handle (so a crash between the store call and the log still
finds it), the collections by writing back the memberships read before, the levels by setting
back the quantities read before (compare-and-set, like every inventory write). A product the
child already has under the same handle is never adopted by a create: link it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storesync.sync.audit import AuditRecord
from storesync.sync.catalog import SyncPolicy, links_after_write, plan_child_product, unchanged_input
from storesync.sync.inventory import child_target, push_level
from storesync.sync.model import LinkKind, Product
from storesync.sync.network import MerchantNetwork
from storesync.sync.ports import AuditSink, LinkRepository, StoreAPI, WriteRecords
from storesync.sync.saga import PermanentStepError, StepContext, StepSpec

@dataclass
class SagaDeps:
    network: MerchantNetwork
    stores: Mapping[str, StoreAPI]  # every store of the merchant, parent included
    links: LinkRepository
    writes: WriteRecords
    audit: AuditSink
    policy: SyncPolicy

    @property
    def parent(self) -> StoreAPI:
        return self.stores[self.network.parent.shop]


def copy_product_steps(parent_product_id: str, child_shop: str) -> list[StepSpec]:
    params = {"parent_product_id": parent_product_id, "child_shop": child_shop}
    return [StepSpec("create", "create_child_product", params),
            StepSpec("collections", "set_child_collections", params),
            StepSpec("levels", "set_child_levels", params)]


async def _parent_product(deps: SagaDeps, pid: str) -> Product:
    parent = await deps.parent.read_product(pid)
    if parent is None:
        raise PermanentStepError(f"parent product {pid} no longer exists")
    return parent


class CreateChildProduct:
    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        parent = await _parent_product(self.deps, params["parent_product_id"])
        child = self.deps.stores[params["child_shop"]]
        if await child.find_product_by_handle(parent.handle) is not None:
            raise PermanentStepError(f"{child.shop} already has a product with handle {parent.handle!r}: "
                                     "link it (storesync link) instead of creating a second one")
        return {"child_shop": child.shop, "handle": parent.handle, "parent_product_id": parent.id}

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        deps = self.deps
        parent = await _parent_product(deps, params["parent_product_id"])
        child = deps.stores[params["child_shop"]]
        links = await deps.links.link_map(child.shop)
        plan = plan_child_product(parent, None, links, deps.policy)
        existing = await child.find_product_by_handle(parent.handle)  # our own earlier, interrupted attempt
        # The memberships go with the create (deleting the product, this step's undo, removes
        # them too): a separate productSet would cost a second write and two reads per copy.
        written = await child.product_set(plan.input, product_id=existing.id if existing else None)
        await deps.links.save_links(links_after_write(plan, parent, written, links))
        await deps.audit.record(AuditRecord(child.shop, "product", written.id or "", "product_create", None,
                                            plan.expected, ctx.cause, detail=f"saga {ctx.saga_id}"))
        return {"child_product_id": written.id, "collections": list(plan.input.get("collections") or ())}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        child = self.deps.stores[undo["child_shop"]]
        found = await child.find_product_by_handle(undo["handle"])
        links = await self.deps.links.link_map(child.shop)
        for link in list(links.links):
            if link.kind is LinkKind.PRODUCT and link.parent_id == undo["parent_product_id"] or \
                    link.kind is LinkKind.VARIANT and link.parent_product_id == undo["parent_product_id"]:
                await self.deps.links.delete_link(child.shop, link.kind, link.parent_id)
        if found is not None:
            await child.delete_product(found.id or "")
            await self.deps.audit.record(AuditRecord(child.shop, "product", found.id or "", "product_delete",
                                                     {"handle": found.handle}, None, ctx.cause,
                                                     detail=f"compensating saga {ctx.saga_id}"))


class SetChildCollections:
    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def _child(self, params: dict[str, Any], ctx: StepContext) -> tuple[StoreAPI, Product]:
        child = self.deps.stores[params["child_shop"]]
        product_id = ctx.results["create"]["child_product_id"]
        product = await child.read_product(product_id)
        if product is None:
            raise PermanentStepError(f"{child.shop}: product {product_id} disappeared")
        return child, product

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        created = ctx.results["create"]
        if "collections" in created:  # the create wrote them: they are what this step found
            return {"child_shop": params["child_shop"], "child_product_id": created["child_product_id"],
                    "collections": created["collections"]}
        child, product = await self._child(params, ctx)
        return {"child_shop": child.shop, "child_product_id": product.id, "collections": list(product.collections)}

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        created = ctx.results["create"]
        if "collections" in created:
            return {"collections": created["collections"]}
        # A saga logged before creates carried the memberships: write them now.
        child, product = await self._child(params, ctx)
        parent = await _parent_product(self.deps, params["parent_product_id"])
        plan = plan_child_product(parent, product, await self.deps.links.link_map(child.shop), self.deps.policy)
        if plan.blocked:
            raise PermanentStepError(plan.blocked)
        if not plan.noop:
            await child.product_set(plan.input, product_id=product.id)
        return {"collections": plan.input["collections"]}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        child = self.deps.stores[undo["child_shop"]]
        product = await child.read_product(undo["child_product_id"])
        if product is None:
            return  # nothing left to put back
        inp = unchanged_input(product)  # everything the child has, so that nothing else changes
        inp["collections"] = undo["collections"]
        await child.product_set(inp, product_id=product.id)


class SetChildLevels:
    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def _targets(self, params: dict[str, Any]) -> list[tuple[str, str, int]]:
        deps, shop = self.deps, params["child_shop"]
        parent = await _parent_product(deps, params["parent_product_id"])
        links = await deps.links.link_map(shop)
        out = []
        for pv in parent.variants:
            child_item = links.child_item(pv.inventory_item_id) if pv.inventory_item_id else None
            if child_item is None:
                raise PermanentStepError(f"{shop}: variant {pv.id} has no linked inventory item")
            for parent_loc, child_loc in deps.network.location_maps.get(shop, {}).items():
                level = await deps.parent.read_level(pv.inventory_item_id, parent_loc)
                if level is not None:
                    out.append((child_item, child_loc, child_target(level.available)))
        return out

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        child = self.deps.stores[params["child_shop"]]
        before = []
        for item, loc, _ in await self._targets(params):
            level = await child.read_level(item, loc)
            before.append([item, loc, level.available if level else None])
        return {"child_shop": child.shop, "levels": before}

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        child = self.deps.stores[params["child_shop"]]
        done = []
        for item, loc, target in await self._targets(params):
            out = await push_level(child, self.deps.writes, self.deps.audit, item, loc, target, ctx.cause)
            done.append([item, loc, out.after])
        return {"levels": done}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        child = self.deps.stores[undo["child_shop"]]
        for item, loc, before in undo["levels"]:
            if before is not None:
                await push_level(child, self.deps.writes, self.deps.audit, item, loc, before, f"{ctx.cause}:undo")


def copy_product_actions(deps: SagaDeps) -> dict[str, Any]:
    return {"create_child_product": CreateChildProduct(deps), "set_child_collections": SetChildCollections(deps),
            "set_child_levels": SetChildLevels(deps)}
