"""Saga steps for copying one parent product into a child: the initial sync / backfill saga.

    create_child_product                       (stock_in_create: what the engine starts now)
    create_child_product -> set_child_collections -> set_child_levels     (sagas logged before)

A copy is one productSet: the product with its collection memberships and its variants' stock
(`inventoryQuantities`), answered with the product id alone: 11 points on the child, the least a
create costs. Its variants are linked when their ids arrive (`catalog.link_pending_copy`). Sagas logged by earlier versions keep their three steps: the
create there writes the memberships (or, older still, the collections step does), and the
levels step sets each level by compare-and-set.

Each step records what undoes it before it runs (see `saga.py`): the create is undone by
deleting the product found by its handle (so a crash between the store call and the log still
finds it), the collections by writing back the memberships read before, the levels by setting
back the quantities read before (compare-and-set, like every inventory write). A product the
child already has under the same handle is never adopted by a create: link it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storesync.sync.audit import AuditRecord
from storesync.sync.catalog import (
    SyncPolicy,
    copy_product_link,
    links_after_write,
    pending_copy,
    plan_child_product,
    unchanged_input,
)
from storesync.sync.inventory import child_target, push_level
from storesync.sync.model import LinkKind, LinkMap, Product
from storesync.sync.network import MerchantNetwork
from storesync.sync.ports import AuditSink, HandleTaken, LinkRepository, StoreAPI, WriteRecords
from storesync.sync.saga import PermanentStepError, StepContext, StepRefused, StepSpec


@dataclass
class SagaDeps:
    network: MerchantNetwork
    stores: Mapping[str, StoreAPI]  # every store of the merchant, parent included
    links: LinkRepository
    writes: WriteRecords
    audit: AuditSink
    policy: SyncPolicy
    # When the parent's levels the copies write were read, if not live (a backfill's scan).
    levels_read_at: datetime | None = None

    @property
    def parent(self) -> StoreAPI:
        return self.stores[self.network.parent.shop]


def copy_product_steps(
    parent_product_id: str, child_shop: str, *, stock_in_create: bool = False
) -> list[StepSpec]:
    """The copy saga's steps. `stock_in_create`: one step, whose productSet writes the variants'
    stock (`inventoryQuantities`) and collection memberships with the product; its undo (delete
    the product) removes all of it. Otherwise three steps: create, collections, levels (each
    level written by compare-and-set, its previous value recorded for the undo)."""
    params = {"parent_product_id": parent_product_id, "child_shop": child_shop}
    if stock_in_create:
        return [StepSpec("create", "create_child_product", {**params, "stock_in_create": True})]
    return [
        StepSpec("create", "create_child_product", params),
        StepSpec("collections", "set_child_collections", params),
        StepSpec("levels", "set_child_levels", params),
    ]


async def _parent_product(deps: SagaDeps, pid: str) -> Product:
    parent = await deps.parent.read_product(pid)
    if parent is None:
        raise PermanentStepError(f"parent product {pid} no longer exists")
    return parent


async def _create_links(deps: SagaDeps, shop: str, parent: Product) -> LinkMap:
    """The links a create plans with: the product's (an earlier, interrupted attempt's) and its
    collections', in this child (one query). A handful of rows, not the child's whole map."""
    found = await deps.links.product_fan_out_links(parent.id or "", parent.collections)
    return LinkMap(shop, [lk for lk in found if lk.child_shop == shop])


class CreateChildProduct:
    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        parent = await _parent_product(self.deps, params["parent_product_id"])
        child = self.deps.stores[params["child_shop"]]
        # The one-step copy's plain create is refused by the store when the handle is taken
        # (nothing adopted, nothing to undo: `StepRefused`); the older steps checked first.
        if (
            not params.get("stock_in_create")
            and await child.find_product_by_handle(parent.handle) is not None
        ):
            raise PermanentStepError(_handle_taken(child.shop, parent.handle))
        return {"child_shop": child.shop, "handle": parent.handle, "parent_product_id": parent.id}

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if params.get("stock_in_create"):
            return await self._create_with_stock(params, ctx)
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
        await deps.audit.record(
            AuditRecord(
                child.shop,
                "product",
                written.id or "",
                "product_create",
                None,
                plan.expected,
                ctx.cause,
                detail=f"saga {ctx.saga_id}",
            )
        )
        return {"child_product_id": written.id, "collections": list(plan.input.get("collections") or ())}

    async def _create_with_stock(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """One productSet: the product, its collection memberships and its variants' stock at
        every mapped location, answered with the product id alone (11 points: the least a
        create costs). The product link is saved with its variants pending
        (`catalog.pending_copy`): they are linked, with the write records of the stock, from
        the child's products/create webhook or the first read of the product
        (`catalog.link_pending_copy`). Until then the child's level webhooks concern an
        unlinked item and are ignored; afterwards they find the records and are judged echoes.

        The first run is a plain create, which the store refuses when the handle is taken
        (`StepRefused`: nothing adopted, nothing to undo). A resumed run (the first one may
        have reached the store) upserts by handle, updating what the first run made."""
        deps = self.deps
        parent = await _parent_product(deps, params["parent_product_id"])
        child = deps.stores[params["child_shop"]]
        links = await _create_links(deps, child.shop, parent)
        plan = plan_child_product(parent, None, links, deps.policy)
        locations = deps.network.location_maps.get(child.shop, {})
        levels_read_at = deps.levels_read_at or datetime.now(UTC)
        stock: dict[tuple, list[tuple[str, int]]] = {}  # variant option key -> [(child location, quantity)]
        for pv in parent.variants:
            for parent_loc, child_loc in locations.items():
                level = (
                    await deps.parent.read_level(pv.inventory_item_id, parent_loc)
                    if pv.inventory_item_id
                    else None
                )
                if level is not None:
                    stock.setdefault(pv.option_key, []).append((child_loc, child_target(level.available)))
        inp = dict(plan.input)
        inp["variants"] = [
            {
                **v,
                "inventoryQuantities": [
                    {"locationId": loc, "name": "available", "quantity": q}
                    for loc, q in stock.get(_input_option_key(v), ())
                ],
            }
            for v in inp.get("variants") or ()
        ]
        try:
            product_id = await child.create_product_id(inp, upsert=ctx.resumed)
        except HandleTaken as err:
            raise StepRefused(_handle_taken(child.shop, parent.handle)) from err
        pending = pending_copy(
            parent, stock, datetime.now(UTC), ctx.cause, levels_read_at, resent=ctx.resumed
        )
        await deps.links.save_links([copy_product_link(plan, product_id, links, pending)])
        # Levels by SKU and child location (the child's inventory items are not known yet).
        levels = [[v["sku"], loc, quantity] for v in pending["variants"] for loc, quantity in v["levels"]]
        await deps.audit.record(
            AuditRecord(
                child.shop,
                "product",
                product_id,
                "product_create",
                None,
                {**plan.expected, "levels": levels},
                ctx.cause,
                detail=f"saga {ctx.saga_id} (stock written with the create)",
            )
        )
        return {
            "child_product_id": product_id,
            "collections": list(plan.input.get("collections") or ()),
            "levels": levels,
        }

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        child = self.deps.stores[undo["child_shop"]]
        found = await child.find_product_id_by_handle(undo["handle"])
        links = await self.deps.links.link_map(child.shop)
        for link in list(links.links):
            if (link.kind is LinkKind.PRODUCT and link.parent_id == undo["parent_product_id"]) or (
                link.kind is LinkKind.VARIANT and link.parent_product_id == undo["parent_product_id"]
            ):
                await self.deps.links.delete_link(child.shop, link.kind, link.parent_id)
        if found is not None:
            await child.delete_product(found)
            await self.deps.audit.record(
                AuditRecord(
                    child.shop,
                    "product",
                    found,
                    "product_delete",
                    {"handle": undo["handle"]},
                    None,
                    ctx.cause,
                    detail=f"compensating saga {ctx.saga_id}",
                )
            )


def _handle_taken(shop: str, handle: str) -> str:
    return f"{shop} already has a product with handle {handle!r}: link it (storesync link) instead of creating a second one"


def _input_option_key(variant_input: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A productSet variant input's option values as `Variant.option_key`."""
    return tuple(sorted((o["optionName"], o["name"]) for o in variant_input.get("optionValues") or ()))


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
            return {
                "child_shop": params["child_shop"],
                "child_product_id": created["child_product_id"],
                "collections": created["collections"],
            }
        child, product = await self._child(params, ctx)
        return {
            "child_shop": child.shop,
            "child_product_id": product.id,
            "collections": list(product.collections),
        }

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        created = ctx.results["create"]
        if "collections" in created:
            return {"collections": created["collections"]}
        # A saga logged before creates carried the memberships: write them now.
        child, product = await self._child(params, ctx)
        parent = await _parent_product(self.deps, params["parent_product_id"])
        plan = plan_child_product(
            parent, product, await self.deps.links.link_map(child.shop), self.deps.policy
        )
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
                await push_level(
                    child, self.deps.writes, self.deps.audit, item, loc, before, f"{ctx.cause}:undo"
                )


def copy_product_actions(deps: SagaDeps) -> dict[str, Any]:
    return {
        "create_child_product": CreateChildProduct(deps),
        "set_child_collections": SetChildCollections(deps),
        "set_child_levels": SetChildLevels(deps),
    }
