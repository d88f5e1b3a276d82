"""Locations: each store's, the location map proposed by name (`storesync network locations`),
and what is wrong with a configured map (a mapped location gone or deactivated).

A child's `location_map` pairs a parent location with the child location that mirrors it: a sale
committed at the child location draws from the parent one, and the parent's level there is set
in the child location. Names are the only thing two stores share about a location, so the
proposal pairs equal names (ignoring case and surrounding spaces); anything else is the
merchant's call, printed as a comment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoreLocation:
    id: str
    name: str
    active: bool
    fulfills_online_orders: bool = True


def location_park_key(shop: str, location_id: str) -> str:
    """What a job waiting for a deactivated location is parked for (`queue` parking keys)."""
    return f"location:{shop}:{location_id}"


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class MappingProblem:
    shop: str  # the store whose location it is
    location_id: str
    problem: str  # "gone" or "inactive"

    def describe(self) -> str:
        what = "no longer exists" if self.problem == "gone" else "is deactivated"
        return f"{self.shop}: mapped location {self.location_id} {what}"


@dataclass
class MappingProposal:
    child_shop: str
    pairs: dict[str, str] = field(default_factory=dict)  # parent location gid -> child location gid
    notes: list[str] = field(default_factory=list)  # what was not paired, and why

    def toml(self, names: Mapping[str, str]) -> list[str]:
        """The child's `location_map` line, ready to paste under its `[[merchants.children]]`,
        with the names as comments."""
        pairs = ", ".join(f'"{p}" = "{c}"' for p, c in self.pairs.items())
        lines = [f"# {names.get(p, p)} -> {names.get(c, c)}" for p, c in self.pairs.items()]
        lines += [f"# {note}" for note in self.notes]
        return [*lines, f"location_map = {{ {pairs} }}"]


def propose_mapping(
    parent: Sequence[StoreLocation], child_shop: str, child: Sequence[StoreLocation]
) -> MappingProposal:
    """Pair each active parent location with the active child location of the same name."""
    out = MappingProposal(child_shop)
    by_name: dict[str, list[StoreLocation]] = {}
    for loc in child:
        if loc.active:
            by_name.setdefault(_key(loc.name), []).append(loc)
    used: set[str] = set()
    for p in parent:
        if not p.active:
            out.notes.append(f"parent location {p.name!r} is deactivated: not mapped")
            continue
        found = by_name.get(_key(p.name), [])
        if len(found) == 1:
            out.pairs[p.id] = found[0].id
            used.add(found[0].id)
        elif found:
            out.notes.append(f"{child_shop} has {len(found)} locations named {p.name!r}: pick one")
        else:
            out.notes.append(f"{child_shop} has no active location named {p.name!r}")
    for loc in child:
        if loc.active and loc.id not in used:
            out.notes.append(
                f"{child_shop} location {loc.name!r} mirrors no parent location (its stock is not synced)"
            )
    return out


def mapping_problems(
    parent_shop: str,
    location_maps: Mapping[str, Mapping[str, str]],
    locations: Mapping[str, Sequence[StoreLocation]],
) -> list[MappingProblem]:
    """Every mapped location (parent or child side) that is gone or deactivated, for the stores
    whose locations were read."""
    out: list[MappingProblem] = []
    seen: set[tuple[str, str]] = set()
    for child_shop, mapping in location_maps.items():
        for parent_loc, child_loc in mapping.items():
            for shop, loc in ((parent_shop, parent_loc), (child_shop, child_loc)):
                if shop not in locations or (shop, loc) in seen:
                    continue
                seen.add((shop, loc))
                found = next((x for x in locations[shop] if x.id == loc), None)
                if found is None:
                    out.append(MappingProblem(shop, loc, "gone"))
                elif not found.active:
                    out.append(MappingProblem(shop, loc, "inactive"))
    return out
