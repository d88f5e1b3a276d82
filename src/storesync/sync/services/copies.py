"""Copies: the copy-product saga's steps and its runs, and the linking of a copy's variants once
their ids arrive (`domain/copies.py`).

The copy saga (`domain/saga.copy_product_steps`), the initial sync / backfill saga:

    create_child_product                       (stock_in_create: what the engine starts now)
    create_child_product -> set_child_collections -> set_child_levels     (sagas logged before)

A copy is one productSet: the product with its collection memberships and its variants' stock
(`inventoryQuantities`), answered with the product id alone: 11 points on the child, the least a
create costs. Its variants are linked when their ids arrive (`link_pending_copy`). Sagas logged by earlier versions keep their three steps: the
create there writes the memberships (or, older still, the collections step does), and the
levels step sets each level by compare-and-set.

Each step records what undoes it before it runs (see `saga.py`): the create is undone by
deleting the product found by its handle (so a crash between the store call and the log still
finds it), the collections by writing back the memberships read before, the levels by setting
back the quantities read before (compare-and-set, like every inventory write). A product the
child already has under the same handle is never adopted by a create: link it first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from storesync.commerce.errors import CommerceError, PermanentCommerceError, StoreUnauthorized, UserInputError
from storesync.config import SyncedField
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import BulkCatalogScan, ScannedParent
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.catalog import (
    CatalogError,
    SyncPolicy,
    links_after_write,
    plan_child_product,
    unchanged_input,
)
from storesync.sync.domain.catalog_rules import (
    CatalogRules,
    ChildMedia,
    OnCopyStepFailure,
    OnHandleConflict,
    suffixed_handle,
)
from storesync.sync.domain.copies import (
    CopiesLinked,
    PendingResolution,
    copy_product_link,
    created_webhook_describes_it,
    pending_copy,
    resolve_pending,
    variants_from_product_webhook,
)
from storesync.sync.domain.inventory import child_target
from storesync.sync.domain.media import media_links, plan_media
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy, Product, Variant, gid
from storesync.sync.domain.network import MerchantNetwork, Network, UnknownStore
from storesync.sync.domain.orders import OrderEvent
from storesync.sync.domain.ports import (
    ArchivedCopies,
    AttentionLog,
    AuditSink,
    HandleTaken,
    LinkRepository,
    StepAction,
    StoreAPI,
    WriteRecords,
)
from storesync.sync.domain.routing import child_stock_job, copy_job, fan_out_job
from storesync.sync.domain.saga import (
    COPY_PRODUCT,
    REPORT_SAGA_PREFIX,
    HandleConflict,
    HandleNotYetFree,
    PermanentStepError,
    SagaRecord,
    SagaState,
    StepContext,
    StepRefused,
    copy_product_steps,
    copy_saga_id,
    handle_conflicted,
)
from storesync.sync.services.channels import channels_for
from storesync.sync.services.context import Runtime
from storesync.sync.services.failures import undoes_copy
from storesync.sync.services.sagas import SagaExecutor
from storesync.sync.services.sales import push_level

log = get_logger("storesync.sync.copies")

# More pending copies than this in one child are read with one bulk query instead of one read each.
BULK_READ_PENDING_FROM = 20


# --------------------------------------------------------------------------- the saga's steps


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
    attention: AttentionLog | None = None  # what the merchant should know (a handle conflict, ...)
    archived: ArchivedCopies | None = None  # copies storesync archived: their handles are ours
    # The job's last attempt: a store error of a later step is final (kept or compensated) now.
    final_attempt: bool = True

    @property
    def parent(self) -> StoreAPI:
        return self.stores[self.network.parent.shop]


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
        # When the step began: a product under one of its handles made since is this copy (a
        # resumed run upserts it, the undo deletes it); one made before is the child's own.
        return {
            "child_shop": child.shop,
            "handle": parent.handle,
            "handles": _candidate_handles(parent.handle, self.deps.policy.rules(child.shop)),
            "parent_product_id": parent.id,
            "started_at": datetime.now(UTC).isoformat(),
        }

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if params.get("stock_in_create"):
            return await self._create_with_stock(params, ctx)
        deps = self.deps
        parent = await _parent_product(deps, params["parent_product_id"])
        child = deps.stores[params["child_shop"]]
        links = await deps.links.link_map(child.shop)
        plan = plan_child_product(parent, None, links, deps.policy)
        existing = await child.find_product_by_handle(parent.handle)
        # Only a resumed run's earlier attempt is ours; anything else under the handle (a product
        # the child made since `prepare` looked) is the child's own: never adopted.
        if existing is not None and not (
            ctx.resumed and await _made_by_this_step(child, parent.handle, ctx.undo or {})
        ):
            raise StepRefused(_handle_taken(child.shop, parent.handle))  # nothing written: no undo
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
        (`copies.pending_copy`): they are linked, with the write records of the stock, from
        the child's products/create webhook or the first read of the product
        (`link_pending_copy`). Until then the child's level webhooks concern an
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
        product_id, handle = await self._create(child, parent, inp, ctx)
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
                detail=f"saga {ctx.saga_id} (stock written with the create)"
                + (
                    f"; handle {handle!r}: {parent.handle!r} is the child's own product's"
                    if handle != parent.handle
                    else ""
                ),
            )
        )
        return {
            "child_product_id": product_id,
            "handle": handle,
            "collections": list(plan.input.get("collections") or ()),
            "levels": levels,
        }

    async def _create(
        self, child: StoreAPI, parent: Product, inp: dict[str, Any], ctx: StepContext
    ) -> tuple[str, str]:
        """The copy made under the parent's handle, or, that one being a product of the child's
        own, as the child's rules say: reported (`HandleConflict`: nothing written) or under
        `<handle>-<suffix>`. An archived copy of ours holding the handle is moved aside first.
        A resumed run upserts the product an earlier run made (made since the step began)."""
        deps, shop = self.deps, child.shop
        rules = deps.policy.rules(shop)
        undo = ctx.undo or {}
        handles = list(undo.get("handles") or _candidate_handles(parent.handle, rules))
        if ctx.resumed:
            for h in handles:
                if await _made_by_this_step(child, h, undo):
                    earlier = await child.find_product_by_handle(h)
                    again = _keeping_variants(inp, earlier) if earlier is not None else inp
                    return await child.create_product_id({**again, "handle": h}, upsert=True), h
        try:
            return await child.create_product_id({**inp, "handle": handles[0]}, upsert=False), handles[0]
        except HandleTaken:
            pass
        if await self._move_archived_copies_aside(child, parent.handle, ctx):
            try:
                return await child.create_product_id({**inp, "handle": handles[0]}, upsert=False), handles[0]
            except HandleTaken:
                pass
        await self._unless_held_by_another_copy(child, parent)
        if rules.on_handle_conflict is OnHandleConflict.COPY_WITH_SUFFIX:
            for h in handles[1:]:
                try:
                    return await child.create_product_id({**inp, "handle": h}, upsert=False), h
                except HandleTaken:
                    continue
        why = (
            f"{shop} already has a product of its own with handle {parent.handle!r}"
            + (f" (and {', '.join(map(repr, handles[1:]))})" if len(handles) > 1 else "")
            + f": parent product {parent.id} is not copied there (on_handle_conflict = "
            f"{rules.on_handle_conflict.value}; link them with `storesync link`, rename one, or "
            'set on_handle_conflict = "copy_with_suffix")'
        )
        if deps.attention is not None and await deps.attention.report(
            shop, "handle_conflict", parent.id or "", why
        ):
            await deps.audit.record(
                AuditRecord(
                    shop, "product", parent.id or "", "handle_conflict", None, None, ctx.cause, detail=why
                )
            )
        raise HandleConflict(why)

    async def _unless_held_by_another_copy(self, child: StoreAPI, parent: Product) -> None:
        """`HandleNotYetFree` (retry) when the handle's holder is linked to another parent
        product: that product was deleted or renamed in the parent and its job, which archives
        or renames the copy, has not run yet. On the job's last attempt the holder is treated
        as the child's own (the conflict rule applies), so the copy never waits forever."""
        if self.deps.final_attempt:
            return
        holder = await child.find_product_id_by_handle(parent.handle)
        if holder is None:
            return
        linked = await self.deps.links.links_of(child.shop, LinkKind.PRODUCT, child_ids=[holder])
        other = next((lk.parent_id for lk in linked if lk.parent_id != parent.id), None)
        if other is not None:
            raise HandleNotYetFree(
                f"{child.shop}: handle {parent.handle!r} is held by the copy of parent product {other}, "
                "whose delete or rename is not synced yet"
            )

    async def _move_archived_copies_aside(self, child: StoreAPI, handle: str, ctx: StepContext) -> bool:
        """Copies storesync archived (their parent product deleted) free the handle for a new
        parent product: renamed `<handle>-archived-<id>`. Whether any was."""
        archived = self.deps.archived
        if archived is None:
            return False
        moved = False
        for product_id in await archived.under_handle(child.shop, handle):
            new_handle = f"{handle}-archived-{product_id.rsplit('/', 1)[-1]}"
            try:
                await child.update_product_fields(product_id, {"handle": new_handle})
            except UserInputError as err:  # gone meanwhile, or renamed by the merchant
                log.info("archived copy not renamed", shop=child.shop, product=product_id, error=str(err))
            else:
                moved = True
                await self.deps.audit.record(
                    AuditRecord(
                        child.shop,
                        "product",
                        product_id,
                        "archived_copy_renamed",
                        {"handle": handle},
                        {"handle": new_handle},
                        ctx.cause,
                        detail=f"the handle {handle!r} goes to a new parent product (saga {ctx.saga_id})",
                    )
                )
            await archived.forget(child.shop, product_id)
        return moved

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        child = self.deps.stores[undo["child_shop"]]
        links = await self.deps.links.link_map(child.shop)
        link = links.link_down(LinkKind.PRODUCT, undo["parent_product_id"])
        made = {link.child_id} if link is not None and link.matched_by is MatchedBy.CREATED else set()
        if made:
            pass  # the copy's link names it: never look further
        elif "started_at" in undo:
            # The product this step made, found by one of its handles even if its link was never
            # saved; never a product the child had before the step began.
            for h in undo.get("handles") or [undo["handle"]]:
                found = await child.product_under_handle(h)
                if found is not None and await _made_by_this_step(child, h, undo, found=found):
                    made.add(found[0])
        else:  # an undo logged by an earlier version: the product under the parent's handle
            found_id = await child.find_product_id_by_handle(undo["handle"])
            if found_id is not None:
                made.add(found_id)
        for lk in list(links.links):
            if (lk.kind is LinkKind.PRODUCT and lk.parent_id == undo["parent_product_id"]) or (
                lk.kind in (LinkKind.VARIANT, LinkKind.MEDIA)
                and lk.parent_product_id == undo["parent_product_id"]
            ):
                await self.deps.links.delete_link(child.shop, lk.kind, lk.parent_id)
        for product_id in sorted(made):
            await child.delete_product(product_id)
            await self.deps.audit.record(
                AuditRecord(
                    child.shop,
                    "product",
                    product_id,
                    "product_delete",
                    {"handle": undo["handle"]},
                    None,
                    ctx.cause,
                    detail=f"compensating saga {ctx.saga_id}",
                )
            )


# A product made by a step was made at most this long before the step began by the store's
# clock (which stores creation times to the second and may run a little behind ours).
STORE_CLOCK_SKEW = timedelta(seconds=2)


async def _made_by_this_step(
    child: StoreAPI,
    handle: str,
    undo: Mapping[str, Any],
    *,
    found: tuple[str, datetime | None] | None = None,
) -> bool:
    """Whether the product under `handle` was made since the step began (so by the step)."""
    if "started_at" not in undo:
        return True  # an older undo: the step's own handle only
    if found is None:
        found = await child.product_under_handle(handle)
    if found is None or found[1] is None:
        return False
    return found[1] >= datetime.fromisoformat(undo["started_at"]) - STORE_CLOCK_SKEW


def _candidate_handles(handle: str, rules: CatalogRules) -> list[str]:
    """The handles a copy may take, in order: the parent's, then (`copy_with_suffix`) three
    suffixed ones."""
    if rules.on_handle_conflict is not OnHandleConflict.COPY_WITH_SUFFIX:
        return [handle]
    return [handle, *(suffixed_handle(handle, rules.handle_suffix, n) for n in (1, 2, 3))]


def _handle_taken(shop: str, handle: str) -> str:
    return f"{shop} already has a product with handle {handle!r}: link it (storesync link) instead of creating a second one"


def _keeping_variants(inp: Mapping[str, Any], earlier: Product) -> dict[str, Any]:
    """A resent create's input with the ids of the variants the earlier attempt made, matched by
    option values: productSet creates a variant given without an id and deletes those not listed
    ("Specifies the product variant to update or create a new variant if absent",
    ProductVariantSetInput.id, Admin API 2026-10), so a resend without them would replace
    variants the child may already have sold (their orders would then link to nothing)."""
    ids = {v.option_key: v.id for v in earlier.variants if v.id}
    if "variants" not in inp:
        return dict(inp)
    return {
        **inp,
        "variants": [
            {**v, "id": ids[_input_option_key(v)]} if _input_option_key(v) in ids else dict(v)
            for v in inp.get("variants") or ()
        ],
    }


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
            parent_item = pv.inventory_item_id
            child_item = links.child_item(parent_item) if parent_item else None
            if parent_item is None or child_item is None:
                raise PermanentStepError(f"{shop}: variant {pv.id} has no linked inventory item")
            for parent_loc, child_loc in deps.network.location_maps.get(shop, {}).items():
                level = await deps.parent.read_level(parent_item, parent_loc)
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


def _gives_up(exc: BaseException, deps: SagaDeps) -> bool:
    """Whether a later step's store error is final: a permanent one, or any on the last attempt
    (a store refusing the app as a whole is not: it is paused and the saga resumes later)."""
    if isinstance(exc, StoreUnauthorized) or not isinstance(exc, CommerceError):
        return False
    return isinstance(exc, PermanentCommerceError) or deps.final_attempt


class CopyChildMedia:
    """The copy's media (`domain/media.py`): the parent's READY images uploaded with their alt
    text, in order, each linked to the parent media it copies. Nothing to do (no call) without
    any. A failure is never the saga's: it is reported and the next sync uploads again."""

    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        return None  # the create's undo (deleting the product) takes its media along

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        deps = self.deps
        if not deps.policy.syncs(SyncedField.IMAGES):
            return {"media": 0}
        parent = await _parent_product(deps, params["parent_product_id"])
        if not any(m.copyable for m in parent.media):
            return {"media": 0}
        child = deps.stores[params["child_shop"]]
        product_id = ctx.results["create"]["child_product_id"]
        links = LinkMap(child.shop, [])
        current = await child.read_product(product_id) if ctx.resumed else None
        if current is not None:
            links = LinkMap(
                child.shop,
                await deps.links.links_of(
                    child.shop, LinkKind.MEDIA, child_ids=[m.id for m in current.media]
                ),
            )
        # A new copy has no media of the child's: any unlinked one is an interrupted attempt's.
        plan = plan_media(parent, current, links, ChildMedia.REMOVE)
        if plan.files is None:
            return {"media": 0}
        try:
            ids = await child.set_media(product_id, plan.files)
        except Exception as err:
            if not _gives_up(err, deps):
                raise
            why = (
                f"media of parent product {parent.id} not copied to {child.shop}: {type(err).__name__}: {err}"
            )
            await _report(deps, child.shop, "media_failed", f"{parent.id} media", why, product_id, ctx)
            return {"media": 0, "failed": why}
        await deps.links.save_links(media_links(child.shop, parent, product_id, plan, ids))
        return {"media": len(plan.uploaded)}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        return None


class PublishChildProduct:
    """The copy published on the child's sales channels (an API-made product is on none): the
    channels the child's rules name, else those the parent's product is on, matched by name. A
    channel the child lacks is reported; a refusal compensates the copy, or, where the merchant
    chose `keep_and_report`, is reported and the product kept."""

    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        return None  # the create's undo (deleting the product) unpublishes it too

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        deps, shop = self.deps, params["child_shop"]
        child = deps.stores[shop]
        product_id = ctx.results["create"]["child_product_id"]
        try:
            names, ids = await channels_for(
                deps.parent, child, params["parent_product_id"], deps.policy.rules(shop).channels
            )
            missing = [n for n in names if n not in ids]
            if missing:
                await _report(
                    deps,
                    shop,
                    "channel_missing",
                    ",".join(missing),
                    f"{shop} has no sales channel named {', '.join(map(repr, missing))}: copies are not "
                    "published there (set this child's `channels` in storesync.toml)",
                    product_id,
                    ctx,
                )
            if ids:
                await child.publish(product_id, list(ids.values()))
        except Exception as err:
            if not _gives_up(err, deps):
                raise
            why = f"publishing {product_id} on {shop}'s channels failed: {type(err).__name__}: {err}"
            if deps.policy.rules(shop).on_copy_step_failure is OnCopyStepFailure.KEEP_AND_REPORT:
                await _report(
                    deps, shop, "copy_step_failed", params["parent_product_id"], why, product_id, ctx
                )
                return {"channels": [], "failed": why}
            raise PermanentStepError(why) from err
        return {"channels": sorted(ids)}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        return None


async def _report(
    deps: SagaDeps, shop: str, kind: str, subject: str, why: str, product_id: str, ctx: StepContext
) -> None:
    log.warning("copy step reported", shop=shop, kind=kind, why=why)
    if deps.attention is not None:
        await deps.attention.report(shop, kind, subject, why)
    await deps.audit.record(
        AuditRecord(
            shop, "product", product_id, kind, None, None, ctx.cause, detail=f"saga {ctx.saga_id}: {why}"
        )
    )


def copy_product_actions(deps: SagaDeps) -> dict[str, StepAction]:
    return {
        "create_child_product": CreateChildProduct(deps),
        "set_child_collections": SetChildCollections(deps),
        "set_child_levels": SetChildLevels(deps),
        "copy_child_media": CopyChildMedia(deps),
        "publish_child_product": PublishChildProduct(deps),
    }


async def run_copy_saga(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    saga_id: str,
    parent_product_id: str | None,
    child_shop: str,
    cause: str,
    *,
    final_attempt: bool,
    parent_api: StoreAPI | None = None,
    levels_read_at: datetime | None = None,
) -> SagaRecord:
    """Drive one copy-product saga to its end (without a product: resume it from its log). A step
    failing permanently - or with a store error on the final attempt - compensates the steps
    done, in reverse (`failures.undoes_copy`)."""
    stores: dict[str, StoreAPI] = dict(rt.apis(net))
    # The parent's answers (its product, levels, channels) read once for the whole run: each
    # step asks again (a resumed step must), but within one run they are the same answer. A
    # backfill gives its scanned parent, shared by every child's copy.
    stores[net.parent.shop] = parent_api or ScannedParent(rt.api(net.parent.shop))
    deps = SagaDeps(
        net,
        stores,
        st.links,
        st.writes,
        st.audit,
        rt.policy(net.merchant_id),
        levels_read_at,
        st.attention,
        st.archived,
        final_attempt,
    )
    executor = SagaExecutor(
        st.steps,
        copy_product_actions(deps),
        st.audit,
        is_permanent=lambda exc: undoes_copy(exc, final_attempt=final_attempt),
    )
    if parent_product_id:
        return await executor.start(
            saga_id,
            COPY_PRODUCT,
            child_shop,
            cause,
            copy_product_steps(parent_product_id, child_shop, stock_in_create=True),
        )
    return await executor.run(saga_id)


class CopyFailed(CatalogError):
    """A copy saga failed for good and was compensated (nothing of the copy is left)."""


async def copy_to_child(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child_shop: str,
    parent_product_id: str,
    cause: str,
    *,
    final_attempt: bool,
    parent_api: ScannedParent | None = None,
) -> SagaRecord | None:
    """A parent product the child has no copy of, copied by the copy saga (the live path:
    a product job, reconciliation). A handle conflict already reported is looked at again (one
    1-point read): while the child's own product still has the handle, nothing is tried; once
    it is free, the copy goes ahead. Returns the saga (None: skipped); `CopyFailed` when it was
    compensated for any other reason than a reported handle conflict. `parent_api`: the parent's
    answers already read (the product job's read; a reconcile's copies share one)."""
    parent_api = parent_api or ScannedParent(rt.api(net.parent.shop))
    if await st.attention.is_open(child_shop, "handle_conflict", parent_product_id):
        parent = await parent_api.read_product(parent_product_id)
        if parent is None:
            await st.attention.resolve(child_shop, "handle_conflict", parent_product_id)
            return None
        rules = rt.policy(net.merchant_id).rules(child_shop)
        taken = await rt.api(child_shop).find_product_id_by_handle(parent.handle)
        if taken is not None and rules.on_handle_conflict is OnHandleConflict.REPORT:
            log.info("handle conflict stands; not copied", shop=child_shop, product=parent_product_id)
            return None
        await st.attention.resolve(child_shop, "handle_conflict", parent_product_id)
    base = f"copy:{child_shop}:{parent_product_id}"
    saga_id = copy_saga_id(await st.steps.states(COPY_PRODUCT, prefix=base), child_shop, parent_product_id)
    rec = await run_copy_saga(
        rt,
        st,
        net,
        saga_id,
        parent_product_id,
        child_shop,
        cause,
        final_attempt=final_attempt,
        parent_api=parent_api,
    )
    if rec.state is SagaState.COMPENSATED and not handle_conflicted(rec):
        raise CopyFailed(f"saga {saga_id} failed and was compensated: {rec.error}")
    return rec


async def resume_unfinished_sagas(
    st: Storage, network: Network, max_attempts: int, *, limit: int = 1000
) -> int:
    """At worker start: one resume job per unfinished saga (a crash mid-saga continues forward or
    backward). Collapses into a queued copy job of the same saga; its lock key keeps it from
    overlapping a running one. How many were enqueued."""
    by_merchant: dict[str, list] = {}
    for saga_id, shop in await st.steps.unfinished_sagas(limit):
        try:
            m, _ = network.of_shop(shop)
        except UnknownStore:
            continue
        if saga_id.startswith(REPORT_SAGA_PREFIX):  # a child's stock move reported (services/stock.py)
            saga = await st.steps.load(saga_id)
            if saga is None:
                continue
            p = saga.steps[1].params
            job = child_stock_job(
                p["child_shop"],
                p["child_item"],
                p["child_location"],
                p["parent_item"],
                f"resume:{saga_id}",
                saga_id=saga_id,
            )
        else:
            job = copy_job(saga_id, None, shop, f"resume:{saga_id}", max_attempts)
        by_merchant.setdefault(m.merchant_id, []).append(job)
    for merchant_id, jobs in by_merchant.items():
        await enqueue_jobs(st.conn, jobs, merchant_id)
    return sum(len(jobs) for jobs in by_merchant.values())


# --------------------------------------------------------------------------- linking a copy's variants


async def link_pending_copy(
    links_repo: LinkRepository, product_link: Link, child_variants: Sequence[Variant]
) -> PendingResolution | None:
    """Link a pending copy's variants from `child_variants` (once, atomically; None when another
    path linked them first). `product_link`: as just read, with its `pending`; `links_repo`:
    `ports.LinkRepository`."""
    if product_link.pending is None:
        return None
    resolution = resolve_pending(product_link, product_link.pending, child_variants)
    if not await links_repo.complete_pending(
        product_link.child_shop, product_link.parent_id, resolution.links, resolution.writes
    ):
        return None
    return resolution


async def link_pending_copies(
    links_repo: LinkRepository, links: LinkMap, child_products: Iterable[Product]
) -> CopiesLinked:
    """Link the variants of the pending copies among `child_products` (as just read from the
    child). `links`: the child's link map, or the links of these products."""
    pending, linked = 0, list[PendingResolution]()
    for product in child_products:
        link = links.link_up(LinkKind.PRODUCT, product.id) if product.id else None
        if link is not None and link.pending is not None:
            pending += 1
            if (resolution := await link_pending_copy(links_repo, link, product.variants)) is not None:
                linked.append(resolution)
    return CopiesLinked(pending, linked)


async def fan_out_levels_moved_since_copy(
    st: Storage, net: MerchantNetwork, shop: str, resolutions: Iterable[PendingResolution], cause: str
) -> None:
    """Copies just linked wrote the parent's levels as read then: a parent level that moved
    since (a newer version applied) found no link to fan out to. Fan those out to this child
    (every path that links a copy calls this)."""
    resolutions = list(resolutions)
    if not resolutions:
        return
    moved: set[tuple[str, str]] = set()
    for r in resolutions:
        levels = r.parent_levels(net.location_maps.get(shop, {}))
        if levels and r.levels_read_at is not None:
            moved.update(await st.versions.moved_since(net.parent.shop, levels, r.levels_read_at))
    log.info("copies' variants linked", shop=shop, levels_moved_since=len(moved))
    await enqueue_jobs(
        st.conn, [fan_out_job(item, loc, cause, only=shop) for item, loc in sorted(moved)], net.merchant_id
    )


async def link_created_copy(
    st: Storage, net: MerchantNetwork, shop: str, body: Mapping[str, Any], cause: str, *, rechecked: bool
) -> bool:
    """Link a copy's variants from its products/create payload, with the echo records of the
    stock the copy wrote. A parent level that moved after the copy wrote it found no link to fan
    out to: those levels are fanned out to this child now.

    The webhook can outrun the copy: the store sends it while answering the create, before the
    copy has saved its product link. False when the product has no link and was not `rechecked`:
    the caller looks once more a little later; then it is a child-only product."""
    product_id = gid("Product", body.get("admin_graphql_api_id") or body.get("id"))
    links = await st.links.child_links(shop, products=[product_id])
    link = links.link_up(LinkKind.PRODUCT, product_id)
    if link is None and not rechecked:
        return False
    if link is None or link.pending is None:
        log.info(
            "child product created; nothing to link",
            shop=shop,
            product=product_id,
            why="a child-only product" if link is None else "linked already",
        )
        return True
    if not created_webhook_describes_it(link.pending):
        # Sent again since: this payload's variants are gone. The resend's products/update
        # starts a product job, whose read links it (or the backfill's link job does).
        log.info(
            "copy rewritten since this create webhook; linked from a read", shop=shop, product=product_id
        )
        return True
    resolution = await link_pending_copy(st.links, link, variants_from_product_webhook(body))
    if resolution is None:
        return True  # another path linked them first
    if resolution.unmatched:
        log.warning(
            "copy's variants not all in its create webhook",
            shop=shop,
            product=product_id,
            parent_variants=resolution.unmatched,
        )
    await fan_out_levels_moved_since_copy(st, net, shop, [resolution], cause)
    return True


async def link_updated_copy(
    st: Storage, net: MerchantNetwork, shop: str, link: Link, body: Mapping[str, Any], cause: str
) -> bool:
    """A copy made moments ago, its variants still pending, sent products/update: the saga's own
    later steps (its media, its publishing) make the child send one. Its variants are linked from
    the payload (which describes them as they are now), no store is read, and no product job
    starts: the copy shows what its saga wrote. A parent level that moved meanwhile is fanned out.

    False (nothing done: the caller routes the webhook as any other) for a copy whose create was
    sent again: an update sent before the resend, delivered late, would describe variants that
    are gone; a read links it (`created_webhook_describes_it`)."""
    if link.pending is None or not created_webhook_describes_it(link.pending):
        return False
    resolution = await link_pending_copy(st.links, link, variants_from_product_webhook(body))
    if resolution is None:
        return True  # another path linked it first
    if resolution.unmatched:
        log.warning(
            "copy's variants not all in its update webhook",
            shop=shop,
            product=link.child_id,
            parent_variants=resolution.unmatched,
        )
    await fan_out_levels_moved_since_copy(st, net, shop, [resolution], cause)
    return True


async def link_sold_copies(
    rt: Runtime, st: Storage, net: MerchantNetwork, shop: str, event: OrderEvent, links: LinkMap, cause: str
) -> bool:
    """A sale of a copy made moments ago, whose variants wait for the ids its create webhook
    brings: read those products and link their variants now (a sale is never left unapplied
    for want of a link), fanning out the parent levels that moved meanwhile. True when the sold
    products are copies: the caller reads the links again (linked here, or by another path
    since its first read). Store errors propagate: the order job retries."""
    products = {
        s.child_product_id
        for s in event.sales
        if s.child_product_id and links.parent_item_for_child_variant(s.child_variant_id) is None
    }
    if not products:
        return False
    copies = await st.links.child_links(shop, products=sorted(products))
    if not any(lk.kind is LinkKind.PRODUCT for lk in copies.links):
        return False  # not copies: child-only products
    pending = [lk for lk in copies.links if lk.kind is LinkKind.PRODUCT and lk.pending is not None]
    read = [await rt.api(shop).read_product(lk.child_id) for lk in pending]
    linked = await link_pending_copies(st.links, copies, [p for p in read if p is not None])
    await fan_out_levels_moved_since_copy(st, net, shop, linked.linked, cause)
    return True


async def link_overdue_copies(
    rt: Runtime, st: Storage, net: MerchantNetwork, shop: str, cause: str, *, written_before: datetime
) -> int:
    """Read and link the child's copies made before `written_before` that are still pending (their
    products/create webhook was lost), fanning out the parent levels that moved since; returns
    how many it linked. Store errors propagate (the job retries)."""
    overdue = [
        lk
        for lk in await st.links.pending_links(shop)
        if lk.pending and datetime.fromisoformat(lk.pending["written_at"]) <= written_before
    ]
    if not overdue:
        return 0
    api = rt.api(shop)
    if len(overdue) > BULK_READ_PENDING_FROM:
        products = await BulkCatalogScan(api).products()
    else:
        products = [p for lk in overdue if (p := await api.read_product(lk.child_id)) is not None]
    by_id = {p.id: p for p in products if p.id}
    resolutions = [
        r
        for lk in overdue
        if lk.child_id in by_id
        and (r := await link_pending_copy(st.links, lk, by_id[lk.child_id].variants)) is not None
    ]
    gone = [lk.child_id for lk in overdue if lk.child_id not in by_id]
    if gone:  # deleted in the child meanwhile: the product job or reconcile makes them again
        log.warning("pending copies no longer in the child", shop=shop, products=gone)
    await fan_out_levels_moved_since_copy(st, net, shop, resolutions, cause)
    log.info("overdue copies linked", shop=shop, copies=len(resolutions), overdue=len(overdue))
    return len(resolutions)
