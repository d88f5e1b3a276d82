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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storesync.sync.domain.catalog import SyncPolicy, expected_view, same_view
from storesync.sync.domain.collections import collection_view
from storesync.sync.domain.model import Collection, Link, LinkKind, LinkMap, Product, WriteRecord
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

# A products/update payload's parts that change with every stock move (and nothing else).
_STOCK_KEYS = ("inventory_quantity", "old_inventory_quantity")
_TIME_KEYS = ("updated_at",)
# The parts that change when the product is published or unpublished: `published_at` (the
# Online Store) and `published_scope` (`web`, or `global` with the Point of Sale). Shopify sends
# products/update for a publish (a product created, then published, sends products/create then
# products/update: https://community.shopify.com/c/Shopify-APIs-SDKs/Webhook-being-called-twice/m-p/1176031).
_PUBLICATION_KEYS = ("published_at", "published_scope")


@dataclass(frozen=True)
class ProductDigest:
    """What one products/create or products/update payload showed: when (the product's
    updated_at), a digest of every field but the variants' stock, the times and the
    publication, a digest of the variants' stock, and one of the publication fields."""

    updated_at: datetime | None
    fields: str
    stock: str
    publication: str = ""  # "": not known (a digest recorded before it was kept)


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def product_digest(body: Mapping[str, Any]) -> ProductDigest:
    """The `ProductDigest` of a products/update payload (REST form, as Shopify sends it)."""
    variants = [v for v in body.get("variants") or () if isinstance(v, Mapping)]
    fields = {
        k: v
        for k, v in body.items()
        if k not in _TIME_KEYS and k not in _PUBLICATION_KEYS and k != "variants"
    }
    fields["variants"] = [
        {k: x for k, x in v.items() if k not in _STOCK_KEYS and k not in _TIME_KEYS} for v in variants
    ]
    stock = sorted((str(v.get("id")), v.get("inventory_quantity")) for v in variants)
    updated = body.get("updated_at")
    try:
        at = datetime.fromisoformat(str(updated).replace("Z", "+00:00")) if updated else None
    except ValueError:
        at = None
    publication = {k: body.get(k) for k in _PUBLICATION_KEYS}
    return ProductDigest(at, _digest(fields), _digest(stock), _digest(publication))


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
