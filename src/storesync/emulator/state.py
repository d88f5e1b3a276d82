"""In-memory state of every emulated store, and the merchant-side actions on it.

One `Emulator` holds many `StoreState`s. Ids come from one counter shared by every store and
type, so an id of one store never resolves in another (as with Shopify's global ids), which
catches an engine that mixes up stores. Timestamps have Shopify's one-second precision.

Each action returns the webhook events it causes as `Event(topic, payload)` (REST JSON shapes,
built in payloads.py); the caller hands them to the webhook sender after the change is applied.
Everything runs on the app's event loop, so no locking is needed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from storesync.emulator.ids import gid, parse_gid

# Quantity names Shopify tracks per inventory level; `on_hand` is the sum of the others except
# `incoming` (and `available` is what can be sold).
QUANTITY_NAMES = (
    "available",
    "committed",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
)
_ON_HAND_PARTS = ("available", "committed", "damaged", "quality_control", "reserved", "safety_stock")

PLANS = {  # plan -> (bucket size, restore rate per second), Shopify's documented limits
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
}
PLAN_DISPLAY = {"standard": "Basic", "advanced": "Advanced", "plus": "Shopify Plus"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: Any) -> str | None:
    """Shopify's Money input ("19.9", 19.9) normalised to "19.90"; None if not a number >= 0."""
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d < 0:
        return None
    return str(d.quantize(Decimal("0.01")))


def handleize(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "product"


@dataclass
class Event:
    topic: str  # REST form: products/update
    payload: dict


# --------------------------------------------------------------------------- entities


@dataclass(eq=False)
class Location:
    id: int
    name: str
    is_active: bool = True
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class Metafield:
    id: int
    namespace: str
    key: str
    value: str
    type: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class OptionValue:
    id: int
    name: str


@dataclass(eq=False)
class ProductOption:
    id: int
    name: str
    position: int
    values: list[OptionValue]


@dataclass(eq=False)
class Product:
    id: int
    title: str
    handle: str
    description_html: str = ""
    vendor: str = ""
    product_type: str = ""
    status: str = "ACTIVE"
    tags: list[str] = field(default_factory=list)
    template_suffix: str | None = None
    seo_title: str | None = None
    seo_description: str | None = None
    options: list[ProductOption] = field(default_factory=list)
    variant_ids: list[int] = field(default_factory=list)
    metafields: list[Metafield] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    published_at: str | None = field(default_factory=now_iso)


@dataclass(eq=False)
class Variant:
    id: int
    product_id: int
    inventory_item_id: int
    price: str = "0.00"
    compare_at_price: str | None = None
    barcode: str | None = None
    position: int = 1
    inventory_policy: str = "DENY"
    taxable: bool = True
    # (option name, value name) in option order
    selected: list[tuple[str, str]] = field(default_factory=list)
    metafields: list[Metafield] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def title(self) -> str:
        return " / ".join(v for _n, v in self.selected) or "Default Title"


@dataclass(eq=False)
class InventoryItem:
    id: int
    variant_id: int
    sku: str | None = None
    tracked: bool = True
    requires_shipping: bool = True
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class InventoryLevel:
    id: int
    item_id: int
    location_id: int
    quantities: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUANTITY_NAMES, 0))
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def gid(self) -> str:
        return f"gid://shopify/InventoryLevel/{self.id}?inventory_item_id={self.item_id}"


@dataclass(eq=False)
class Condition:
    """One condition of a collection source's inclusion (2026-10), e.g. productTag TAGGED_WITH
    ["sale"]: `kind` is the input field that names it, `values` its values as strings (a number
    condition has one; compare-at IS_SET/IS_NOT_SET none), `currency` a money condition's."""

    id: int
    kind: str
    relation: str
    values: list[str]
    match_type: str = "ANY"
    currency: str | None = None


@dataclass(eq=False)
class Collection:
    id: int
    title: str
    handle: str
    description_html: str = ""
    sort_order: str = "MANUAL"
    template_suffix: str | None = None
    seo_title: str | None = None
    seo_description: str | None = None
    product_ids: list[int] = field(default_factory=list)  # the source's selections (manual members)
    metafields: list[Metafield] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    published_at: str | None = field(default_factory=now_iso)
    # Membership (2026-10 sources): the collection's one conditions source, if any. Its members
    # are its selections plus the products matching its conditions, any or all of them
    # (`match_type`), computed on every read. No conditions: a manual collection.
    source_id: int | None = None
    source_title: str | None = None
    conditions: list[Condition] = field(default_factory=list)
    match_type: str = "ALL"
    # The collection image as served: Shopify copies `image.src` to its CDN (same file name).
    image_url: str | None = None
    image_alt: str | None = None

    @property
    def smart(self) -> bool:
        return bool(self.conditions)

    @property
    def disjunctive(self) -> bool:
        return self.match_type == "ANY"


# The conditions the emulator evaluates: kind -> (value kind, output type, relations). Shopify
# has more (metafields, category, status, weight), which the emulator refuses with a user error.
TEXT_RELATIONS = frozenset(
    {"CONTAINS", "DOES_NOT_CONTAIN", "ENDS_WITH", "EQUALS", "NOT_EQUALS", "STARTS_WITH"}
)
CONDITION_KINDS: dict[str, tuple[str, str, frozenset[str]]] = {
    "productTag": (
        "tag",
        "CollectionSourceInclusionConditionProductTag",
        frozenset({"TAGGED_WITH", "NOT_TAGGED_WITH"}),
    ),
    "productTitle": ("text", "CollectionSourceInclusionConditionProductTitle", TEXT_RELATIONS),
    "productType": ("text", "CollectionSourceInclusionConditionProductType", TEXT_RELATIONS),
    "productVendor": ("text", "CollectionSourceInclusionConditionProductVendor", TEXT_RELATIONS),
    "variantTitle": ("text", "CollectionSourceInclusionConditionVariantTitle", TEXT_RELATIONS),
    "variantPrice": (
        "money",
        "CollectionSourceInclusionConditionVariantPrice",
        frozenset({"EQUALS", "GREATER_THAN", "LESS_THAN", "NOT_EQUALS"}),
    ),
    "variantCompareAtPrice": (
        "money",
        "CollectionSourceInclusionConditionVariantCompareAtPrice",
        frozenset({"EQUALS", "GREATER_THAN", "LESS_THAN", "NOT_EQUALS", "IS_SET", "IS_NOT_SET"}),
    ),
    "variantInventory": (
        "number",
        "CollectionSourceInclusionConditionVariantInventory",
        frozenset({"EQUALS", "GREATER_THAN", "LESS_THAN"}),
    ),
}

# The deprecated ruleSet's columns as conditions (a rule is a one-value condition); Shopify maps
# each rule to its equivalent condition the same way (collectionCreate's description, 2026-10).
RULE_COLUMNS = {
    "TAG": "productTag",
    "TITLE": "productTitle",
    "TYPE": "productType",
    "VENDOR": "productVendor",
    "VARIANT_TITLE": "variantTitle",
    "VARIANT_PRICE": "variantPrice",
    "VARIANT_COMPARE_AT_PRICE": "variantCompareAtPrice",
    "VARIANT_INVENTORY": "variantInventory",
}
_RULE_RELATION = {("TAG", "EQUALS"): "TAGGED_WITH", ("TAG", "NOT_EQUALS"): "NOT_TAGGED_WITH"}
_LEGACY_TEXT = {"NOT_CONTAINS": "DOES_NOT_CONTAIN"}


def condition_error(kind: str, relation: str, values: list[str]) -> str | None:
    """Why the emulator cannot evaluate a condition (None: it can)."""
    spec = CONDITION_KINDS.get(kind)
    if spec is None:
        return f"the emulator does not evaluate {kind} conditions"
    value_kind, _type, relations = spec
    if relation not in relations:
        return f"relation {relation} is not valid for {kind}"
    if value_kind in ("number", "money") and relation not in ("IS_SET", "IS_NOT_SET"):
        try:
            float(values[0])
        except (IndexError, ValueError):
            return f"the value of {kind} must be a number"
    if value_kind in ("tag", "text") and not values:
        return f"{kind} needs at least one value"
    return None


def rule_to_condition(
    cid: int, column: str, relation: str, condition: str, currency: str
) -> Condition | None:
    """The condition equivalent to a deprecated ruleSet rule (None: no equivalent here)."""
    kind = RULE_COLUMNS.get(column)
    if kind is None:
        return None
    if column == "TAG":
        rel = _RULE_RELATION.get((column, relation), relation)
    else:
        rel = _LEGACY_TEXT.get(relation, relation)
    money = CONDITION_KINDS[kind][0] == "money"
    return Condition(cid, kind, rel, [condition], "ANY", currency if money else None)


def condition_to_rules(c: Condition) -> list[tuple[str, str, str]]:
    """The deprecated ruleSet's view of a condition: one rule per value."""
    column = next(col for col, kind in RULE_COLUMNS.items() if kind == c.kind)
    if c.kind == "productTag":
        rel = "EQUALS" if c.relation == "TAGGED_WITH" else "NOT_EQUALS"
    else:
        rel = {v: k for k, v in _LEGACY_TEXT.items()}.get(c.relation, c.relation)
    return [(column, rel, v) for v in c.values]


def rule_error(column: str, relation: str, condition: str) -> str | None:
    """Why the emulator cannot evaluate a deprecated ruleSet rule (None: it can)."""
    cond = rule_to_condition(0, column, relation, condition, "USD")
    if cond is None:
        return f"the emulator does not evaluate smart-collection rules on {column}"
    if column == "TAG" and relation not in ("EQUALS", "NOT_EQUALS"):
        return f"relation {relation} is not valid for {column}"
    return condition_error(cond.kind, cond.relation, cond.values)


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "EQUALS": lambda v, c: v == c,
    "NOT_EQUALS": lambda v, c: v != c,
    "CONTAINS": lambda v, c: c in v,
    "DOES_NOT_CONTAIN": lambda v, c: c not in v,
    "STARTS_WITH": lambda v, c: v.startswith(c),
    "ENDS_WITH": lambda v, c: v.endswith(c),
}
_NUMBER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "EQUALS": lambda v, c: v == c,
    "NOT_EQUALS": lambda v, c: v != c,
    "GREATER_THAN": lambda v, c: v > c,
    "LESS_THAN": lambda v, c: v < c,
}


def _text_match(fields: list[str], relation: str, value: str) -> bool:
    cond = value.lower()
    return any(_TEXT_TESTS[relation](f.lower(), cond) for f in fields)


def _number_match(fields: list[float], relation: str, value: str) -> bool:
    return any(_NUMBER_TESTS[relation](f, float(value)) for f in fields)


@dataclass(eq=False)
class LineItem:
    id: int
    variant_id: int
    product_id: int
    sku: str | None
    title: str
    variant_title: str
    quantity: int
    price: str


@dataclass(eq=False)
class Order:
    id: int
    number: int
    location_id: int
    line_items: list[LineItem]
    email: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    restocked: bool = False

    @property
    def name(self) -> str:
        return f"#{self.number}"


@dataclass(eq=False)
class InventoryChange:
    name: str
    delta: int
    quantity_after_change: int
    item_id: int
    location_id: int
    ledger_document_uri: str | None = None


@dataclass(eq=False)
class AdjustmentGroup:
    id: int
    reason: str
    reference_document_uri: str | None
    changes: list[InventoryChange]
    created_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class ProductSetOperation:
    id: int
    status: str
    product_id: int | None
    user_errors: list[dict]


@dataclass(eq=False)
class Job:
    id: int
    done: bool = True


# --------------------------------------------------------------------------- store


class ActionError(ValueError):
    """A control-API action that cannot be done (unknown variant, not enough stock...)."""


class StoreState:
    """One shop's catalog, inventory, orders and API bookkeeping."""

    def __init__(
        self, emulator: Emulator, shop: str, token: str, app_secret: str, plan: str = "standard"
    ) -> None:
        self.emulator = emulator
        self.shop = shop
        self.token = token
        self.app_secret = app_secret
        self.plan = plan
        self.name = shop.split(".", 1)[0].replace("-", " ").title()
        self.id = emulator.next_id()
        self.created_at = now_iso()
        self.currency = "USD"
        # Not UTC on purpose: REST webhook timestamps carry this zone's offset, GraphQL's are UTC.
        self.timezone = "America/New_York"
        self.locations: dict[int, Location] = {}
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.items: dict[int, InventoryItem] = {}
        self.levels: dict[tuple[int, int], InventoryLevel] = {}
        # item id -> its levels, so per-variant totals do not scan every level of the store
        self.levels_by_item: dict[int, list[InventoryLevel]] = {}
        self.collections: dict[int, Collection] = {}
        self.orders: dict[int, Order] = {}
        self.groups: dict[int, AdjustmentGroup] = {}
        self.operations: dict[int, ProductSetOperation] = {}
        self.jobs: dict[int, Job] = {}
        # bulk query operations (emulator/bulk.py), and the fault the next one ends with
        self.bulk_operations: dict[int, Any] = {}
        self.bulk_fault: tuple[str, str | None] | None = None
        # idempotency key -> (mutation field name, canonical arguments, original payload)
        self.idempotency: dict[str, tuple[str, str, Any]] = {}
        self._order_numbers = itertools.count(1001)
        # Every Shopify store has at least one location from the start.
        self.add_location("Shop location")

    def next_id(self) -> int:
        return self.emulator.next_id()

    # ------------------------------------------------------------------ lookups

    def product_variants(self, product: Product) -> list[Variant]:
        return [self.variants[v] for v in product.variant_ids if v in self.variants]

    def item_levels(self, item_id: int) -> list[InventoryLevel]:
        return list(self.levels_by_item.get(item_id, ()))

    def location_levels(self, location_id: int) -> list[InventoryLevel]:
        return [lvl for (_item, loc), lvl in self.levels.items() if loc == location_id]

    def product_collections(self, product_id: int) -> list[Collection]:
        return [c for c in self.collections.values() if self.in_collection(product_id, c)]

    def in_collection(self, product_id: int, coll: Collection) -> bool:
        if coll.source_id is None:
            return False
        if product_id in coll.product_ids:
            return product_id in self.products
        product = self.products.get(product_id)
        return coll.smart and product is not None and self.matches_rules(product, coll)

    def collection_members(self, coll: Collection) -> list[int]:
        """Product ids in the collection: its selections in the order added, then (a smart one's)
        the matching products by id."""
        if coll.source_id is None:
            return []
        selected = [p for p in coll.product_ids if p in self.products]
        if not coll.smart:
            return selected
        chosen = set(selected)
        return selected + [
            p.id
            for p in sorted(self.products.values(), key=lambda p: p.id)
            if p.id not in chosen and self.matches_rules(p, coll)
        ]

    def matches_rules(self, product: Product, coll: Collection) -> bool:
        """Whether `product` matches the collection's conditions (any or all of them)."""
        results = [self._matches_condition(product, c) for c in coll.conditions]
        return any(results) if coll.disjunctive else bool(results) and all(results)

    def _matches_condition(self, product: Product, c: Condition) -> bool:
        variants = self.product_variants(product)
        combine = any if c.match_type == "ANY" else all
        if c.kind == "productTag":
            tags = [t.lower() for t in product.tags]
            hit = combine(v.lower() in tags for v in c.values)
            return hit if c.relation == "TAGGED_WITH" else not hit
        texts = {
            "productTitle": lambda: [product.title or ""],
            "productType": lambda: [product.product_type or ""],
            "productVendor": lambda: [product.vendor or ""],
            "variantTitle": lambda: [v.title for v in variants],
        }
        if c.kind in texts:
            fields = texts[c.kind]()
            return combine(_text_match(fields, c.relation, v) for v in c.values)
        if c.kind == "variantCompareAtPrice" and c.relation in ("IS_SET", "IS_NOT_SET"):
            is_set = any(v.compare_at_price for v in variants)
            return is_set if c.relation == "IS_SET" else not is_set
        numbers = {
            "variantPrice": lambda: [float(v.price) for v in variants],
            "variantCompareAtPrice": lambda: [
                float(v.compare_at_price) for v in variants if v.compare_at_price
            ],
            "variantInventory": lambda: [float(self.variant_available(v)) for v in variants],
        }[c.kind]()
        return _number_match(numbers, c.relation, c.values[0])

    def variant_available(self, variant: Variant) -> int:
        return sum(
            lvl.quantities["available"] for lvl in self.levels_by_item.get(variant.inventory_item_id, ())
        )

    def product_by_handle(self, handle: str) -> Product | None:
        return next((p for p in self.products.values() if p.handle == handle), None)

    def active_locations(self) -> list[Location]:
        return [loc for loc in self.locations.values() if loc.is_active]

    def unique_handle(self, base: str, taken: set[str] | None = None, exclude_id: int | None = None) -> str:
        used = (
            taken if taken is not None else {p.handle for p in self.products.values() if p.id != exclude_id}
        )
        handle, n = base, 1
        while handle in used:
            n += 1
            handle = f"{base}-{n}"
        return handle

    # ------------------------------------------------------------------ building blocks

    def add_location(self, name: str) -> Location:
        loc = Location(id=self.next_id(), name=name)
        self.locations[loc.id] = loc
        for item in self.items.values():
            self.ensure_level(item.id, loc.id)
        return loc

    def ensure_level(self, item_id: int, location_id: int) -> InventoryLevel:
        lvl = self.levels.get((item_id, location_id))
        if lvl is None:
            lvl = InventoryLevel(id=self.next_id(), item_id=item_id, location_id=location_id)
            self.levels[(item_id, location_id)] = lvl
            self.levels_by_item.setdefault(item_id, []).append(lvl)
        return lvl

    def new_variant(self, product: Product, **fields: Any) -> Variant:
        sku = fields.pop("sku", None)
        tracked = fields.pop("tracked", True)
        requires_shipping = fields.pop("requires_shipping", True)
        vid, iid = self.next_id(), self.next_id()
        variant = Variant(id=vid, product_id=product.id, inventory_item_id=iid, **fields)
        self.variants[vid] = variant
        self.items[iid] = InventoryItem(
            id=iid, variant_id=vid, sku=sku, tracked=tracked, requires_shipping=requires_shipping
        )
        for loc in self.active_locations():
            self.ensure_level(iid, loc.id)
        return variant

    def delete_variant(self, variant_id: int) -> None:
        variant = self.variants.pop(variant_id, None)
        if variant is None:
            return
        self.items.pop(variant.inventory_item_id, None)
        for lvl in self.levels_by_item.pop(variant.inventory_item_id, []):
            del self.levels[(lvl.item_id, lvl.location_id)]

    def delete_product(self, product_id: int) -> Product | None:
        product = self.products.pop(product_id, None)
        if product is None:
            return None
        for vid in product.variant_ids:
            self.delete_variant(vid)
        for coll in self.collections.values():
            if product_id in coll.product_ids:
                coll.product_ids.remove(product_id)
        return product

    def set_quantity(self, level: InventoryLevel, name: str, value: int) -> int:
        """Set one quantity name, keeping on_hand consistent; returns the delta."""
        q = level.quantities
        delta = value - q[name]
        if delta == 0:
            return 0
        if name == "on_hand":
            q["on_hand"] = value
            q["available"] += delta
        else:
            q[name] = value
            if name in _ON_HAND_PARTS:
                q["on_hand"] += delta
        level.updated_at = now_iso()
        return delta

    # ------------------------------------------------------------------ events

    def inventory_events(self, levels: list[InventoryLevel]) -> list[Event]:
        """inventory_levels/update per level, then products/update per product touched (Shopify
        announces the variants' new inventory_quantity that way too)."""
        from storesync.emulator import payloads

        events = [
            Event("inventory_levels/update", payloads.inventory_level(lvl, self.timezone)) for lvl in levels
        ]
        product_ids: list[int] = []
        for lvl in levels:
            item = self.items.get(lvl.item_id)
            variant = self.variants.get(item.variant_id) if item else None
            if variant and variant.product_id not in product_ids:
                product_ids.append(variant.product_id)
        for pid in product_ids:
            product = self.products[pid]
            product.updated_at = now_iso()
            events.append(Event("products/update", payloads.product(self, product)))
        return events

    def product_event(self, topic: str, product: Product) -> Event:
        from storesync.emulator import payloads

        return Event(topic, payloads.product(self, product))

    def collection_event(self, topic: str, coll: Collection) -> Event:
        from storesync.emulator import payloads

        return Event(topic, payloads.collection(coll, self.timezone))

    # ------------------------------------------------------------------ merchant actions

    def seed(
        self,
        products: int = 0,
        locations: list[str] | None = None,
        variants_per_product: int = 2,
        quantity: int = 10,
        prefix: str | None = None,
    ) -> dict:
        """A generated catalog (no webhooks: it is the store as it was before we arrived)."""
        for name in locations or []:
            if all(loc.name != name for loc in self.locations.values()):
                self.add_location(name)
        prefix = prefix or self.shop.split(".", 1)[0].upper()
        created = []
        start = len(self.products) + 1
        for n in range(start, start + products):
            title = f"Product {n}"
            product = Product(
                id=self.next_id(),
                title=title,
                handle=self.unique_handle(f"product-{n}"),
                vendor="Emulator",
                product_type="Test",
            )
            self.products[product.id] = product
            sizes = ["S", "M", "L", "XL", "XXL"][: max(1, variants_per_product)]
            product.options = [
                ProductOption(self.next_id(), "Size", 1, [OptionValue(self.next_id(), s) for s in sizes])
            ]
            for pos, size in enumerate(sizes, 1):
                v = self.new_variant(
                    product,
                    sku=f"{prefix}-{n}-{size}",
                    price=f"{10 + n}.00",
                    position=pos,
                    selected=[("Size", size)],
                )
                product.variant_ids.append(v.id)
                for loc in self.active_locations():
                    self.set_quantity(self.levels[(v.inventory_item_id, loc.id)], "available", quantity)
            created.append(gid("Product", product.id))
        return {
            "products": created,
            "locations": [gid("Location", loc.id) for loc in self.locations.values()],
        }

    def seed_catalog(self, products: list[dict]) -> list[str]:
        """Products exactly as given (no webhooks), e.g. the same SKUs in a parent and a child:
        [{"title", "handle"?, "vendor"?, "product_type"?, "tags"?: [..], "status"?,
          "variants": [{"sku", "price"?, "barcode"?, "options"?: {"Size": "S"},
                        "available"?: n | {location gid: n}}]}]
        Variants without options make a single "Default Title" variant."""
        for i, spec in enumerate(products):
            if not isinstance(spec, dict) or not str(spec.get("title") or "").strip():
                raise ActionError(f"catalog[{i}].title is required")
            handle = spec.get("handle") or self.unique_handle(handleize(spec["title"]))
            if self.product_by_handle(handle) is not None:
                raise ActionError(f"catalog[{i}].handle {handle!r} exists in {self.shop}")
            for j, v in enumerate(spec.get("variants") or [{}]):
                if v.get("price") is not None and money(v["price"]) is None:
                    raise ActionError(f"catalog[{i}].variants[{j}].price is not a price")
                avail = v.get("available", 0)
                targets = avail.keys() if isinstance(avail, dict) else []
                if any(parse_gid(t, "Location") not in self.locations for t in targets):
                    raise ActionError(f"catalog[{i}].variants[{j}].available names an unknown location")
        created = []
        for spec in products:
            product = Product(
                id=self.next_id(),
                title=spec["title"],
                handle=spec.get("handle") or self.unique_handle(handleize(spec["title"])),
                vendor=spec.get("vendor", ""),
                product_type=spec.get("product_type", ""),
                tags=list(spec.get("tags") or []),
                status=str(spec.get("status", "ACTIVE")).upper(),
                description_html=spec.get("description_html", ""),
            )
            self.products[product.id] = product
            variants = spec.get("variants") or [{}]
            names: list[str] = []
            for v in variants:
                names += [n for n in (v.get("options") or {}) if n not in names]
            if not names:
                names = ["Title"]
                variants = [{**variants[0], "options": {"Title": "Default Title"}}]
            product.options = []
            for pos, name in enumerate(names, 1):
                values = list(dict.fromkeys(str((v.get("options") or {}).get(name, "")) for v in variants))
                product.options.append(
                    ProductOption(self.next_id(), name, pos, [OptionValue(self.next_id(), x) for x in values])
                )
            for pos, v in enumerate(variants, 1):
                variant = self.new_variant(
                    product,
                    sku=v.get("sku"),
                    price=money(v.get("price", "0")) or "0.00",
                    barcode=v.get("barcode"),
                    position=pos,
                    selected=[(n, str(v["options"].get(n, ""))) for n in names],
                )
                product.variant_ids.append(variant.id)
                avail = v.get("available", 0)
                per_location = (
                    {parse_gid(k, "Location"): n for k, n in avail.items()}
                    if isinstance(avail, dict)
                    else {loc.id: avail for loc in self.active_locations()}
                )
                for lid, n in per_location.items():
                    self.set_quantity(self.ensure_level(variant.inventory_item_id, lid), "available", int(n))
            created.append(gid("Product", product.id))
        return created

    def place_order(
        self, line_items: list[dict], location_id: int | None = None, email: str | None = None
    ) -> tuple[Order, list[Event]]:
        """A sale: units move from available to committed at the location."""
        from storesync.emulator import payloads

        loc = self._order_location(location_id)
        lines: list[tuple[Variant, int]] = []
        wanted: dict[int, int] = {}  # inventory item -> units ordered over all lines
        for i, li in enumerate(line_items):
            vid = parse_gid(li.get("variant_id"), "ProductVariant") or (
                li.get("variant_id") if isinstance(li.get("variant_id"), int) else None
            )
            variant = self.variants.get(vid) if vid else None
            qty = li.get("quantity", 1)
            if variant is None:
                raise ActionError(
                    f"line_items[{i}].variant_id: no variant {li.get('variant_id')!r} in {self.shop}"
                )
            if not isinstance(qty, int) or qty < 1:
                raise ActionError(f"line_items[{i}].quantity must be a positive integer")
            level = self.levels.get((variant.inventory_item_id, loc.id))
            if level is None:
                raise ActionError(f"line_items[{i}]: variant not stocked at location {loc.id}")
            wanted[variant.inventory_item_id] = wanted.get(variant.inventory_item_id, 0) + qty
            if (
                variant.inventory_policy == "DENY"
                and level.quantities["available"] < wanted[variant.inventory_item_id]
            ):
                raise ActionError(
                    f"line_items[{i}]: only {level.quantities['available']} available, "
                    f"{wanted[variant.inventory_item_id]} ordered"
                )
            lines.append((variant, qty))
        order = Order(
            id=self.next_id(),
            number=next(self._order_numbers),
            location_id=loc.id,
            line_items=[],
            email=email,
        )
        touched: list[InventoryLevel] = []
        for variant, qty in lines:
            product = self.products[variant.product_id]
            item = self.items[variant.inventory_item_id]
            order.line_items.append(
                LineItem(
                    self.next_id(),
                    variant.id,
                    product.id,
                    item.sku,
                    product.title,
                    variant.title,
                    qty,
                    variant.price,
                )
            )
            level = self.levels[(variant.inventory_item_id, loc.id)]
            q = level.quantities
            q["available"] -= qty
            q["committed"] += qty
            level.updated_at = now_iso()
            if level not in touched:
                touched.append(level)
        self.orders[order.id] = order
        events = [Event("orders/create", payloads.order(self, order))]
        events += self.inventory_events(touched)
        return order, events

    def _order_location(self, location_id: int | None) -> Location:
        if location_id is None:
            active = self.active_locations()
            if not active:
                raise ActionError(f"{self.shop} has no active location")
            return active[0]
        loc = self.locations.get(location_id)
        if loc is None:
            raise ActionError(f"no location {location_id} in {self.shop}")
        return loc

    def cancel_order(
        self, order_id: int, restock: bool = True, reason: str = "customer"
    ) -> tuple[Order, list[Event]]:
        from storesync.emulator import payloads

        order = self.orders.get(order_id)
        if order is None:
            raise ActionError(f"no order {order_id} in {self.shop}")
        if order.cancelled_at is not None:
            raise ActionError(f"order {order.name} is already cancelled")
        order.cancelled_at = order.updated_at = now_iso()
        order.cancel_reason = reason
        order.restocked = restock
        touched: list[InventoryLevel] = []
        for li in order.line_items:
            variant = self.variants.get(li.variant_id)
            level = self.levels.get((variant.inventory_item_id, order.location_id)) if variant else None
            if level is None:
                continue  # product deleted since: nothing to put back
            q = level.quantities
            q["committed"] -= li.quantity
            if restock:
                q["available"] += li.quantity
            else:
                q["on_hand"] -= li.quantity
            level.updated_at = now_iso()
            if restock and level not in touched:
                touched.append(level)
        events = [Event("orders/cancelled", payloads.order(self, order))]
        events += self.inventory_events(touched)
        return order, events

    def merchant_set_inventory(self, item_id: int, location_id: int, available: int) -> list[Event]:
        """A merchant typing a new available count in the admin."""
        level = self.levels.get((item_id, location_id))
        if level is None:
            if item_id not in self.items or location_id not in self.locations:
                raise ActionError(f"no inventory item {item_id} at location {location_id} in {self.shop}")
            level = self.ensure_level(item_id, location_id)
        if self.set_quantity(level, "available", available) == 0:
            return []
        return self.inventory_events([level])

    def merchant_edit_product(self, product_id: int, changes: dict) -> list[Event]:
        """A merchant editing a product in the admin: title, description, vendor, tags, status,
        handle, and per-variant price/sku/barcode (`variants: [{id, price, ...}]`)."""
        product = self.products.get(product_id)
        if product is None:
            raise ActionError(f"no product {product_id} in {self.shop}")
        simple = {
            "title": "title",
            "description_html": "description_html",
            "body_html": "description_html",
            "vendor": "vendor",
            "product_type": "product_type",
            "handle": "handle",
            "template_suffix": "template_suffix",
        }
        for key, value in changes.items():
            if key in simple:
                setattr(product, simple[key], value)
            elif key == "tags":
                product.tags = (
                    [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value)
                )
            elif key == "status":
                product.status = str(value).upper()
            elif key == "variants":
                for vc in value:
                    vid = parse_gid(vc.get("id"), "ProductVariant") or vc.get("id")
                    variant = self.variants.get(vid)
                    if variant is None or variant.product_id != product.id:
                        raise ActionError(
                            f"variant {vc.get('id')!r} is not a variant of product {product_id}"
                        )
                    for vk, vv in vc.items():
                        if vk == "price":
                            variant.price = money(vv) or variant.price
                        elif vk == "compare_at_price":
                            variant.compare_at_price = money(vv) if vv is not None else None
                        elif vk == "sku":
                            self.items[variant.inventory_item_id].sku = vv
                        elif vk == "barcode":
                            variant.barcode = vv
                    variant.updated_at = now_iso()
            else:
                raise ActionError(
                    f"cannot edit {key!r} (editable: {sorted([*simple, 'tags', 'status', 'variants'])})"
                )
        product.updated_at = now_iso()
        return [self.product_event("products/update", product)]

    def snapshot(self) -> dict:
        """The store's whole state as plain JSON, for tests and the demo."""
        from storesync.emulator import payloads

        return {
            "shop": self.shop,
            "plan": self.plan,
            "locations": [
                {"id": gid("Location", loc.id), "name": loc.name, "is_active": loc.is_active}
                for loc in self.locations.values()
            ],
            "products": [
                payloads.product(self, p)
                | {
                    "metafields": [
                        {"namespace": m.namespace, "key": m.key, "value": m.value, "type": m.type}
                        for m in p.metafields
                    ],
                    "collections": [gid("Collection", c.id) for c in self.product_collections(p.id)],
                }
                for p in self.products.values()
            ],
            "inventory_levels": [
                {
                    "inventory_item_id": gid("InventoryItem", lvl.item_id),
                    "location_id": gid("Location", lvl.location_id),
                    "sku": self.items[lvl.item_id].sku if lvl.item_id in self.items else None,
                    **lvl.quantities,
                    "updated_at": lvl.updated_at,
                }
                for lvl in self.levels.values()
            ],
            "collections": [
                payloads.collection(c, self.timezone)
                | {"products": [gid("Product", p) for p in self.collection_members(c)]}
                for c in self.collections.values()
            ],
            "orders": [payloads.order(self, o) for o in self.orders.values()],
        }


class Emulator:
    """All stores of one emulator process."""

    def __init__(self) -> None:
        self._ids = itertools.count(1001)
        self.stores: dict[str, StoreState] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def add_store(
        self, shop: str, token: str | None = None, app_secret: str | None = None, plan: str = "standard"
    ) -> StoreState:
        if shop in self.stores:
            raise ValueError(f"store {shop} exists")
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")
        store = StoreState(self, shop, token or default_token(shop), app_secret or default_secret(shop), plan)
        self.stores[shop] = store
        return store

    def store_for_token(self, shop: str, token: str | None) -> StoreState | None:
        store = self.stores.get(shop)
        if store is None or not token or token != store.token:
            return None
        return store


def default_token(shop: str) -> str:
    """The access token a store gets when none is configured (tests know it without asking)."""
    return f"shpat_emulator_{shop.split('.', 1)[0]}"


def default_secret(shop: str) -> str:
    return f"emulator-secret-{shop.split('.', 1)[0]}"
