"""Parent precedence for the catalog: what to send a child so it matches the parent.

Given the parent's current product, the child's current product, the child's links and a
policy, `plan_child_product` computes the exact `productSet` input for the child. Shopify's
productSet replaces list fields wholesale (variants, metafields and collections left out are
deleted), so the input always lists:

- every variant: the parent's (linked ones by child id, new ones without id) AND every
  child-only variant unchanged, with each variant's own metafields;
- every product metafield the child has (metafields are child-owned);
- collections: the parent's memberships mapped to the child's collections, plus the child's
  own collections (those linked to no parent collection).

Synced fields (a configurable subset of `SyncedField`) take the parent's value; the price of a
linked variant is the parent's price through the child's `PriceRule`. Each difference is
reported as a `FieldChange`; one the child made since the engine's last write (the link's
stored `synced_view`) is a child edit that will be reverted. If the parent's options cannot
hold a child-only variant, the plan is blocked with a reason instead of deleting that variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from storesync.sync.model import Link, LinkKind, LinkMap, MatchedBy, Product, Variant, gid
from storesync.sync.ports import WriteRecord


class SyncedField(StrEnum):
    TITLE = "title"
    DESCRIPTION = "description"
    VENDOR = "vendor"
    PRODUCT_TYPE = "product_type"
    TAGS = "tags"
    OPTIONS = "options"
    VARIANTS = "variants"
    IMAGES = "images"
    STATUS = "status"
    SEO = "seo"
    COLLECTIONS = "collections"


ALL_FIELDS = frozenset(SyncedField)


class Rounding(StrEnum):
    CENT = "cent"  # to the cent, half up
    WHOLE = "whole"  # to the whole unit, half up
    NINETY_NINE = "ninety_nine"  # up to the next x.99 (10.20 -> 10.99, 11.00 -> 10.99)


@dataclass(frozen=True)
class PriceRule:
    """A child's prices: parent price plus `markup_percent`, then rounded."""

    markup_percent: Decimal = Decimal(0)
    rounding: Rounding = Rounding.CENT

    def __post_init__(self) -> None:
        if self.markup_percent <= Decimal(-100):
            raise ValueError("markup_percent must be above -100")

    def apply(self, price: Decimal | None) -> Decimal | None:
        if price is None:
            return None
        raw = price * (Decimal(100) + self.markup_percent) / Decimal(100)
        if self.rounding is Rounding.WHOLE:
            return raw.quantize(Decimal(1), ROUND_HALF_UP).quantize(Decimal("0.01"))
        if self.rounding is Rounding.NINETY_NINE:
            return max(Decimal("0.99"), raw.quantize(Decimal(1), ROUND_CEILING) - Decimal("0.01"))
        return raw.quantize(Decimal("0.01"), ROUND_HALF_UP)


IDENTITY_PRICE = PriceRule()


@dataclass(frozen=True)
class SyncPolicy:
    synced: frozenset[SyncedField] = ALL_FIELDS
    price_rules: Mapping[str, PriceRule] = field(default_factory=dict)  # child shop -> rule

    def __post_init__(self) -> None:
        pair = {SyncedField.OPTIONS, SyncedField.VARIANTS}
        if len(pair & self.synced) == 1:
            raise ValueError("options and variants are synced together (a variant is its option values)")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SyncPolicy:
        """From configuration such as
        `{"fields": ["title", ...], "price_rules": {"child.myshopify.com": {"markup_percent": "10",
        "rounding": "ninety_nine"}}}`; a bad value raises ValueError naming it."""
        unknown_keys = set(data) - {"fields", "price_rules"}
        if unknown_keys:
            raise ValueError(f"sync policy: unknown keys {sorted(unknown_keys)}")
        fields = data.get("fields")
        synced = ALL_FIELDS
        if fields is not None:
            bad = [f for f in fields if f not in SyncedField.__members__.values()]
            if bad:
                raise ValueError(
                    f"sync policy: unknown fields {bad}; known: {[f.value for f in SyncedField]}"
                )
            synced = frozenset(SyncedField(f) for f in fields)
        rules = {}
        for shop, rule in (data.get("price_rules") or {}).items():
            try:
                rules[shop] = PriceRule(
                    Decimal(str(rule.get("markup_percent", "0"))), Rounding(rule.get("rounding", "cent"))
                )
            except (ArithmeticError, ValueError, AttributeError) as err:
                raise ValueError(f"sync policy: price rule for {shop}: {err}") from None
        return cls(synced, rules)

    def price_rule(self, child_shop: str) -> PriceRule:
        return self.price_rules.get(child_shop, IDENTITY_PRICE)

    def syncs(self, f: SyncedField) -> bool:
        return f in self.synced


# --------------------------------------------------------------------------- views


def _money(d: Decimal | None) -> str | None:
    return None if d is None else str(d.quantize(Decimal("0.01")))


def image_key(source: str) -> str:
    """What identifies an image across stores: its file name. Shopify serves each store's copy
    from its own CDN path (with a ?v= query), so whole URLs never match between stores."""
    return source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()


def _options_used(variants: Iterable[Variant], option_order: Iterable[str]) -> list[list[Any]]:
    used: dict[str, list[str]] = {name: [] for name in option_order}
    for v in variants:
        for name, value in v.option_values:
            values = used.setdefault(name, [])
            if value not in values:
                values.append(value)
    return [[name, values] for name, values in used.items() if values]


def _variant_view(v: Variant, rule: PriceRule | None) -> dict[str, Any]:
    price = rule.apply(v.price) if rule else v.price
    compare = rule.apply(v.compare_at_price) if rule else v.compare_at_price
    return {
        "options": sorted([list(p) for p in v.option_values]),
        "sku": v.sku or None,
        "barcode": v.barcode or None,
        "price": _money(price),
        "compare_at_price": _money(compare),
    }


def _scalar_view(p: Product, policy: SyncPolicy) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if policy.syncs(SyncedField.TITLE):
        view["title"] = p.title
    if policy.syncs(SyncedField.DESCRIPTION):
        view["description"] = p.description_html
    if policy.syncs(SyncedField.VENDOR):
        view["vendor"] = p.vendor
    if policy.syncs(SyncedField.PRODUCT_TYPE):
        view["product_type"] = p.product_type
    if policy.syncs(SyncedField.TAGS):
        view["tags"] = sorted(set(p.tags))
    if policy.syncs(SyncedField.IMAGES):
        view["images"] = [[image_key(i.source), i.alt] for i in p.images]
    if policy.syncs(SyncedField.STATUS):
        view["status"] = p.status
    if policy.syncs(SyncedField.SEO):
        view["seo"] = [p.seo_title, p.seo_description]
    return view


def _manual(link: Link | None) -> Link | None:
    """A collection link whose memberships products carry: not a smart collection's (its
    members follow its conditions in each store; the link's synced view records them, under
    "rules" in views written before Admin API 2026-10)."""
    view = link.synced_view or {} if link is not None else {}
    if link is None or view.get("conditions") is not None or view.get("rules") is not None:
        return None
    return link


def manual_child_collection(links: LinkMap, parent_collection_id: str) -> str | None:
    link = _manual(links.link_down(LinkKind.COLLECTION, parent_collection_id))
    return link.child_id if link else None


def manual_parent_collection(links: LinkMap, child_collection_id: str) -> str | None:
    link = _manual(links.link_up(LinkKind.COLLECTION, child_collection_id))
    return link.parent_id if link else None


def expected_view(parent: Product, policy: SyncPolicy, links: LinkMap) -> dict[str, Any]:
    """The synced fields a child should show for `parent`, in parent ids (JSON)."""
    view = _scalar_view(parent, policy)
    if policy.syncs(SyncedField.VARIANTS):
        rule = policy.price_rule(links.child_shop)
        view["options"] = _options_used(parent.variants, (o.name for o in parent.options))
        view["variants"] = {v.id: _variant_view(v, rule) for v in parent.variants if v.id}
    if policy.syncs(SyncedField.COLLECTIONS):
        view["collections"] = sorted(c for c in parent.collections if manual_child_collection(links, c))
    return view


def actual_view(child: Product, policy: SyncPolicy, links: LinkMap) -> dict[str, Any]:
    """The synced fields the child shows, translated to parent ids; child-owned data left out."""
    view = _scalar_view(child, policy)
    if policy.syncs(SyncedField.VARIANTS):
        linked = [(links.parent_id(LinkKind.VARIANT, v.id), v) for v in child.variants if v.id]
        linked = [(pid, v) for pid, v in linked if pid]
        view["options"] = _options_used((v for _, v in linked), (o.name for o in child.options))
        view["variants"] = {pid: _variant_view(v, None) for pid, v in linked}
    if policy.syncs(SyncedField.COLLECTIONS):
        mapped = (manual_parent_collection(links, c) for c in child.collections)
        view["collections"] = sorted(p for p in mapped if p)
    return view


def view_hash(view: Mapping[str, Any]) -> str:
    """A stable hash of a view (reconciliation and the demo's comparison table)."""
    return hashlib.sha256(json.dumps(view, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def parent_catalog_hash(parent: Product, policy: SyncPolicy) -> str:
    """Hash of the parent's own synced fields (prices as in the parent)."""
    view = _scalar_view(parent, policy)
    if policy.syncs(SyncedField.VARIANTS):
        view["options"] = _options_used(parent.variants, (o.name for o in parent.options))
        view["variants"] = {v.id: _variant_view(v, None) for v in parent.variants if v.id}
    if policy.syncs(SyncedField.COLLECTIONS):
        view["collections"] = sorted(parent.collections)
    return view_hash(view)


# --------------------------------------------------------------------------- plan


class ChangeCause(StrEnum):
    PARENT_CHANGED = "parent_changed"
    CHILD_EDIT_REVERTED = "child_edit_reverted"  # the child changed a synced field: parent wins
    DRIFT = "drift"  # differs, and no record of the last write tells who changed it


@dataclass(frozen=True)
class FieldChange:
    field: str  # a SyncedField value, or "variants.<parent variant gid>"
    child_value: Any
    parent_value: Any
    cause: ChangeCause

    def describe(self, child_shop: str) -> str:
        verb = {
            "child_edit_reverted": "reverting child edit of",
            "parent_changed": "applying parent change to",
            "drift": "repairing drift in",
        }[self.cause]
        return f"{child_shop}: {verb} {self.field}: {self.child_value!r} -> {self.parent_value!r}"


@dataclass(frozen=True)
class ProductPlan:
    child_shop: str
    parent_product_id: str
    child_product_id: str | None  # None: the child has no counterpart yet, productSet creates it
    input: dict[str, Any]
    expected: dict[str, Any]  # the view the child will show: store it on the product link
    changes: tuple[FieldChange, ...] = ()
    created_variants: tuple[str, ...] = ()  # parent variant ids the write creates in the child
    removed_variants: tuple[str, ...] = ()  # child variant ids deleted (their parent variant is gone)
    kept_child_variants: tuple[str, ...] = ()  # child-only variant ids carried over unchanged
    unmapped_collections: tuple[str, ...] = ()  # parent collections with no counterpart in the child
    blocked: str | None = None  # why writing would destroy child-owned data; nothing is written

    @property
    def noop(self) -> bool:
        return self.blocked is None and self.child_product_id is not None and not self.changes

    @property
    def reverted(self) -> tuple[FieldChange, ...]:
        return tuple(c for c in self.changes if c.cause is ChangeCause.CHILD_EDIT_REVERTED)


class CatalogError(Exception):
    pass


def _metafields(mfs) -> list[dict[str, Any]]:
    return [{"namespace": m.namespace, "key": m.key, "type": m.type, "value": m.value} for m in mfs]


def _variant_input(
    v: Variant, *, child_id: str | None, price_rule: PriceRule | None, metafields, option_values=None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if child_id:
        out["id"] = child_id
    out["optionValues"] = [{"optionName": n, "name": val} for n, val in (option_values or v.option_values)]
    out["price"] = _money(price_rule.apply(v.price) if price_rule else v.price)
    compare = price_rule.apply(v.compare_at_price) if price_rule else v.compare_at_price
    if compare is not None:
        out["compareAtPrice"] = _money(compare)
    if v.barcode:
        out["barcode"] = v.barcode
    if price_rule is not None:
        # A synced variant: tracked, so that inventory sync has levels to set.
        out["inventoryItem"] = {"sku": v.sku or "", "tracked": True}
    elif v.sku:
        out["inventoryItem"] = {"sku": v.sku}  # a carried variant: nothing but what it has
    out["metafields"] = _metafields(metafields)
    return out


def _diff(
    expected: Mapping[str, Any], actual: Mapping[str, Any], last: Mapping[str, Any] | None
) -> list[FieldChange]:
    changes = []

    def cause(path: tuple[str, ...], child_value: Any) -> ChangeCause:
        if last is None:
            return ChangeCause.DRIFT
        node: Any = last
        for p in path:
            if not isinstance(node, Mapping) or p not in node:
                return ChangeCause.PARENT_CHANGED if path[0] == "variants" else ChangeCause.DRIFT
            node = node[p]
        return ChangeCause.PARENT_CHANGED if node == child_value else ChangeCause.CHILD_EDIT_REVERTED

    for key in sorted(set(expected) | set(actual)):
        want, have = expected.get(key), actual.get(key)
        if key == "variants":
            want, have = want or {}, have or {}
            for vid in sorted(set(want) | set(have)):
                if want.get(vid) != have.get(vid):
                    changes.append(
                        FieldChange(
                            f"variants.{vid}",
                            have.get(vid),
                            want.get(vid),
                            cause(("variants", vid), have.get(vid)),
                        )
                    )
        elif want != have:
            changes.append(FieldChange(key, have, want, cause((key,), have)))
    return changes


diff_views = _diff  # the same field-by-field comparison for other synced objects (collections)


def plan_child_product(
    parent: Product, child: Product | None, links: LinkMap, policy: SyncPolicy
) -> ProductPlan:
    if not parent.id:
        raise CatalogError("the parent product has no id")
    shop = links.child_shop
    rule = policy.price_rule(shop)
    expected = expected_view(parent, policy, links)
    unmapped = tuple(c for c in parent.collections if not links.child_id(LinkKind.COLLECTION, c))
    if child is None:
        return _plan_create(parent, links, policy, rule, expected, unmapped)

    inp: dict[str, Any] = {}
    if policy.syncs(SyncedField.TITLE):
        inp["title"] = parent.title
    if policy.syncs(SyncedField.DESCRIPTION):
        inp["descriptionHtml"] = parent.description_html
    if policy.syncs(SyncedField.VENDOR):
        inp["vendor"] = parent.vendor
    if policy.syncs(SyncedField.PRODUCT_TYPE):
        inp["productType"] = parent.product_type
    if policy.syncs(SyncedField.TAGS):
        inp["tags"] = list(parent.tags)
    if policy.syncs(SyncedField.STATUS):
        inp["status"] = parent.status
    if policy.syncs(SyncedField.SEO):
        inp["seo"] = {"title": parent.seo_title, "description": parent.seo_description}

    created: list[str] = []
    removed: list[str] = []
    kept: list[str] = []
    blocked: str | None = None
    parent_ids = {v.id for v in parent.variants}
    child_by_id = {v.id: v for v in child.variants if v.id}
    if policy.syncs(SyncedField.VARIANTS):
        variants: list[dict[str, Any]] = []
        used_child_ids: set[str] = set()
        for pv in parent.variants:
            cid = links.child_id(LinkKind.VARIANT, pv.id) if pv.id else None
            cv = child_by_id.get(cid) if cid else None
            if cv is None:
                created.append(pv.id)
                variants.append(_variant_input(pv, child_id=None, price_rule=rule, metafields=()))
            else:
                used_child_ids.add(cv.id)
                variants.append(_variant_input(pv, child_id=cv.id, price_rule=rule, metafields=cv.metafields))
        options = [[o.name, list(o.values)] for o in parent.options]
        option_names = [o.name for o in parent.options]
        parent_keys = {pv.option_key for pv in parent.variants}
        for cv in child.variants:
            if cv.id in used_child_ids:
                continue
            vlink = links.link_up(LinkKind.VARIANT, cv.id) if cv.id else None
            if (
                vlink is not None
                and vlink.parent_product_id in (None, parent.id)
                and vlink.parent_id not in parent_ids
            ):
                removed.append(cv.id)  # a synced variant whose parent variant was deleted
                continue
            kept.append(cv.id)
            names = [n for n, _ in cv.option_values]
            if sorted(names) != sorted(option_names):
                blocked = (
                    f"child-only variant {cv.id} has options {names} but the parent's product has "
                    f"{option_names}: writing would delete it"
                )
                continue
            if cv.option_key in parent_keys:
                blocked = (
                    f"child-only variant {cv.id} has the same option values as a parent variant "
                    f"{dict(cv.option_values)}: writing would delete or duplicate it"
                )
                continue
            for n, val in cv.option_values:
                values = options[option_names.index(n)][1]
                if val not in values:
                    values.append(val)
            variants.append(_variant_input(cv, child_id=cv.id, price_rule=None, metafields=cv.metafields))
        inp["productOptions"] = [{"name": n, "values": [{"name": v} for v in vals]} for n, vals in options]
        inp["variants"] = variants
    else:
        # Not synced: the child's own variants, listed so that nothing is deleted.
        inp["productOptions"] = [
            {"name": o.name, "values": [{"name": v} for v in o.values]} for o in child.options
        ]
        inp["variants"] = [
            _variant_input(cv, child_id=cv.id, price_rule=None, metafields=cv.metafields)
            for cv in child.variants
        ]
    inp["metafields"] = _metafields(child.metafields)
    if policy.syncs(SyncedField.COLLECTIONS):
        mapped = [manual_child_collection(links, c) for c in parent.collections]
        # The child's own manual collections are listed so replace-all keeps them; its smart
        # ones keep the product by their rules and may not be listed.
        own = [
            c
            for c in child.collections
            if links.parent_id(LinkKind.COLLECTION, c) is None and c not in child.smart_collections
        ]
        inp["collections"] = [c for c in mapped if c] + own
    else:
        inp["collections"] = [c for c in child.collections if c not in child.smart_collections]
    actual = actual_view(child, policy, links)
    if policy.syncs(SyncedField.IMAGES) and expected.get("images") != actual.get("images"):
        inp["files"] = [
            {"originalSource": i.source, "alt": i.alt, "contentType": "IMAGE"} for i in parent.images
        ]
    product_link = links.link_down(LinkKind.PRODUCT, parent.id)
    changes = _diff(expected, actual, product_link.synced_view if product_link else None)
    return ProductPlan(
        child_shop=shop,
        parent_product_id=parent.id,
        child_product_id=child.id,
        input=inp,
        expected=expected,
        changes=tuple(changes),
        created_variants=tuple(created),
        removed_variants=tuple(removed),
        kept_child_variants=tuple(kept),
        unmapped_collections=unmapped,
        blocked=blocked,
    )


def _plan_create(
    parent: Product,
    links: LinkMap,
    policy: SyncPolicy,
    rule: PriceRule,
    expected: dict[str, Any],
    unmapped: tuple[str, ...],
) -> ProductPlan:
    """A child without this product gets all of it (non-synced fields as initial values)."""
    inp: dict[str, Any] = {
        "handle": parent.handle,
        "title": parent.title,
        "descriptionHtml": parent.description_html,
        "vendor": parent.vendor,
        "productType": parent.product_type,
        "tags": list(parent.tags),
        "status": parent.status,
        "seo": {"title": parent.seo_title, "description": parent.seo_description},
        "productOptions": [
            {"name": o.name, "values": [{"name": v} for v in o.values]} for o in parent.options
        ],
        "variants": [
            _variant_input(v, child_id=None, price_rule=rule, metafields=()) for v in parent.variants
        ],
        "collections": [c for c in (manual_child_collection(links, pc) for pc in parent.collections) if c],
        "files": [{"originalSource": i.source, "alt": i.alt, "contentType": "IMAGE"} for i in parent.images],
    }
    return ProductPlan(
        child_shop=links.child_shop,
        parent_product_id=parent.id or "",
        child_product_id=None,
        input=inp,
        expected=expected,
        created_variants=tuple(v.id for v in parent.variants if v.id),
        unmapped_collections=unmapped,
    )


def unchanged_input(product: Product) -> dict[str, Any]:
    """A productSet input that changes nothing: every list the product has, listed (replace-all
    semantics). Callers override the one field they mean to change."""
    return {
        "productOptions": [
            {"name": o.name, "values": [{"name": v} for v in o.values]} for o in product.options
        ],
        "variants": [
            _variant_input(v, child_id=v.id, price_rule=None, metafields=v.metafields)
            for v in product.variants
        ],
        "metafields": _metafields(product.metafields),
        "collections": [c for c in product.collections if c not in product.smart_collections],
    }


def links_after_write(plan: ProductPlan, parent: Product, written: Product, links: LinkMap) -> list[Link]:
    """The product link and the variant links for what `productSet` returned: variants are matched
    by option values (unique within a product), then stored with both inventory items. Existing
    links keep how they were first matched."""
    if written.id is None:
        raise CatalogError("productSet returned a product without id")
    shop = plan.child_shop

    def how(kind: LinkKind, parent_id: str) -> MatchedBy:
        old = links.link_down(kind, parent_id)
        return old.matched_by if old else MatchedBy.CREATED

    out = [
        Link(
            LinkKind.PRODUCT,
            shop,
            plan.parent_product_id,
            written.id,
            how(LinkKind.PRODUCT, plan.parent_product_id),
            synced_view=plan.expected,
        )
    ]
    by_key = {v.option_key: v for v in written.variants}
    for pv in parent.variants:
        cv = by_key.get(pv.option_key)
        if cv is None or pv.id is None or cv.id is None:
            raise CatalogError(
                f"{shop}: the written product has no variant with options {dict(pv.option_values)}"
            )
        out.append(
            Link(
                LinkKind.VARIANT,
                shop,
                pv.id,
                cv.id,
                how(LinkKind.VARIANT, pv.id),
                parent_product_id=parent.id,
                child_product_id=written.id,
                parent_inventory_item_id=pv.inventory_item_id,
                child_inventory_item_id=cv.inventory_item_id,
            )
        )
    return out


# --------------------------------------------------------------------------- copies linked later


def pending_copy(
    parent: Product,
    stock: Mapping[tuple, Sequence[tuple[str, int]]],
    written_at: datetime,
    cause: str,
    levels_read_at: datetime | None = None,
    *,
    resent: bool = False,
) -> dict:
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


def copy_product_link(plan: ProductPlan, product_id: str, links: LinkMap, pending: dict) -> Link:
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


async def link_pending_copy(
    links_repo, product_link: Link, child_variants: Sequence[Variant]
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


@dataclass(frozen=True)
class CopiesLinked:
    """What `link_pending_copies` found: `pending`, how many of the products were pending copies
    (each linked now, here or by another path at the same moment: a caller that found any reads
    its links again); `linked`, those this call linked (their parent levels that moved since the
    copy are the caller's to fan out: `PendingResolution.levels_read_at`)."""

    pending: int
    linked: list[PendingResolution]


async def link_pending_copies(links_repo, links: LinkMap, child_products: Iterable[Product]) -> CopiesLinked:
    """Link the variants of the pending copies among `child_products` (as just read from the
    child). `links`: the child's link map, or the links of these products."""
    pending, linked = 0, []
    for product in child_products:
        link = links.link_up(LinkKind.PRODUCT, product.id) if product.id else None
        if link is not None and link.pending is not None:
            pending += 1
            if (resolution := await link_pending_copy(links_repo, link, product.variants)) is not None:
                linked.append(resolution)
    return CopiesLinked(pending, linked)


# --------------------------------------------------------------------------- orchestration


def same_view(a: Any, b: Any) -> bool:
    """Views compared as stored (JSON: tuples become lists, keys strings)."""
    return json.loads(json.dumps(a, sort_keys=True, default=str)) == json.loads(
        json.dumps(b, sort_keys=True, default=str)
    )


class CatalogBlocked(CatalogError):
    """Writing the child would destroy child-owned data; nothing was written (permanent)."""


async def sync_product_to_child(
    parent_store,
    child_store,
    parent_product_id: str,
    links_repo,
    policy: SyncPolicy,
    audit,
    cause: str,
    on_copy_linked: Callable[[CopiesLinked], Awaitable[None]] | None = None,
) -> ProductPlan | None:
    """Make one child's copy of one parent product match the parent, reading both stores' current
    state (never a webhook payload). Returns the plan (noop when nothing had to change), or None
    when the parent product is gone and the child's copy was deleted. A copy whose variants were
    pending is linked from the read, and `on_copy_linked` told (the parent levels that moved
    meanwhile are the caller's to fan out).

    parent_store/child_store: `ports.CatalogStore`; links_repo: `ports.LinkRepository`;
    audit: `ports.AuditSink`.
    """
    from storesync.sync.audit import AuditRecord

    links = await links_repo.link_map(child_store.shop)
    parent = await parent_store.read_product(parent_product_id)
    child_id = links.child_id(LinkKind.PRODUCT, parent_product_id)
    if parent is None:
        if child_id:
            before = await child_store.read_product(child_id)
            await child_store.delete_product(child_id)
            await links_repo.delete_link(child_store.shop, LinkKind.PRODUCT, parent_product_id)
            await audit.record(
                AuditRecord(
                    shop=child_store.shop,
                    object_type="product",
                    object_id=child_id,
                    action="product_delete",
                    before=actual_view(before, policy, links) if before else None,
                    after=None,
                    cause=cause,
                    detail=f"parent product {parent_product_id} was deleted",
                )
            )
        return None
    child = await child_store.read_product(child_id) if child_id else None
    if child is not None and (copies := await link_pending_copies(links_repo, links, [child])).pending:
        links = await links_repo.link_map(
            child_store.shop
        )  # a copy's variants, linked just now (here or elsewhere)
        if copies.linked and on_copy_linked is not None:
            await on_copy_linked(copies)
    plan = plan_child_product(parent, child, links, policy)
    if plan.blocked:
        await audit.record(
            AuditRecord(
                shop=child_store.shop,
                object_type="product",
                object_id=child_id or parent_product_id,
                action="product_set_blocked",
                before=None,
                after=None,
                cause=cause,
                detail=plan.blocked,
            )
        )
        raise CatalogBlocked(plan.blocked)
    if plan.noop:
        link = links.link_down(LinkKind.PRODUCT, parent_product_id)
        if link is not None and not same_view(link.synced_view, plan.expected):
            # The child already shows the parent's synced fields (e.g. linked by SKU, never
            # written): remember that, so the webhooks' checks against the last write
            # (`routing.children_behind`, the child echo check) stop asking again.
            await links_repo.set_synced_view(child_store.shop, parent_product_id, plan.expected)
        return plan
    written = await child_store.product_set(plan.input, product_id=plan.child_product_id)
    for child_variant_id in plan.removed_variants:
        parent_variant_id = links.parent_id(LinkKind.VARIANT, child_variant_id)
        if parent_variant_id:
            await links_repo.delete_link(child_store.shop, LinkKind.VARIANT, parent_variant_id)
    await links_repo.save_links(links_after_write(plan, parent, written, links))
    await audit.record(
        AuditRecord(
            shop=child_store.shop,
            object_type="product",
            object_id=written.id or "",
            action="product_create" if child is None else "product_set",
            before=actual_view(child, policy, links) if child else None,
            after=plan.expected,
            cause=cause,
            detail="; ".join(c.describe(child_store.shop) for c in plan.changes),
        )
    )
    for c in plan.reverted:
        await audit.record(
            AuditRecord(
                shop=child_store.shop,
                object_type="product",
                object_id=written.id or "",
                action="revert_child_edit",
                before=c.child_value,
                after=c.parent_value,
                cause=cause,
                detail=c.describe(child_store.shop),
            )
        )
    return plan
