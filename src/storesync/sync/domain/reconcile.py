"""Reconciliation planning: compare the parent with every child and list the repairs that make
them agree (`services/reconcile.py` reads the stores and carries the repairs out).

Catalog: per linked product, the child's synced fields (translated to parent ids) against what
the parent says they should be (`catalog.expected_view`). Inventory: per linked inventory item
and mapped location, the child's level against max(parent level, 0). Collections (when the
caller passes collection stores): per parent collection, the child's linked counterpart's synced
fields (`collections.collection_view`); a linked child collection whose parent is gone is
deleted. Drift comes from dropped webhooks or edits made while the engine was down; each repair
says why it is needed.

An incremental pass (`diff_changed_products`) compares only the products updated since the last
pass on either side, against what the engine last wrote to each child (the product link's
`synced_view`), so neither side is read for the products that did not change: a parent product
whose children were last given other synced fields, or a child copy that shows other synced
fields than were last written, is resynced. Deletions, and products whose link has no recorded
view, wait for (or are resynced by) the next full pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storesync.sync.domain.catalog import (
    FieldChange,
    SyncPolicy,
    actual_view,
    expected_view,
    plan_child_product,
    same_view,
)
from storesync.sync.domain.collections import plan_child_collection
from storesync.sync.domain.inventory import child_target
from storesync.sync.domain.model import Collection, LinkKind, LinkMap, Product
from storesync.sync.domain.network import MerchantNetwork

LevelKey = tuple[str, str]  # (inventory item gid, location gid)


class RepairKind(StrEnum):
    RESYNC_PRODUCT = "resync_product"  # productSet the child from the parent
    CREATE_PRODUCT = "create_product"  # linked child product is gone (or never created): create it
    DELETE_PRODUCT = "delete_product"  # the parent product is gone: delete the child's
    BLOCKED_PRODUCT = "blocked_product"  # cannot be written without destroying child data: report only
    SET_INVENTORY = "set_inventory"
    SYNC_COLLECTION = "sync_collection"  # create, adopt by handle or update the child's counterpart
    DELETE_COLLECTION = "delete_collection"  # the parent collection is gone: delete the linked one
    BLOCKED_COLLECTION = "blocked_collection"  # smart vs manual, or handle linked elsewhere: report only


@dataclass(frozen=True)
class Repair:
    kind: RepairKind
    child_shop: str
    parent_id: str  # product gid, collection gid, or inventory item gid
    child_id: str | None = None
    location_id: str | None = None  # SET_INVENTORY: the child's location
    expected: int | None = None
    actual: int | None = None
    changes: tuple[FieldChange, ...] = ()
    reason: str = ""
    parent_location_id: str | None = None  # SET_INVENTORY: the parent's location

    def describe(self) -> str:
        if self.kind is RepairKind.SET_INVENTORY:
            return (
                f"{self.child_shop}: {self.child_id}@{self.location_id} is {self.actual}, "
                f"parent says {self.expected}"
            )
        what = "; ".join(c.describe(self.child_shop) for c in self.changes) or self.reason
        return f"{self.child_shop}: {self.kind} {self.parent_id}: {what}"


@dataclass
class ReconcileReport:
    repairs: list[Repair] = field(default_factory=list)
    # Copies found showing what their parent implies, whose link records another view (or none,
    # e.g. linked by SKU): child shop -> parent product id -> that view, to be recorded, so the
    # echo checks and incremental passes compare against it.
    views_found: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    products_checked: int = 0
    levels_checked: int = 0
    collections_checked: int = 0

    @property
    def in_sync(self) -> bool:
        return not self.repairs


def diff_catalog(
    parent_products: Sequence[Product],
    child_products: Mapping[str, Sequence[Product]],
    link_maps: Mapping[str, LinkMap],
    policy: SyncPolicy,
    report: ReconcileReport,
) -> None:
    parents = {p.id: p for p in parent_products if p.id}
    for shop, products in child_products.items():
        links = link_maps[shop]
        by_id = {p.id: p for p in products if p.id}
        for pid, parent in parents.items():
            report.products_checked += 1
            child_id = links.child_id(LinkKind.PRODUCT, pid)
            child = by_id.get(child_id) if child_id else None
            if child is None:
                reason = "linked child product is missing" if child_id else "not in the child yet"
                report.repairs.append(Repair(RepairKind.CREATE_PRODUCT, shop, pid, child_id, reason=reason))
                continue
            plan = plan_child_product(parent, child, links, policy)
            if plan.blocked:
                report.repairs.append(
                    Repair(RepairKind.BLOCKED_PRODUCT, shop, pid, child_id, reason=plan.blocked)
                )
            elif not plan.noop:
                report.repairs.append(
                    Repair(RepairKind.RESYNC_PRODUCT, shop, pid, child_id, changes=plan.changes)
                )
            else:
                link = links.link_down(LinkKind.PRODUCT, pid)
                if link is not None and not same_view(link.synced_view, plan.expected):
                    report.views_found.setdefault(shop, {})[pid] = plan.expected
        for link in links.links:
            if link.kind is LinkKind.PRODUCT and link.parent_id not in parents and link.child_id in by_id:
                report.repairs.append(
                    Repair(
                        RepairKind.DELETE_PRODUCT,
                        shop,
                        link.parent_id,
                        link.child_id,
                        reason="the parent product no longer exists",
                    )
                )


def diff_collections(
    parent_collections: Sequence[Collection],
    child_collections: Mapping[str, Sequence[Collection]],
    link_maps: Mapping[str, LinkMap],
    report: ReconcileReport,
) -> None:
    """Every parent collection against its counterpart in each child; a child's own collections
    (linked to nothing) are not looked at."""
    parents = {c.id: c for c in parent_collections if c.id}
    for shop, collections in child_collections.items():
        links = link_maps[shop]
        by_id = {c.id: c for c in collections if c.id}
        handles = {c.handle for c in collections}
        for pid, parent in parents.items():
            report.collections_checked += 1
            link = links.link_down(LinkKind.COLLECTION, pid)
            child = by_id.get(link.child_id) if link else None
            if child is None:
                reason = (
                    "linked child collection is missing"
                    if link
                    else "a child collection of that handle is not linked yet"
                    if parent.handle in handles
                    else "not in the child yet"
                )
                report.repairs.append(
                    Repair(
                        RepairKind.SYNC_COLLECTION, shop, pid, link.child_id if link else None, reason=reason
                    )
                )
                continue
            plan = plan_child_collection(parent, child, shop, link.synced_view if link else None)
            if plan.blocked:
                report.repairs.append(
                    Repair(RepairKind.BLOCKED_COLLECTION, shop, pid, child.id, reason=plan.blocked)
                )
            elif plan.changes:
                report.repairs.append(
                    Repair(RepairKind.SYNC_COLLECTION, shop, pid, child.id, changes=plan.changes)
                )
        for link in links.links:
            if link.kind is LinkKind.COLLECTION and link.parent_id not in parents and link.child_id in by_id:
                report.repairs.append(
                    Repair(
                        RepairKind.DELETE_COLLECTION,
                        shop,
                        link.parent_id,
                        link.child_id,
                        reason="the parent collection no longer exists",
                    )
                )


def diff_inventory(
    network: MerchantNetwork,
    parent_levels: Mapping[LevelKey, int],
    child_levels: Mapping[str, Mapping[LevelKey, int]],
    link_maps: Mapping[str, LinkMap],
    report: ReconcileReport,
) -> None:
    for child in network.children:
        links = link_maps.get(child.shop)
        levels = child_levels.get(child.shop, {})
        if links is None:
            continue
        for link in links.links:
            if link.kind is not LinkKind.VARIANT or not (
                link.parent_inventory_item_id and link.child_inventory_item_id
            ):
                continue
            for parent_loc, child_loc in network.location_maps.get(child.shop, {}).items():
                parent_level = parent_levels.get((link.parent_inventory_item_id, parent_loc))
                if parent_level is None:
                    continue  # not stocked there in the parent
                report.levels_checked += 1
                expected = child_target(parent_level)
                actual = levels.get((link.child_inventory_item_id, child_loc))
                if actual != expected:
                    report.repairs.append(
                        Repair(
                            RepairKind.SET_INVENTORY,
                            child.shop,
                            link.parent_inventory_item_id,
                            link.child_inventory_item_id,
                            child_loc,
                            expected,
                            actual,
                            reason="level differs from the parent's",
                            parent_location_id=parent_loc,
                        )
                    )


def diff_changed_products(
    parent_changed: Sequence[Product],
    child_changed: Mapping[str, Sequence[Product]],
    link_maps: Mapping[str, LinkMap],
    policy: SyncPolicy,
    report: ReconcileReport,
) -> None:
    """The incremental catalog diff (see the module doc): `parent_changed` and `child_changed`
    (per child shop) are the products updated since the last pass."""
    for shop, links in link_maps.items():
        behind: dict[str, str] = {}
        for parent in parent_changed:
            if parent.id is None:
                continue
            report.products_checked += 1
            link = links.link_down(LinkKind.PRODUCT, parent.id)
            if link is None:
                behind[parent.id] = "not in the child yet"
            elif link.synced_view is None:
                behind[parent.id] = "no record of what the child was given"
            elif not same_view(expected_view(parent, policy, links), link.synced_view):
                behind[parent.id] = "the parent changed since the child was last written"
        for child in child_changed.get(shop, ()):
            parent_id = links.parent_id(LinkKind.PRODUCT, child.id) if child.id else None
            if parent_id is None or parent_id in behind:
                continue  # a child-only product, or already resynced
            report.products_checked += 1
            link = links.link_down(LinkKind.PRODUCT, parent_id)
            if link is None or link.synced_view is None:
                behind[parent_id] = "no record of what the child was given"
            elif not same_view(actual_view(child, policy, links), link.synced_view):
                behind[parent_id] = "the child shows other synced fields than it was last given"
        for parent_id, reason in behind.items():
            link = links.link_down(LinkKind.PRODUCT, parent_id)
            kind = RepairKind.RESYNC_PRODUCT if link is not None else RepairKind.CREATE_PRODUCT
            report.repairs.append(
                Repair(kind, shop, parent_id, link.child_id if link else None, reason=reason)
            )
