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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, cast

from storesync.config import SyncedField
from storesync.sync.domain.catalog_rules import CatalogRules
from storesync.sync.domain.media import MediaPlan, actual_media, expected_media, plan_media
from storesync.sync.domain.metafields import (
    PRODUCT_OWNER,
    MetafieldWrite,
    metafield_inputs,
    metafield_writes,
    metafields_view,
    synced,
)
from storesync.sync.domain.model import (
    Link,
    LinkKind,
    LinkMap,
    MatchedBy,
    Metafield,
    Product,
    Variant,
    VariantDetails,
)

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
    # Metafield namespaces that follow the parent (product and variant metafields); every other
    # metafield is the child's (`domain/metafields.py`). Default: none.
    metafield_namespaces: frozenset[str] = frozenset()
    catalog: CatalogRules = field(default_factory=CatalogRules)  # every child's unless it has its own
    child_catalog: Mapping[str, CatalogRules] = field(default_factory=dict)  # child shop -> rules

    def __post_init__(self) -> None:
        pair = {SyncedField.OPTIONS, SyncedField.VARIANTS}
        if len(pair & self.synced) == 1:
            raise ValueError("options and variants are synced together (a variant is its option values)")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SyncPolicy:
        """From configuration such as
        `{"fields": ["title", ...], "price_rules": {"child.myshopify.com": {"markup_percent": "10",
        "rounding": "ninety_nine"}}}`; a bad value raises ValueError naming it."""
        unknown_keys = set(data) - {
            "fields",
            "price_rules",
            "metafield_namespaces",
            "catalog",
            "child_catalog",
        }
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
        catalog = CatalogRules().with_overrides(data.get("catalog") or {})
        child_catalog = {
            shop: catalog.with_overrides(overrides)
            for shop, overrides in (data.get("child_catalog") or {}).items()
        }
        namespaces = frozenset(data.get("metafield_namespaces") or ())
        return cls(synced, rules, namespaces, catalog, child_catalog)

    def price_rule(self, child_shop: str) -> PriceRule:
        return self.price_rules.get(child_shop, IDENTITY_PRICE)

    def rules(self, child_shop: str) -> CatalogRules:
        return self.child_catalog.get(child_shop, self.catalog)

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


def _details_view(d: VariantDetails) -> dict[str, Any]:
    return {
        "inventory_policy": d.inventory_policy,
        "taxable": d.taxable,
        "tracked": d.tracked,
        "requires_shipping": d.requires_shipping,
        "cost": _money(d.cost),
        "hs_code": d.hs_code or None,
        "country_of_origin": d.country_of_origin,
        "weight": list(d.weight) if d.weight else None,
    }


def _variant_view(
    v: Variant, rule: PriceRule | None, namespaces: frozenset[str] = frozenset()
) -> dict[str, Any]:
    price = rule.apply(v.price) if rule else v.price
    compare = rule.apply(v.compare_at_price) if rule else v.compare_at_price
    view: dict[str, Any] = {
        "options": sorted([list(p) for p in v.option_values]),
        "sku": v.sku or None,
        "barcode": v.barcode or None,
        "price": _money(price),
        "compare_at_price": _money(compare),
    }
    if v.details is not None:  # read with the product (a webhook's variants carry none)
        view["details"] = _details_view(v.details)
    if namespaces:
        view["metafields"] = metafields_view(v.metafields, namespaces)
    return view


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
    if policy.syncs(SyncedField.STATUS):
        view["status"] = p.status
    if policy.syncs(SyncedField.SEO):
        view["seo"] = [p.seo_title, p.seo_description]
    if policy.metafield_namespaces:
        view["metafields"] = metafields_view(p.metafields, policy.metafield_namespaces)
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
    if policy.syncs(SyncedField.IMAGES):
        view["media"] = expected_media(parent)
    if policy.syncs(SyncedField.VARIANTS):
        rule = policy.price_rule(links.child_shop)
        ns = policy.metafield_namespaces
        view["options"] = _options_used(parent.variants, (o.name for o in parent.options))
        view["variants"] = {v.id: _variant_view(v, rule, ns) for v in parent.variants if v.id}
    if policy.syncs(SyncedField.COLLECTIONS):
        view["collections"] = sorted(c for c in parent.collections if manual_child_collection(links, c))
    return view


def actual_view(child: Product, policy: SyncPolicy, links: LinkMap) -> dict[str, Any]:
    """The synced fields the child shows, translated to parent ids; child-owned data left out."""
    view = _scalar_view(child, policy)
    if policy.syncs(SyncedField.IMAGES):
        view["media"] = actual_media(child, links)
    if policy.syncs(SyncedField.VARIANTS):
        linked = [(links.parent_id(LinkKind.VARIANT, v.id), v) for v in child.variants if v.id]
        linked = [(pid, v) for pid, v in linked if pid]
        ns = policy.metafield_namespaces
        view["options"] = _options_used((v for _, v in linked), (o.name for o in child.options))
        view["variants"] = {pid: _variant_view(v, None, ns) for pid, v in linked}
    if policy.syncs(SyncedField.COLLECTIONS):
        mapped = (manual_parent_collection(links, c) for c in child.collections)
        view["collections"] = sorted(p for p in mapped if p)
    return view


def same_view(a: Any, b: Any) -> bool:
    """Views compared as stored (JSON: tuples become lists, keys strings)."""
    return bool(
        json.loads(json.dumps(a, sort_keys=True, default=str))
        == json.loads(json.dumps(b, sort_keys=True, default=str))
    )


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
    # The synced metafields to set or delete after the productSet (`domain/metafields.py`).
    metafields: tuple[MetafieldWrite, ...] = ()
    # The media write after the productSet (`domain/media.py`; None: media not synced).
    media: MediaPlan | None = None

    @property
    def noop(self) -> bool:
        return (
            self.blocked is None
            and self.child_product_id is not None
            and not self.changes
            and not self.metafields
            and (self.media is None or self.media.files is None)
        )

    @property
    def product_changes(self) -> bool:
        """Whether the productSet itself has something to write (the metafield and media writes
        follow it separately)."""
        return any(c.field not in ("media", "metafields") and not _only_metafields(c) for c in self.changes)

    @property
    def reverted(self) -> tuple[FieldChange, ...]:
        return tuple(c for c in self.changes if c.cause is ChangeCause.CHILD_EDIT_REVERTED)


class CatalogError(Exception):
    pass


class CatalogBlocked(CatalogError):
    """Writing the child would destroy child-owned data; nothing was written (permanent)."""


class NeedsCopy(Exception):
    """The child has no copy of the parent product (never made, or deleted there): the copy saga
    makes one (`services.copies.copy_to_child`). Never a productSet upsert by handle: that would
    adopt a child's own product of the same handle. `parent`: the parent product as just read
    (the copy starts from it instead of reading it again)."""

    def __init__(self, message: str, parent: Product | None = None) -> None:
        super().__init__(message)
        self.parent = parent


def _only_metafields(change: FieldChange) -> bool:
    """A variant's change that is only in its synced metafields (written by metafieldsSet)."""
    if not change.field.startswith("variants.") or not isinstance(change.child_value, Mapping):
        return False
    if not isinstance(change.parent_value, Mapping):
        return False

    def strip(view: Mapping[str, Any]) -> dict[str, Any]:
        return {k: x for k, x in view.items() if k != "metafields"}

    return strip(change.child_value) == strip(change.parent_value)


def _item_input(v: Variant) -> dict[str, Any]:
    """A synced variant's InventoryItemInput: its SKU and the parent's item fields (tracked by
    default, so that inventory sync has levels to set)."""
    d = v.details
    item: dict[str, Any] = {
        "sku": v.sku or "",
        "tracked": True if d is None or d.tracked is None else d.tracked,
    }
    if d is None:
        return item
    if d.requires_shipping is not None:
        item["requiresShipping"] = d.requires_shipping
    item["cost"] = None if d.cost is None else str(d.cost)
    item["harmonizedSystemCode"] = d.hs_code or None
    item["countryCodeOfOrigin"] = d.country_of_origin
    if d.weight is not None:
        item["measurement"] = {"weight": {"value": float(d.weight[0]), "unit": d.weight[1]}}
    return item


def _variant_input(
    v: Variant,
    *,
    child_id: str | None,
    price_rule: PriceRule | None,
    metafields: Iterable[Metafield] | None = None,
    option_values: Iterable[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A ProductVariantSetInput. `price_rule` None: a child's own variant carried unchanged
    (nothing but what it has). `metafields`: only for a variant this write creates (a list
    replaces the variant's metafields wholesale; left out, they stay)."""
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
        out["inventoryItem"] = _item_input(v)
        if v.details is not None and v.details.inventory_policy is not None:
            out["inventoryPolicy"] = v.details.inventory_policy
        if v.details is not None and v.details.taxable is not None:
            out["taxable"] = v.details.taxable
    elif v.sku:
        out["inventoryItem"] = {"sku": v.sku}  # a carried variant: nothing but what it has
    if metafields is not None:
        out["metafields"] = metafield_inputs(metafields)
    return out


def diff_views(
    expected: Mapping[str, Any], actual: Mapping[str, Any], last: Mapping[str, Any] | None
) -> list[FieldChange]:
    """The synced fields that differ between what a child should show (`expected`) and what it
    shows (`actual`), each with its cause told from what the engine last wrote (`last`). Used for
    products and collections alike."""
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
    mf_writes: list[MetafieldWrite] = []
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
                created.append(cast(str, pv.id))
                variants.append(
                    _variant_input(
                        pv,
                        child_id=None,
                        price_rule=rule,
                        metafields=synced(pv.metafields, policy.metafield_namespaces),
                    )
                )
            else:
                used_child_ids.add(cast(str, cv.id))
                variants.append(_variant_input(pv, child_id=cv.id, price_rule=rule))
                mf_writes += metafield_writes(
                    cast(str, pv.id), pv.metafields, cv.metafields, policy.metafield_namespaces
                )
        options: list[tuple[str, list[str]]] = [(o.name, list(o.values)) for o in parent.options]
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
                removed.append(cast(str, cv.id))  # a synced variant whose parent variant was deleted
                continue
            kept.append(cast(str, cv.id))
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
            variants.append(_variant_input(cv, child_id=cv.id, price_rule=None))
        inp["productOptions"] = [{"name": n, "values": [{"name": v} for v in vals]} for n, vals in options]
        inp["variants"] = variants
    else:
        # Not synced: the child's own variants, listed so that nothing is deleted.
        inp["productOptions"] = [
            {"name": o.name, "values": [{"name": v} for v in o.values]} for o in child.options
        ]
        inp["variants"] = [_variant_input(cv, child_id=cv.id, price_rule=None) for cv in child.variants]
    # The product's metafields are left out (they stay); the synced ones are written apart.
    mf_writes = (
        metafield_writes(PRODUCT_OWNER, parent.metafields, child.metafields, policy.metafield_namespaces)
        + mf_writes
    )
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
    media = (
        plan_media(parent, child, links, policy.rules(shop).child_media)
        if policy.syncs(SyncedField.IMAGES)
        else None
    )
    product_link = links.link_down(LinkKind.PRODUCT, parent.id)
    changes = diff_views(expected, actual, product_link.synced_view if product_link else None)
    if media is not None and any(number > 1 for _m, number in media.uploaded):
        # A copy that FAILED in the child is no edit of the child's: uploaded again as drift.
        changes = [replace(c, cause=ChangeCause.DRIFT) if c.field == "media" else c for c in changes]
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
        metafields=tuple(mf_writes),
        media=media,
    )


def _plan_create(
    parent: Product,
    links: LinkMap,
    policy: SyncPolicy,
    rule: PriceRule,
    expected: dict[str, Any],
    unmapped: tuple[str, ...],
) -> ProductPlan:
    """A child without this product gets all of it (non-synced fields as initial values), with
    its synced metafields; its media and sales channels are the copy's later steps."""
    ns = policy.metafield_namespaces
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
            _variant_input(
                v, child_id=None, price_rule=rule, metafields=synced(v.metafields, ns) if ns else None
            )
            for v in parent.variants
        ],
        "collections": [c for c in (manual_child_collection(links, pc) for pc in parent.collections) if c],
    }
    if ns:
        inp["metafields"] = metafield_inputs(synced(parent.metafields, ns))
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
    """A productSet input that changes nothing: every list the product has that the engine
    sends, listed (replace-all semantics); metafields and media left out (they stay). Callers
    override the one field they mean to change."""
    return {
        "productOptions": [
            {"name": o.name, "values": [{"name": v} for v in o.values]} for o in product.options
        ],
        "variants": [_variant_input(v, child_id=v.id, price_rule=None) for v in product.variants],
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
