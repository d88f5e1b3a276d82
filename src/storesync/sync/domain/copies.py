"""Copies linked later: a copy's productSet is answered with the product id alone (the least a
create costs), so its variants are linked when their ids arrive: from the child's
products/create webhook, the first read of the product, or a sale of it. Until then the product
link holds what linking needs (`Link.pending`). Plain rules; `services/copies.py` runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from storesync.sync.domain.catalog import ProductPlan
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy, Product, Variant, WriteRecord, gid


def pending_copy(
    parent: Product,
    stock: Mapping[tuple[Any, ...], Sequence[tuple[str, int]]],
    written_at: datetime,
    cause: str,
    levels_read_at: datetime | None = None,
    *,
    resent: bool = False,
) -> dict[str, Any]:
    """What linking a copy's variants needs once their ids are known (`Link.pending`, JSON): per
    parent variant its id, inventory item, option values (a variant's identity in its product,
    as productSet matched them) and SKU, and the stock the copy wrote for it (`stock`: option
    key -> [(child location, quantity)]), for the echo records; and when the parent's levels it
    wrote were read (`levels_read_at`, default `written_at`): a parent level that moved after
    that found no link to fan out to, and is fanned out when the copy is linked. `resent`: the
    create was sent again (an upsert after a lost answer), which gives the product new variants:
    the first send's products/create webhook describes variants that are gone, so only a read
    of the product links this copy (`created_webhook_describes_it`)."""
    return {
        "written_at": written_at.isoformat(),
        "cause": cause,
        "resent": resent,
        "levels_read_at": (levels_read_at or written_at).isoformat(),
        "variants": [
            {
                "parent_variant_id": pv.id,
                "parent_item_id": pv.inventory_item_id,
                "options": [list(kv) for kv in pv.option_key],
                "sku": pv.sku,
                "levels": [[loc, q] for loc, q in stock.get(pv.option_key, ())],
            }
            for pv in parent.variants
        ],
    }


def copy_product_link(plan: ProductPlan, product_id: str, links: LinkMap, pending: dict[str, Any]) -> Link:
    """The product link of a copy whose answer named only the product: its variants pending."""
    old = links.link_down(LinkKind.PRODUCT, plan.parent_product_id)
    return Link(
        LinkKind.PRODUCT,
        plan.child_shop,
        plan.parent_product_id,
        product_id,
        old.matched_by if old else MatchedBy.CREATED,
        synced_view=plan.expected,
        pending=pending,
    )


def created_webhook_describes_it(pending: Mapping[str, Any]) -> bool:
    """Whether a copy's products/create payload shows its current variants (see `pending_copy`)."""
    return not pending.get("resent")


@dataclass(frozen=True)
class PendingResolution:
    links: list[Link]
    writes: list[WriteRecord]
    unmatched: list[str]  # parent variants the child product has no variant for (options changed since)
    levels_read_at: datetime | None = None  # when the parent levels the copy wrote were read

    def parent_levels(self, parent_locations: Iterable[str]) -> list[tuple[str, str]]:
        """The (parent item, parent location) levels of the variants linked."""
        locations = list(parent_locations)
        return [
            (lk.parent_inventory_item_id, loc)
            for lk in self.links
            if lk.parent_inventory_item_id
            for loc in locations
        ]


def resolve_pending(
    product_link: Link, pending: Mapping[str, Any], child_variants: Sequence[Variant]
) -> PendingResolution:
    """The variant links (and echo records) of a copy, from its child variants as read or as a
    webhook reported them: matched to the parent's by option values."""
    by_key = {v.option_key: v for v in child_variants if v.id}
    written_at = datetime.fromisoformat(pending["written_at"])
    out = PendingResolution(
        [], [], [], datetime.fromisoformat(pending.get("levels_read_at") or pending["written_at"])
    )
    shop = product_link.child_shop
    for pv in pending["variants"]:
        cv = by_key.get(tuple(tuple(kv) for kv in pv["options"]))
        if cv is None or not pv.get("parent_variant_id"):
            out.unmatched.append(pv.get("parent_variant_id") or str(pv["options"]))
            continue
        out.links.append(
            Link(
                LinkKind.VARIANT,
                shop,
                pv["parent_variant_id"],
                cv.id or "",
                MatchedBy.CREATED,
                parent_product_id=product_link.parent_id,
                child_product_id=product_link.child_id,
                parent_inventory_item_id=pv.get("parent_item_id"),
                child_inventory_item_id=cv.inventory_item_id,
            )
        )
        if cv.inventory_item_id:
            out.writes.extend(
                WriteRecord(shop, cv.inventory_item_id, loc, int(q), written_at, pending["cause"])
                for loc, q in pv.get("levels") or ()
            )
    return out


def variants_from_product_webhook(body: Mapping[str, Any]) -> list[Variant]:
    """A `products/create|update` body's variants (REST JSON: `option1..3` by the product's
    option positions) as domain values with their ids and inventory items."""
    names = {int(o.get("position") or i + 1): o.get("name") for i, o in enumerate(body.get("options") or ())}
    out = []
    for v in body.get("variants") or ():
        values = tuple(
            (names[n], v[f"option{n}"]) for n in (1, 2, 3) if names.get(n) and v.get(f"option{n}") is not None
        )
        out.append(
            Variant(
                id=gid("ProductVariant", v.get("admin_graphql_api_id") or v.get("id")),
                option_values=values,
                price=Decimal(str(v.get("price") or "0")),
                sku=v.get("sku") or None,
                inventory_item_id=gid("InventoryItem", v["inventory_item_id"])
                if v.get("inventory_item_id")
                else None,
            )
        )
    return out


@dataclass(frozen=True)
class CopiesLinked:
    """What `link_pending_copies` found: `pending`, how many of the products were pending copies
    (each linked now, here or by another path at the same moment: a caller that found any reads
    its links again); `linked`, those this call linked (their parent levels that moved since the
    copy are the caller's to fan out: `PendingResolution.levels_read_at`)."""

    pending: int
    linked: list[PendingResolution]
