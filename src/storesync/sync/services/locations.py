"""Locations: a mapped location deactivated or gone, an item disconnected from a location, and
`storesync network locations` (every store's locations, the mapping proposed by name).

A level storesync must not write is recorded (`ports.InactiveLevels`): fan-outs skip it (the
child's share reports `inactive`), and a sale that would draw from a deactivated parent
location is parked with that location as its reason (`location_park_key`), not retried to a
dead letter. Both are audited once, when they start, and listed by `storesync status`. When the
location is active again (or the item stocked there again) the parked jobs run at once and the
level is set from the parent (a reconciliation of the merchant, or the item's fan-out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs, unpark
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.locations import (
    MappingProblem,
    MappingProposal,
    StoreLocation,
    location_park_key,
    mapping_problems,
    propose_mapping,
)
from storesync.sync.domain.model import gid
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.routing import fan_out_job, reconcile_job
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.locations")

# A reactivated location's levels are set from the parent by a reconciliation this much later
# (the location's own level webhooks come first).
RECONCILE_AFTER_ACTIVATION_S = 2.0


def _mirrors(net: MerchantNetwork, shop: str, location: str) -> list[str]:
    """Who mirrors `location` of `shop`: for a parent location, the children mapping it; for a
    child's, the parent location it mirrors. Empty: not mapped."""
    if shop == net.parent.shop:
        return [c for c, m in net.location_maps.items() if location in m]
    parent = net.parent_location(shop, location)
    return [parent] if parent else []


async def location_changed(
    st: Storage, net: MerchantNetwork, shop: str, topic: str, body: Mapping[str, Any], cause: str
) -> None:
    location = gid("Location", body.get("admin_graphql_api_id") or body.get("id"))
    mirrors = _mirrors(net, shop, location)
    if not mirrors:
        log.info("an unmapped location changed", shop=shop, location=location, topic=topic)
        return
    name = body.get("name") or location
    if topic == "locations/deactivate":
        reason = "deactivated"
        if await st.inactive.mark(shop, location, "", reason):
            await st.audit.record(
                AuditRecord(
                    shop=shop,
                    object_type="location",
                    object_id=location,
                    action=f"location_{reason}",
                    before={"active": True, "mirrored_by": mirrors},
                    after={"active": False},
                    cause=cause,
                    detail=f"mapped location {name!r} {reason}: its levels are not synced until it is "
                    "active again (or the location map changes)",
                )
            )
        log.warning("mapped location no longer active", shop=shop, location=location, reason=reason)
        return
    if await st.inactive.clear(shop, location, ""):
        await st.audit.record(
            AuditRecord(
                shop=shop,
                object_type="location",
                object_id=location,
                action="location_activated",
                before={"active": False},
                after={"active": True, "mirrored_by": mirrors},
                cause=cause,
                detail=f"mapped location {name!r} active again: parked sales run, levels set from the parent",
            )
        )
    unparked = await unpark(st.conn, location_park_key(shop, location))
    await enqueue_jobs(
        st.conn, [reconcile_job(net.merchant_id, RECONCILE_AFTER_ACTIVATION_S)], net.merchant_id
    )
    log.info("mapped location active", shop=shop, location=location, unparked=unparked)


async def level_connection_changed(
    st: Storage, net: MerchantNetwork, shop: str, topic: str, body: Mapping[str, Any], cause: str
) -> None:
    item = gid("InventoryItem", body.get("inventory_item_id"))
    location = gid("Location", body.get("location_id"))
    if not _mirrors(net, shop, location):
        return
    is_parent = shop == net.parent.shop
    parent_item: str | None
    parent_location: str | None
    if is_parent:
        parent_item = item if await st.links.links_for_parent_item(item) else None
        parent_location = location
    else:
        links = await st.links.child_links(shop, items=[item])
        parent_item, parent_location = links.parent_item(item), net.parent_location(shop, location)
    if parent_item is None or parent_location is None:
        return  # not a synced level
    if topic == "inventory_levels/disconnect":
        if await st.inactive.mark(shop, location, item, "disconnected"):
            await st.audit.record(
                AuditRecord(
                    shop=shop,
                    object_type="inventory_level",
                    object_id=f"{item}@{location}",
                    action="level_disconnected",
                    before={"stocked": True},
                    after={"stocked": False},
                    cause=cause,
                    detail="the item is no longer stocked at this mapped location: storesync does not "
                    "write it there until it is stocked again",
                )
            )
        return
    if await st.inactive.clear(shop, location, item):
        # Stocked there again: set it from the parent (a parent's: every child).
        job = fan_out_job(parent_item, parent_location, cause, only=None if is_parent else shop)
        await enqueue_jobs(st.conn, [job], net.merchant_id)
        if is_parent:
            await unpark(st.conn, location_park_key(shop, location))


# --------------------------------------------------------------------------- storesync network locations


@dataclass
class MerchantLocations:
    merchant_id: str
    locations: dict[str, list[StoreLocation]] = field(default_factory=dict)  # shop -> its locations
    errors: dict[str, str] = field(default_factory=dict)  # shop -> why it was not read
    proposals: list[MappingProposal] = field(default_factory=list)
    problems: list[MappingProblem] = field(default_factory=list)

    @property
    def names(self) -> dict[str, str]:
        return {loc.id: loc.name for locs in self.locations.values() for loc in locs}


async def network_locations(rt: Runtime, net: MerchantNetwork) -> MerchantLocations:
    """Every store's locations, the mapping each child's proposed by name, and what is wrong with
    the configured maps."""
    out = MerchantLocations(net.merchant_id)
    for store in net.stores:
        try:
            out.locations[store.shop] = await rt.api(store.shop).locations()
        except Exception as exc:  # one store unreachable: the others are still listed
            out.errors[store.shop] = f"{type(exc).__name__}: {exc}"
    parent = out.locations.get(net.parent.shop)
    if parent is not None:
        for child in net.children:
            if child.shop in out.locations:
                out.proposals.append(propose_mapping(parent, child.shop, out.locations[child.shop]))
    out.problems = mapping_problems(net.parent.shop, net.location_maps, out.locations)
    return out
