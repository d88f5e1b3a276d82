"""Echo suppression: telling the engine's own writes, coming back as webhooks, from real changes.

Every check lives here:
- inventory (`is_echo`): `inventory_levels/update` says nothing about who made a change, so the
  engine records each write it makes (item, location, resulting quantity, time) BEFORE making
  it, and a webhook that only reports such a write causes no new write. The engine's newest
  write inside the window decides: an external change that happens to land on a value the
  engine wrote earlier (but not last) is still seen as a change.
- stock moves: Shopify sends products/update for every stock move of a product's variants (the
  payload carries their inventory_quantity), and the engine's level writes make most of them. A
  products/update whose payload differs from the last one seen for that product only in its
  stock (`is_stock_move`, on `product_digest`s) changed nothing the engine syncs that the
  payload could show, so it is not read back from the store and starts no job.
- publishing: a products/update whose payload differs from the last one seen (a products/create's
  included) only in its publication fields (`is_publication_change`) reports a publish or
  unpublish, which storesync never syncs after a copy is made (a copy's own publishing sends
  one): not read back, no job.
- catalog: a product or collection link remembers the synced fields last written to (or found
  in) the child (`Link.synced_view`). A child's products/update or collections/update while the
  child shows exactly that view reports our own write (or a stock or membership move), not an
  edit (`product_shows_last_write`, `collection_shows_last_write`); a parent products/update
  that leaves every child's view as it was (Shopify sends one for every stock move) starts no
  product job (`children_behind`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from storesync.sync.domain.catalog import SyncPolicy, expected_view, same_view
from storesync.sync.domain.collections import collection_view
from storesync.sync.domain.model import Collection, Link, LinkKind, LinkMap, Product, WriteRecord, gid
from storesync.sync.domain.network import MerchantNetwork

# How long after a write its echo may still arrive (Shopify retries for hours, but a retried
# echo older than this is dropped by stale rejection anyway).
ECHO_WINDOW = timedelta(minutes=10)


# Our clock vs Shopify's: a webhook's updated_at may precede our record of the write by this much.
CLOCK_SKEW = timedelta(seconds=5)


def is_echo(
    observed_quantity: int,
    observed_at: datetime,
    writes: Sequence[WriteRecord],
    *,
    window: timedelta = ECHO_WINDOW,
    skew: timedelta = CLOCK_SKEW,
) -> bool:
    """True if the observation only reports the engine's own newest write for that level."""
    lo, hi = observed_at - window, observed_at + skew
    candidates = [w for w in writes if lo <= w.written_at <= hi]
    if not candidates:
        return False
    newest = max(candidates, key=lambda w: w.written_at)
    return newest.quantity == observed_quantity


def product_shows_last_write(actual: Mapping[str, Any], link: Link | None) -> bool:
    """Whether a child product showing `actual` (`catalog.actual_view`) shows exactly the synced
    fields the engine last wrote to it: no record (no link, no view) answers False."""
    return link is not None and link.synced_view is not None and same_view(actual, link.synced_view)


def collection_shows_last_write(child: Collection, link: Link) -> bool:
    """Whether a child collection shows exactly the synced fields last written to it: its
    `collections/update` then reports our own write (or a membership change), not an edit."""
    return link.synced_view is not None and same_view(collection_view(child), link.synced_view)


def children_behind(
    network: MerchantNetwork, parent: Product, links: Sequence[Link], policy: SyncPolicy
) -> list[str]:
    """The children whose copy of `parent` may not show its synced fields: no product link,
    or a link whose `synced_view` (what the engine last wrote there, or last found there) is
    not what the parent implies now. `links`: the product's links and the links of the
    collections it belongs to, every child's.

    A parent `products/update` that changed no synced field (Shopify sends one for every stock
    move, e.g. after each sale) leaves no child behind, so it starts no product job. Nothing is
    recorded when a job is enqueued: a product job that fails, dies or is cancelled leaves its
    link as it was, so the next delivery for that product (or reconciliation) finds that
    child behind again; deliveries out of order do not matter, the parent is read now.
    """
    behind = []
    for child in network.children:
        mine = LinkMap(child.shop, [lk for lk in links if lk.child_shop == child.shop])
        link = mine.link_down(LinkKind.PRODUCT, parent.id or "")
        if (
            link is None
            or link.synced_view is None
            or not same_view(expected_view(parent, policy, mine), link.synced_view)
        ):
            behind.append(child.shop)
    return behind


# --------------------------------------------------------------------------- stock moves

# The parts that change when the product is published or unpublished: `published_at` (the
# Online Store) and `published_scope` (`web`, or `global` with the Point of Sale). Shopify sends
# products/update for a publish (a product created, then published, sends products/create then
# products/update: https://community.shopify.com/c/Shopify-APIs-SDKs/Webhook-being-called-twice/m-p/1176031).
_PUBLICATION_KEYS = ("published_at", "published_scope")


@dataclass(frozen=True)
class ProductDigest:
    """What a product showed at one time (a products/create or products/update payload, or a
    read of the product): when (the product's updated_at), a digest of its catalog fields
    (`catalog_fields`), one of its variants' stock, and one of the publication fields ("" when
    not known: a read, or a digest recorded before it was kept)."""

    updated_at: datetime | None
    fields: str
    stock: str
    publication: str = ""


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _amount(value: Any) -> str | None:
    """A price as one text for both forms ("10.0", "10.00" and Decimal("10") alike)."""
    if value is None or value == "":
        return None
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        return str(value)


def _catalog_fields(
    *,
    title: Any,
    body: Any,
    vendor: Any,
    product_type: Any,
    handle: Any,
    status: Any,
    tags: Iterable[Any],
    options: Iterable[tuple[Any, Iterable[Any]]],
    variants: Iterable[Mapping[str, Any]],
    media: Iterable[tuple[Any, Any, Any]] | None,
) -> dict[str, Any]:
    """The fields of a product that both a products/update payload and a read of the product
    show, in one form: what a digest compares. Every synced field the payload carries is here
    (docs/sync.md); fields it does not carry (SEO, metafields, the inventory item's) cannot be
    compared from a payload either way."""
    return {
        "title": title or "",
        "body": body or "",
        "vendor": vendor or "",
        "product_type": product_type or "",
        "handle": handle or "",
        "status": str(status or "").upper(),
        "tags": sorted({str(t).strip() for t in tags if str(t).strip()}),
        "options": [[str(name), [str(v) for v in values]] for name, values in options],
        "variants": sorted(variants, key=lambda v: str(v["id"])),
        "media": None
        if media is None
        else [[str(i), alt or "", str(st or "").upper()] for i, alt, st in media],
    }


def _variant_fields(
    variant_id: str,
    sku: Any,
    barcode: Any,
    price: Any,
    compare: Any,
    options: Iterable[Any],
    policy: Any,
    taxable: Any,
) -> dict[str, Any]:
    return {
        "id": variant_id,
        "sku": sku or None,
        "barcode": barcode or None,
        "price": _amount(price),
        "compare_at_price": _amount(compare),
        "options": [str(o) for o in options if o is not None],
        "inventory_policy": str(policy).upper() if policy else None,
        "taxable": taxable,
    }


def _payload_variant_id(v: Mapping[str, Any]) -> str:
    return gid("ProductVariant", v.get("admin_graphql_api_id") or v.get("id"))


def product_digest(body: Mapping[str, Any]) -> ProductDigest:
    """The `ProductDigest` of a products/create or products/update payload (REST form, as
    Shopify sends it: numeric ids, comma-separated tags, lower-case enums)."""
    variants = [
        v
        for v in body.get("variants") or ()
        if isinstance(v, Mapping) and (v.get("id") or v.get("admin_graphql_api_id"))
    ]
    tags = body.get("tags") or ""
    media = body.get("media")
    fields = _catalog_fields(
        title=body.get("title"),
        body=body.get("body_html"),
        vendor=body.get("vendor"),
        product_type=body.get("product_type"),
        handle=body.get("handle"),
        status=body.get("status"),
        tags=tags.split(",") if isinstance(tags, str) else tags,
        options=[
            (o.get("name"), o.get("values") or ())
            for o in body.get("options") or ()
            if isinstance(o, Mapping)
        ],
        variants=[
            _variant_fields(
                _payload_variant_id(v),
                v.get("sku"),
                v.get("barcode"),
                v.get("price"),
                v.get("compare_at_price"),
                (v.get("option1"), v.get("option2"), v.get("option3")),
                v.get("inventory_policy"),
                v.get("taxable"),
            )
            for v in variants
        ],
        media=None
        if not isinstance(media, list)
        else [
            (m.get("admin_graphql_api_id") or m.get("id"), m.get("alt"), m.get("status"))
            for m in media
            if isinstance(m, Mapping)
        ],
    )
    stock = sorted((_payload_variant_id(v), v.get("inventory_quantity")) for v in variants)
    updated = body.get("updated_at")
    try:
        at = datetime.fromisoformat(str(updated).replace("Z", "+00:00")) if updated else None
    except ValueError:
        at = None
    publication = {k: body.get(k) for k in _PUBLICATION_KEYS}
    return ProductDigest(at, _digest(fields), _digest(stock), _digest(publication))


def read_product_digest(product: Product) -> ProductDigest | None:
    """The `ProductDigest` of a product as read (a scan: the fields `product_digest` compares
    and the variants' `inventoryQuantity`), equal to that of a payload showing the same product
    at the same time, so the first products/update after a scan can be told a stock move
    without reading the product again. None when the read lacks what it needs (a variant's
    stock, its id, the product's updated_at)."""
    if product.updated_at is None or any(
        v.id is None or v.inventory_quantity is None for v in product.variants
    ):
        return None
    fields = _catalog_fields(
        title=product.title,
        body=product.description_html,
        vendor=product.vendor,
        product_type=product.product_type,
        handle=product.handle,
        status=product.status,
        tags=product.tags,
        options=[(o.name, o.values) for o in product.options],
        variants=[
            _variant_fields(
                str(v.id),
                v.sku,
                v.barcode,
                v.price,
                v.compare_at_price,
                (value for _name, value in v.option_values),
                v.details.inventory_policy if v.details else None,
                v.details.taxable if v.details else None,
            )
            for v in product.variants
        ],
        media=[(m.id, m.alt, m.status) for m in product.media],
    )
    stock = sorted((str(v.id), v.inventory_quantity) for v in product.variants)
    return ProductDigest(product.updated_at, _digest(fields), _digest(stock))


def is_stock_move(previous: ProductDigest | None, current: ProductDigest) -> bool:
    """Whether a products/update (`current`) reports only a stock move since the last one seen
    for that product (`previous`): not older than it, every other field the same, the stock
    different. Fields the payload does not carry (SEO, metafields, collections) cannot be
    compared: an edit of one of them that Shopify announced in the same delivery as a stock
    move, or delivered out of order between two stock moves, is seen by reconciliation (which
    compares every product updated since its last pass). Anything else (no previous payload,
    an older one, the same stock) is read from the store as before."""
    return (
        previous is not None
        and current.updated_at is not None
        and previous.updated_at is not None
        and current.updated_at >= previous.updated_at
        and current.fields == previous.fields
        and current.stock != previous.stock
    )


def is_publication_change(previous: ProductDigest | None, current: ProductDigest) -> bool:
    """Whether a products/update (`current`) reports only that the product was published or
    unpublished since the payload seen before (`previous`, a products/create's included): not
    older than it, every other field and the stock the same, the publication fields different.
    A copy's sales channels are set once, when it is made, and never synced afterwards
    (docs/sync.md), so such an update has nothing to sync: a copy's own publishing, the last
    step of its saga, sends one for every copy. A publication unknown on either side (a digest
    recorded before it was kept) is not a change."""
    return (
        previous is not None
        and current.updated_at is not None
        and previous.updated_at is not None
        and current.updated_at >= previous.updated_at
        and current.fields == previous.fields
        and current.stock == previous.stock
        and bool(previous.publication and current.publication)
        and current.publication != previous.publication
    )
