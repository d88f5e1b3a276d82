"""Metafields: the namespaces a merchant lists as synced follow the parent; every other metafield
is the child's and is never read into a write, changed or deleted.

A productSet `metafields` list replaces the owner's metafields wholesale, and a list left out
of the input leaves them as they are ("For list fields: Creates new entries, updates existing
entries, and deletes existing entries that aren't included"; "all other field types ... omitted
fields will remain unchanged": https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/productSet).
So the engine never sends `metafields` for a product or variant the child already has: the
synced namespaces are written with `metafieldsSet` (by owner, namespace and key, at most 25 per
call: https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/metafieldsSet) and the
synced keys the parent no longer has are removed with `metafieldsDelete`
(https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/metafieldsDelete). Only a
product or variant the write creates gets its synced metafields in the productSet itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storesync.sync.domain.model import Metafield

PRODUCT_OWNER = "product"  # `MetafieldWrite.owner` of the product itself; else a parent variant id


def synced(metafields: Iterable[Metafield], namespaces: frozenset[str]) -> list[Metafield]:
    return [m for m in metafields if m.namespace in namespaces]


def metafields_view(metafields: Iterable[Metafield], namespaces: frozenset[str]) -> list[list[str]]:
    """The synced metafields as compared between stores: [namespace, key, type, value], sorted."""
    return sorted([m.namespace, m.key, m.type, m.value] for m in synced(metafields, namespaces))


def metafield_inputs(metafields: Iterable[Metafield]) -> list[dict[str, Any]]:
    """MetafieldInput values (productSet's, for a product or variant it creates)."""
    return [{"namespace": m.namespace, "key": m.key, "type": m.type, "value": m.value} for m in metafields]


@dataclass(frozen=True)
class MetafieldWrite:
    """One synced metafield to set (`value` given) or delete (`value` None) on a child owner:
    the product (`PRODUCT_OWNER`) or the variant linked to the parent variant `owner`."""

    owner: str
    namespace: str
    key: str
    type: str | None = None
    value: str | None = None

    @property
    def deletes(self) -> bool:
        return self.value is None


def metafield_writes(
    owner: str, parent: Iterable[Metafield], child: Iterable[Metafield], namespaces: frozenset[str]
) -> list[MetafieldWrite]:
    """What makes the child owner's synced metafields the parent's: a set for each one missing
    or different, a delete for each synced key the parent does not have."""
    if not namespaces:
        return []
    want = {(m.namespace, m.key): m for m in synced(parent, namespaces)}
    have = {(m.namespace, m.key): m for m in synced(child, namespaces)}
    out = [
        MetafieldWrite(owner, ns, key, m.type, m.value)
        for (ns, key), m in sorted(want.items())
        if (have.get((ns, key)) is None or (have[(ns, key)].type, have[(ns, key)].value) != (m.type, m.value))
    ]
    out += [MetafieldWrite(owner, ns, key) for (ns, key) in sorted(have) if (ns, key) not in want]
    return out
