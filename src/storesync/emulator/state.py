"""In-memory state of every emulated store, and the merchant-side actions on it.

One `Emulator` holds many `StoreState`s. Ids come from one counter shared by every store and
type, so an id of one store never resolves in another (as with Shopify's global ids), which
catches an engine that mixes up stores. Timestamps have Shopify's one-second precision.

Each action returns the webhook events it causes as `Event(topic, payload)` (REST JSON shapes,
built in payloads.py); the caller hands them to the webhook sender after the change is applied.
Everything runs on the app's event loop, so no locking is needed.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from storesync.emulator.ids import ActionError, gid, now_iso, parse_gid
from storesync.emulator.metafields import value_error as metafield_value_error

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

# Sales channels a new store has, by their catalog titles in the admin.
ONLINE_STORE = "Online Store"
DEFAULT_PUBLICATIONS = (ONLINE_STORE, "Point of Sale")


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


# Merchant edits of an inventory item (control API key -> InventoryItem attribute).
ITEM_FIELDS = {
    "tracked": "tracked",
    "requires_shipping": "requires_shipping",
    "cost": "unit_cost",
    "harmonized_system_code": "harmonized_system_code",
    "country_code_of_origin": "country_code_of_origin",
    "weight": "weight_value",
    "weight_unit": "weight_unit",
}


def item_input_problems(ii: dict) -> list[tuple[list[str], str]]:
    """(field path, why) of each bad field of an InventoryItemInput."""
    problems = []
    if ii.get("cost") is not None and money(ii["cost"]) is None:
        problems.append((["cost"], "Cost must be a number >= 0"))
    weight = (ii.get("measurement") or {}).get("weight")
    if weight is not None and weight["value"] < 0:
        problems.append((["measurement", "weight", "value"], "Weight can't be negative"))
    hs = ii.get("harmonizedSystemCode")
    if hs and not (hs.isdigit() and 6 <= len(hs) <= 13):
        problems.append((["harmonizedSystemCode"], "Harmonized system code must be 6 to 13 digits"))
    return problems


_ITEM_ATTRS = (
    "sku",
    "tracked",
    "requires_shipping",
    "unit_cost",
    "harmonized_system_code",
    "country_code_of_origin",
    "province_code_of_origin",
    "weight_value",
    "weight_unit",
)


def apply_item_input(item: InventoryItem, ii: dict) -> bool:
    """An InventoryItemInput onto an item (productSet, productVariantsBulkUpdate,
    inventoryItemUpdate: https://shopify.dev/docs/api/admin-graphql/2026-10/input-objects/InventoryItemInput);
    True if anything changed."""
    before = tuple(getattr(item, a) for a in _ITEM_ATTRS)
    if "sku" in ii:
        item.sku = ii["sku"]
    if ii.get("tracked") is not None:
        item.tracked = ii["tracked"]
    if ii.get("requiresShipping") is not None:
        item.requires_shipping = ii["requiresShipping"]
    if "cost" in ii:
        item.unit_cost = money(ii["cost"]) if ii["cost"] is not None else None
    for key, attr in (
        ("harmonizedSystemCode", "harmonized_system_code"),
        ("countryCodeOfOrigin", "country_code_of_origin"),
        ("provinceCodeOfOrigin", "province_code_of_origin"),
    ):
        if key in ii:
            setattr(item, attr, ii[key])
    weight = (ii.get("measurement") or {}).get("weight")
    if weight is not None:
        item.weight_value, item.weight_unit = float(weight["value"]), weight["unit"]
    if tuple(getattr(item, a) for a in _ITEM_ATTRS) != before:
        item.updated_at = now_iso()
        return True
    return False


def _variant_edit_error(vc: dict) -> str | None:
    """Why a merchant's variant edit can't be saved (None: it can)."""
    for key in ("price", "cost"):
        if vc.get(key) is not None and money(vc[key]) is None:
            return f"{key} must be a number >= 0"
    if "inventory_policy" in vc and str(vc["inventory_policy"]).upper() not in ("DENY", "CONTINUE"):
        return "inventory_policy must be deny or continue"
    if "weight_unit" in vc and vc["weight_unit"] not in ("GRAMS", "KILOGRAMS", "OUNCES", "POUNDS"):
        return "weight_unit must be GRAMS, KILOGRAMS, OUNCES or POUNDS"
    weight = vc.get("weight", 0)
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
        return "weight must be a number >= 0"
    return None


def merchant_metafields(store: StoreState, existing: list[Metafield], changes: list[dict]) -> list[Metafield]:
    """A merchant's metafield edits: set by namespace+key, or deleted when value is null."""
    out = list(existing)
    for mf in changes:
        ns, key = mf.get("namespace"), mf.get("key")
        old = next((m for m in out if m.namespace == ns and m.key == key), None)
        if mf.get("value") is None:
            if old is not None:
                out.remove(old)
            continue
        if old is not None:
            old.value, old.type = str(mf["value"]), str(mf.get("type") or old.type)
            old.updated_at = now_iso()
        else:
            out.append(
                Metafield(
                    store.next_id(),
                    str(ns),
                    str(key),
                    str(mf["value"]),
                    str(mf.get("type") or "single_line_text_field"),
                )
            )
    return out


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
    # Whether routing may assign online orders here (Location.fulfillsOnlineOrders).
    fulfills_online_orders: bool = True
    # address1, address2, city, province, province_code, country, country_code, zip, phone
    address: dict = field(default_factory=dict)
    deactivated_at: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class Publication:
    """A sales channel's publication, named by its catalog's title ("Online Store"): the
    2026-10 API deprecates Publication.name for Catalog.title
    (https://shopify.dev/docs/api/admin-graphql/2026-10/objects/Publication)."""

    id: int
    name: str
    catalog_id: int
    auto_publish: bool = False
    supports_future_publishing: bool = False
    created_at: str = field(default_factory=now_iso)
    TYPE_NAME = "Publication"


@dataclass(eq=False)
class Metafield:
    id: int
    namespace: str
    key: str
    value: str
    type: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def compare_digest(self) -> str:
        """metafieldsSet's compare-and-set token: a digest of the persisted value
        (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/metafieldsSet)."""
        return hashlib.sha256(f"{self.type}\0{self.value}".encode()).hexdigest()


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
    # The product's media (MediaImage ids in store.files), in gallery order.
    media_ids: list[int] = field(default_factory=list)
    # publication id -> publish date: the sales channels it is on. None when created by the API:
    # "The `productCreate` mutation creates products in an unpublished state by default"
    # (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/productCreate), productSet alike.
    publications: dict[int, str] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    # When it was published on the Online Store (Product.publishedAt); None while it is not.
    published_at: str | None = None


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
    unit_cost: str | None = None  # InventoryItem.unitCost, in the shop's currency
    harmonized_system_code: str | None = None
    country_code_of_origin: str | None = None
    province_code_of_origin: str | None = None
    weight_value: float = 0.0  # InventoryItem.measurement.weight
    weight_unit: str = "KILOGRAMS"
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
    # "The created collection is unpublished by default"
    # (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/collectionCreate)
    publications: dict[int, str] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    published_at: str | None = None
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
        self.orders: dict[int, Any] = {}  # orders.Order
        # Everything else of the order side and the media that has a global id of its own:
        # fulfillment orders, refunds, returns, MediaImages... (id -> object; see orders.py, media.py)
        self.objects: dict[int, Any] = {}
        # Media files of the store (the Files page), MediaImage id -> media.MediaImage.
        self.files: dict[int, Any] = {}
        # Media processing: (UPLOADED, PROCESSING) durations in wall seconds when set by the
        # control API; otherwise Shopify-like seconds shrunk by the emulator's time scale.
        self.media_timing: tuple[float, float] | None = None
        self.media_faults: Any = None  # media.MediaFaults
        # Levels at deactivated locations, kept aside (InventoryLevel.isActive false).
        self.inactive_levels: dict[tuple[int, int], InventoryLevel] = {}
        self.publications: dict[int, Publication] = {}
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
        # The sales channels every store has at first (their catalogs' titles, as the admin
        # names them).
        for name in DEFAULT_PUBLICATIONS:
            self.add_publication(name)

    def next_order_number(self) -> int:
        return next(self._order_numbers)

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
        """Active locations in the store's fulfillment priority order: the order they were added
        in ("After you create a location, it's added to the bottom of your fulfillment priority
        list", https://help.shopify.com/en/manual/locations/setting-up-your-locations)."""
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

    def add_location(
        self, name: str, *, address: dict | None = None, fulfills_online_orders: bool = True
    ) -> Location:
        loc = Location(
            id=self.next_id(),
            name=name,
            address=dict(address or {}),
            fulfills_online_orders=fulfills_online_orders,
        )
        self.locations[loc.id] = loc
        for item in self.items.values():
            self.ensure_level(item.id, loc.id)
        return loc

    def location_event(self, topic: str, loc: Location) -> Event:
        from storesync.emulator import payloads

        return Event(topic, payloads.location(self, loc))

    def deactivate_location(self, location_id: int, destination_id: int | None = None) -> list[Event]:
        """A merchant deactivating a location (Settings > Locations). Shopify refuses while
        orders wait to be fulfilled there (HAS_FULFILLMENT_ORDERS_ERROR) or while it holds
        stock and no destination is named (HAS_ACTIVE_INVENTORY_ERROR); with a destination, the
        stock moves there ("Deactivates a location and moves inventory, pending orders, and
        moving transfers to a destination location",
        https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/locationDeactivate). The
        location's levels then become inactive (InventoryLevel.isActive false: read only with
        includeInactive)."""
        loc = self.locations.get(location_id)
        if loc is None:
            raise ActionError(f"no location {location_id} in {self.shop}")
        if not loc.is_active:
            raise ActionError(f"location {loc.name!r} is already inactive")
        dest = None
        if destination_id is not None:
            dest = self.locations.get(destination_id)
            if dest is None or not dest.is_active:
                raise ActionError(
                    "DESTINATION_LOCATION_NOT_FOUND_OR_INACTIVE: destination is not an active location"
                )
            if dest is loc:
                raise ActionError("DESTINATION_LOCATION_IS_THE_SAME_LOCATION")
        if loc.fulfills_online_orders and not any(
            other.fulfills_online_orders for other in self.active_locations() if other is not loc
        ):
            raise ActionError(
                "CANNOT_DISABLE_ONLINE_ORDER_FULFILLMENT: at least one location must fulfill online orders"
            )
        waiting = [
            fo
            for fo in self.objects.values()
            if getattr(fo, "TYPE_NAME", "") == "FulfillmentOrder"
            and fo.location_id == loc.id
            and fo.status in ("OPEN", "IN_PROGRESS")
        ]
        if waiting and dest is None:
            raise ActionError("HAS_FULFILLMENT_ORDERS_ERROR: the location has orders waiting to be fulfilled")
        for fo in waiting:  # pending orders move with the stock (their committed units too)
            fo.location_id = dest.id  # type: ignore[union-attr]
        levels = self.location_levels(loc.id)
        if dest is None and any(lvl.quantities["on_hand"] or lvl.quantities["incoming"] for lvl in levels):
            raise ActionError(
                "HAS_ACTIVE_INVENTORY_ERROR: the location holds stock; name a destination_location_id"
            )
        moved: list[InventoryLevel] = []
        for lvl in levels:
            if dest is not None and any(lvl.quantities.values()):
                target = self.ensure_level(lvl.item_id, dest.id)
                for name in QUANTITY_NAMES:
                    target.quantities[name] += lvl.quantities[name]
                target.updated_at = now_iso()
                moved.append(target)
            lvl.quantities = dict.fromkeys(QUANTITY_NAMES, 0)
            lvl.updated_at = now_iso()
            del self.levels[(lvl.item_id, lvl.location_id)]
            self.levels_by_item[lvl.item_id].remove(lvl)
            self.inactive_levels[(lvl.item_id, lvl.location_id)] = lvl
        loc.is_active = False
        loc.deactivated_at = loc.updated_at = now_iso()
        return [self.location_event("locations/deactivate", loc), *self.inventory_events(moved)]

    def activate_location(self, location_id: int) -> list[Event]:
        """A deactivated location made active again; its levels come back, empty."""
        loc = self.locations.get(location_id)
        if loc is None:
            raise ActionError(f"no location {location_id} in {self.shop}")
        if loc.is_active:
            raise ActionError(f"location {loc.name!r} is already active")
        for key, lvl in list(self.inactive_levels.items()):
            if key[1] == loc.id and lvl.item_id in self.items:
                del self.inactive_levels[key]
                self.levels[key] = lvl
                self.levels_by_item.setdefault(lvl.item_id, []).append(lvl)
        loc.is_active = True
        loc.deactivated_at = None
        loc.updated_at = now_iso()
        return [self.location_event("locations/activate", loc)]

    # ------------------------------------------------------------------ sales channels

    def add_publication(self, name: str) -> Publication:
        pub = Publication(
            id=self.next_id(),
            name=name,
            catalog_id=self.next_id(),
            # Only online store channels support scheduled publishing
            # (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/publishablePublish).
            supports_future_publishing=name == ONLINE_STORE,
        )
        self.publications[pub.id] = pub
        return pub

    def publish(
        self, resource: Product | Collection, publication_ids: list[int], when: str | None = None
    ) -> bool:
        """Put a product or collection on channels; True if anything changed."""
        changed = False
        for pid in publication_ids:
            if pid not in resource.publications:
                resource.publications[pid] = when or now_iso()
                changed = True
        self._sync_published_at(resource)
        return changed

    def unpublish(self, resource: Product | Collection, publication_ids: list[int]) -> bool:
        changed = False
        for pid in publication_ids:
            if resource.publications.pop(pid, None) is not None:
                changed = True
        self._sync_published_at(resource)
        return changed

    def _sync_published_at(self, resource: Product | Collection) -> None:
        """publishedAt is the Online Store publication's date (null while not published there)."""
        online = next((p.id for p in self.publications.values() if p.name == ONLINE_STORE), None)
        resource.published_at = resource.publications.get(online) if online is not None else None

    def publish_everywhere(self, resource: Product | Collection) -> None:
        """What the admin does with a product a merchant creates: it is on the store's channels."""
        self.publish(resource, list(self.publications), resource.created_at)

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
        for key in [k for k in self.inactive_levels if k[0] == variant.inventory_item_id]:
            del self.inactive_levels[key]

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
            self.publish_everywhere(product)
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
            self.publish_everywhere(product)
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
                per_location: dict[int, Any] = (
                    {parse_gid(k, "Location") or 0: n for k, n in avail.items()}
                    if isinstance(avail, dict)
                    else {loc.id: avail for loc in self.active_locations()}
                )
                for lid, n in per_location.items():
                    self.set_quantity(self.ensure_level(variant.inventory_item_id, lid), "available", int(n))
            created.append(gid("Product", product.id))
        return created

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
        handle, `metafields` ([{namespace, key, value, type}]: set; value null: deleted),
        `media` ([{"src", "alt"}]: appended, or [{"id", "alt"}] kept; the list is the gallery),
        and per variant (`variants: [{id, ...}]`) price, compare_at_price, sku, barcode,
        inventory_policy, taxable, metafields and the inventory item's tracked, requires_shipping,
        cost, harmonized_system_code, country_code_of_origin, weight, weight_unit."""
        from storesync.emulator import media, payloads

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
        editable = sorted([*simple, "tags", "status", "variants", "metafields", "media"])
        unknown = [k for k in changes if k not in simple and k not in editable]
        if unknown:
            raise ActionError(f"cannot edit {unknown[0]!r} (editable: {editable})")
        if "status" in changes and str(changes["status"]).upper() not in ("ACTIVE", "ARCHIVED", "DRAFT"):
            raise ActionError("status must be active, archived or draft")
        targets: list[tuple[Variant, dict]] = []
        for vc in changes.get("variants") or []:
            vid = parse_gid(vc.get("id"), "ProductVariant") or vc.get("id")
            variant = self.variants.get(vid)
            if variant is None or variant.product_id != product.id:
                raise ActionError(f"variant {vc.get('id')!r} is not a variant of product {product_id}")
            targets.append((variant, vc))
        for _variant, vc in targets:
            why = _variant_edit_error(vc)
            if why:
                raise ActionError(f"variant {vc.get('id')!r}: {why}")
        for mf in [
            *(changes.get("metafields") or []),
            *(m for _v, vc in targets for m in vc.get("metafields") or []),
        ]:
            if mf.get("value") is not None:
                why = metafield_value_error(str(mf.get("type") or "single_line_text_field"), str(mf["value"]))
                if why:
                    raise ActionError(f"metafield {mf.get('namespace')}.{mf.get('key')}: {why}")
        events: list[Event] = []
        for key, value in changes.items():
            if key in simple:
                setattr(product, simple[key], value)
            elif key == "tags":
                product.tags = (
                    [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value)
                )
            elif key == "status":
                product.status = str(value).upper()
            elif key == "metafields":
                product.metafields = merchant_metafields(self, product.metafields, value)
            elif key == "media":
                product.media_ids = media.merchant_gallery(self, product, value)
        for variant, vc in targets:
            item = self.items[variant.inventory_item_id]
            item_changed = False
            for vk, vv in vc.items():
                if vk == "price":
                    variant.price = money(vv) or variant.price
                elif vk == "compare_at_price":
                    variant.compare_at_price = money(vv) if vv is not None else None
                elif vk == "sku":
                    item.sku = vv
                    item_changed = True
                elif vk == "barcode":
                    variant.barcode = vv
                elif vk == "inventory_policy":
                    variant.inventory_policy = str(vv).upper()
                elif vk == "taxable":
                    variant.taxable = bool(vv)
                elif vk == "metafields":
                    variant.metafields = merchant_metafields(self, variant.metafields, vv)
                elif vk in ITEM_FIELDS:
                    setattr(item, ITEM_FIELDS[vk], money(vv) if vk == "cost" and vv is not None else vv)
                    item_changed = True
            variant.updated_at = now_iso()
            if item_changed:
                item.updated_at = now_iso()
                events.append(Event("inventory_items/update", payloads.inventory_item(self, item)))
        product.updated_at = now_iso()
        return [self.product_event("products/update", product), *events]

    def snapshot(self) -> dict:
        """The store's whole state as plain JSON, for tests and the demo."""
        from storesync.emulator import payloads

        def metafields(owner) -> list[dict]:
            return [
                {"namespace": m.namespace, "key": m.key, "value": m.value, "type": m.type}
                for m in owner.metafields
            ]

        def channels(resource) -> list[str]:
            return sorted(self.publications[p].name for p in resource.publications if p in self.publications)

        return {
            "shop": self.shop,
            "plan": self.plan,
            "locations": [
                {
                    "id": gid("Location", loc.id),
                    "name": loc.name,
                    "is_active": loc.is_active,
                    "fulfills_online_orders": loc.fulfills_online_orders,
                }
                for loc in self.locations.values()
            ],
            "publications": [
                {"id": gid("Publication", pub.id), "name": pub.name} for pub in self.publications.values()
            ],
            "products": [
                payloads.product(self, p)
                | {
                    "metafields": metafields(p),
                    "variant_metafields": {
                        gid("ProductVariant", v.id): metafields(v) for v in self.product_variants(p)
                    },
                    "inventory_items": {
                        gid("ProductVariant", v.id): payloads.inventory_item(
                            self, self.items[v.inventory_item_id]
                        )
                        for v in self.product_variants(p)
                    },
                    "collections": [gid("Collection", c.id) for c in self.product_collections(p.id)],
                    "channels": channels(p),
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
                | {
                    "products": [gid("Product", p) for p in self.collection_members(c)],
                    "channels": channels(c),
                }
                for c in self.collections.values()
            ],
            # Each order as its webhooks show it, with its returns and where each returned unit
            # went (the reverse fulfillment orders' dispositions): the stores' own record of
            # what was sold and restocked, which tests and bench/chaos count stock by.
            "orders": [
                payloads.order(self, o)
                | {
                    "returns": [
                        {
                            "id": gid("Return", r.id),
                            "status": r.status.lower(),
                            "lines": [
                                {
                                    "line_item_id": rl.line_item_id,
                                    "quantity": rl.quantity,
                                    "dispositions": [
                                        {
                                            "type": d.type,
                                            "quantity": d.quantity,
                                            "location_id": gid("Location", d.location_id)
                                            if d.location_id
                                            else None,
                                        }
                                        for d in rl.dispositions
                                    ],
                                }
                                for rl in r.lines
                            ],
                        }
                        for r in o.returns
                    ]
                }
                for o in self.orders.values()
            ],
        }


class Emulator:
    """All stores of one emulator process."""

    def __init__(self, time_scale: float = 1.0) -> None:
        # Shrinks Shopify's own durations (media processing) like the webhook sender's.
        self.time_scale = time_scale
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
