"""Collection objects: parent precedence for a collection's own fields.

A parent collection has one counterpart per child, linked by handle (an existing child
collection of the same handle is adopted, `matched_by = handle`) or created by the engine
(`created`); the link (`sync_links`, kind `collection`) carries the synced view last written, as
product links do. The synced fields: title, description, handle, sort order, SEO, the image
(by file name and alt text: each store serves its copy from its own CDN) and, for a smart
collection, its conditions (`collection_view`; written as the collection's one conditions source,
Admin API 2026-10 `collection:` inputs).

- parent created/updated -> the child's linked collection is created or updated; a child edit
  to a synced field is reverted (told apart from a parent change by the stored view);
- parent deleted -> the child's linked collection is deleted, and only a linked one: a child's
  own collections are never touched;
- memberships stay the product jobs' business (`productSet` writes each product's mapped
  collections): when a manual collection's members differ between parent and child, the
  outcome names the parent products whose copies must be re-synced.

Plain rules: `services/collections.py` reads the stores and links (`ports.CollectionStore`,
`ports.LinkRepository`) and runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from storesync.sync.domain.catalog import ChangeCause, FieldChange, diff_views, image_key
from storesync.sync.domain.model import Collection, CollectionCondition, Link, LinkKind


def collection_view(c: Collection) -> dict[str, Any]:
    """The synced fields of a collection (JSON, store ids left out)."""
    return {
        "title": c.title,
        "handle": c.handle,
        "description": c.description_html,
        "sort_order": c.sort_order,
        "seo": [c.seo_title, c.seo_description],
        "image": [image_key(c.image.source), c.image.alt] if c.image else None,
        "conditions": None
        if c.conditions is None
        else {
            "disjunctive": c.disjunctive,
            "conditions": sorted(
                [r.kind, r.relation, r.match_type or "", list(r.values), r.currency or ""]
                for r in c.conditions
            ),
        },
    }


# The conditions the engine copies, by the shape of their value; the others (metafield,
# category: their values are store-specific ids) block the collection with the reason.
_MULTI_VALUE = frozenset({"productTag", "productTitle", "productType", "productVendor", "variantTitle"})


_MONEY = frozenset({"variantPrice", "variantCompareAtPrice"})


_NUMBER = frozenset({"variantInventory"})


COPIED_CONDITIONS = _MULTI_VALUE | _MONEY | _NUMBER


def condition_input(c: CollectionCondition) -> dict[str, Any]:
    """`CollectionSourceInclusionConditionInput` (one kind set, @oneOf) for a condition."""
    if c.kind in _MULTI_VALUE:
        spec: dict[str, Any] = {
            "matchType": c.match_type or "ANY",
            "relation": c.relation,
            "values": list(c.values),
        }
    elif c.kind in _MONEY:
        spec = {"relation": c.relation}
        if c.values:
            spec["value"] = {"amount": c.values[0], "currencyCode": c.currency}
    elif c.kind in _NUMBER:
        spec = {"relation": c.relation, "value": int(c.values[0])}
    else:
        raise ValueError(f"a {c.kind} condition cannot be copied")
    return {c.kind: spec}


def source_input(parent: Collection) -> dict[str, Any]:
    """`CollectionCreateSourceTargetInput`: the parent's conditions as one conditions source."""
    assert parent.conditions is not None
    return {
        "source": {
            "title": parent.title or parent.handle,
            "targetType": "PRODUCTS",
            "inclusion": {
                "matchType": "ANY" if parent.disjunctive else "ALL",
                "conditions": [condition_input(c) for c in parent.conditions],
            },
        }
    }


def collection_input(parent: Collection) -> dict[str, Any]:
    """`CollectionCreateInput` with the parent's synced fields; an update turns `sources` into
    `sourcesToDelete`/`sourcesToCreate` and adds the id (`plan_child_collection`)."""
    inp: dict[str, Any] = {
        "title": parent.title,
        "handle": parent.handle,
        "descriptionHtml": parent.description_html,
        "sortOrder": parent.sort_order,
        "seo": {"title": parent.seo_title, "description": parent.seo_description},
    }
    if parent.conditions is not None:
        inp["sources"] = [source_input(parent)]
    if parent.image is not None:
        inp["image"] = {"src": parent.image.source, "altText": parent.image.alt}
    return inp


@dataclass(frozen=True)
class CollectionPlan:
    child_shop: str
    parent_collection_id: str
    child_collection_id: str | None  # None: create it
    input: dict[str, Any]
    expected: dict[str, Any]  # the view the child will show: stored on the link
    changes: tuple[FieldChange, ...] = ()
    blocked: str | None = None

    @property
    def noop(self) -> bool:
        return self.blocked is None and self.child_collection_id is not None and not self.changes

    @property
    def reverted(self) -> tuple[FieldChange, ...]:
        return tuple(c for c in self.changes if c.cause is ChangeCause.CHILD_EDIT_REVERTED)


def plan_child_collection(
    parent: Collection, child: Collection | None, child_shop: str, last_view: dict[str, Any] | None
) -> CollectionPlan:
    """What to write so the child's counterpart shows the parent's synced fields. `last_view`:
    what the engine last wrote to (or found in) that child collection, None if nothing."""
    if not parent.id:
        raise ValueError("the parent collection has no id")
    expected = collection_view(parent)
    uncopied = sorted({c.kind for c in parent.conditions or () if c.kind not in COPIED_CONDITIONS})
    blocked: str | None
    if uncopied:
        blocked = (
            f"collection {parent.handle!r} has conditions storesync cannot copy ({', '.join(uncopied)}: "
            "their values are ids of the parent store)"
        )
        return CollectionPlan(child_shop, parent.id, child.id if child else None, {}, expected, (), blocked)
    inp = collection_input(parent)
    if child is None:
        return CollectionPlan(child_shop, parent.id, None, inp, expected)
    if parent.image is None and child.image is not None:
        inp["image"] = None  # the parent has none: remove the child's
    blocked = None
    if (parent.conditions is None) != (child.conditions is None):
        kinds = {True: "manual", False: "smart"}
        blocked = (
            f"collection {parent.handle!r} is {kinds[parent.conditions is None]} in the parent but "
            f"{kinds[child.conditions is None]} in {child_shop}: storesync does not convert one into the other"
        )
    changes = diff_views(expected, collection_view(child), last_view)
    sources = inp.pop("sources", None)
    if sources is not None and any(c.field == "conditions" for c in changes):
        # The child's source is replaced by the parent's conditions, in the same update.
        inp["sourcesToDelete"] = [child.source_id] if child.source_id else []
        inp["sourcesToCreate"] = sources
    return CollectionPlan(
        child_shop, parent.id, child.id, {"id": child.id, **inp}, expected, tuple(changes), blocked
    )


def membership_resyncs(
    parent: Collection, child_members: Sequence[str], product_links: Sequence[Link]
) -> list[str]:
    """Parent products whose child copy is in the wrong place for this (manual) collection: a
    parent member whose copy is not a member of the child's collection, or a copy in it whose
    parent product is not in the parent's. Child-only products are the child's business."""
    if parent.conditions is not None or parent.product_ids is None:
        return []  # smart collections: each store computes its members from the conditions
    by_parent = {lk.parent_id: lk.child_id for lk in product_links if lk.kind is LinkKind.PRODUCT}
    by_child = {c: p for p, c in by_parent.items()}
    parent_members, members = set(parent.product_ids), set(child_members)
    missing = [p for p in parent.product_ids if p in by_parent and by_parent[p] not in members]
    extra = [by_child[c] for c in child_members if c in by_child and by_child[c] not in parent_members]
    return list(dict.fromkeys(missing + extra))


class CollectionAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    NOTHING = "nothing"  # the parent collection is gone and the child never had one linked


@dataclass(frozen=True)
class CollectionOutcome:
    action: CollectionAction
    child_collection_id: str | None = None
    plan: CollectionPlan | None = None
    resync_products: tuple[str, ...] = ()  # parent product ids whose copy's memberships differ
