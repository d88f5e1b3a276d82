"""Plain value types of the sync domain. Ids are Shopify gids (strings); money is Decimal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

Role = Literal["parent", "child"]


@dataclass(frozen=True)
class StoreRef:
    shop: str
    role: Role
    merchant_id: str


@dataclass(frozen=True)
class Metafield:
    namespace: str
    key: str
    type: str
    value: str
    id: str | None = None


@dataclass(frozen=True)
class Option:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    source: str  # the original URL; equal sources are the same image across stores
    alt: str = ""


@dataclass(frozen=True)
class Media:
    """One media of a product, in the product's order. `source`: the URL its image is served
    from (None until it is READY); `status`: Shopify's MediaStatus (UPLOADED, PROCESSING, READY,
    FAILED); `kind`: its MediaContentType (only IMAGE is copied)."""

    id: str
    source: str | None
    alt: str = ""
    status: str = "READY"
    kind: str = "IMAGE"

    @property
    def copyable(self) -> bool:
        return self.kind == "IMAGE" and self.status == "READY" and bool(self.source)


@dataclass(frozen=True)
class VariantDetails:
    """A variant's selling and shipping fields and its inventory item's (Admin API 2026-10:
    ProductVariant.inventoryPolicy / taxable, InventoryItem tracked / requiresShipping / unitCost /
    harmonizedSystemCode / countryCodeOfOrigin / measurement.weight). None: not read."""

    inventory_policy: str | None = None  # DENY | CONTINUE
    taxable: bool | None = None
    tracked: bool | None = None
    requires_shipping: bool | None = None
    cost: Decimal | None = None
    hs_code: str | None = None
    country_of_origin: str | None = None
    weight: tuple[str, str] | None = None  # (value as text, WeightUnit)


def gid(kind: str, value: Any) -> str:
    """A Shopify global id from a webhook's numeric id (`gid://shopify/<kind>/<id>`), or the
    value itself when it is one already. Missing -> ValueError."""
    if isinstance(value, str) and value.startswith("gid://"):
        return value
    if value is None or str(value).strip() == "":
        raise ValueError(f"missing {kind} id")
    return f"gid://shopify/{kind}/{value}"


@dataclass(frozen=True)
class Variant:
    id: str | None
    option_values: tuple[tuple[str, str], ...]  # (option name, value), in option order
    price: Decimal
    sku: str | None = None
    barcode: str | None = None
    compare_at_price: Decimal | None = None
    inventory_item_id: str | None = None
    metafields: tuple[Metafield, ...] = ()
    details: VariantDetails | None = None  # None: not read (a webhook's variants)
    # Its total sellable quantity as read (`inventoryQuantity`): what a products/update payload
    # shows as `inventory_quantity`. None: not read. Never written.
    inventory_quantity: int | None = None

    @property
    def option_key(self) -> tuple[tuple[str, str], ...]:
        """Identity of a variant inside its product: its option values (Shopify keeps them unique)."""
        return tuple(sorted(self.option_values))


@dataclass(frozen=True)
class Product:
    id: str | None
    handle: str
    title: str
    description_html: str = ""
    vendor: str = ""
    product_type: str = ""
    tags: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    variants: tuple[Variant, ...] = ()
    media: tuple[Media, ...] = ()
    status: str = "ACTIVE"
    seo_title: str | None = None
    seo_description: str | None = None
    collections: tuple[str, ...] = ()  # collection gids in this product's store
    # Those of `collections` that are smart (rule-based): membership follows their rules, so a
    # productSet must not list them (Shopify refuses manual members in a smart collection).
    smart_collections: frozenset[str] = frozenset()
    metafields: tuple[Metafield, ...] = ()
    updated_at: datetime | None = None
    created_at: datetime | None = None

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)


@dataclass(frozen=True)
class CollectionCondition:
    """One condition of a smart collection's source (Admin API 2026-10), e.g. productTag
    TAGGED_WITH ("sale",). `kind` is the input field naming it (productTag, productTitle,
    variantPrice, ...); `values` its values as text (a money or number condition has one, the
    amount, with `currency` for money); `match_type` ANY/ALL over the values, None for the kinds
    that have one value."""

    kind: str
    relation: str
    values: tuple[str, ...] = ()
    match_type: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Collection:
    """A collection's own fields. `conditions` is None for a manual collection (members listed
    one by one); a smart one has its conditions and `disjunctive` (any condition vs all).
    `source_id`: the store's id of the source carrying the conditions (a rewrite replaces it).
    `product_ids`: the members, when read with them (None: not read)."""

    id: str | None
    handle: str
    title: str = ""
    description_html: str = ""
    sort_order: str = "MANUAL"
    seo_title: str | None = None
    seo_description: str | None = None
    image: Image | None = None
    conditions: tuple[CollectionCondition, ...] | None = None
    disjunctive: bool = False
    product_ids: tuple[str, ...] | None = None
    source_id: str | None = None


@dataclass(frozen=True)
class InventoryLevel:
    inventory_item_id: str
    location_id: str
    available: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class WriteRecord:
    """One inventory write the engine made (or is about to make): the basis of echo suppression."""

    shop: str
    inventory_item_id: str
    location_id: str
    quantity: int  # the level the write leaves behind
    written_at: datetime
    cause: str


class LinkKind(StrEnum):
    PRODUCT = "product"
    VARIANT = "variant"
    COLLECTION = "collection"
    # A parent product's media and the child media copied from it (`synced_view`: the source
    # and alt written, and the uploads made of it: a FAILED one is uploaded again, a bounded
    # number of times).
    MEDIA = "media"


class MatchedBy(StrEnum):
    SKU = "sku"
    BARCODE = "barcode"
    HANDLE = "handle"
    CREATED = "created"  # the engine created the child object from the parent's


@dataclass(frozen=True)
class Link:
    """A parent object and its counterpart in one child store.

    Variant links also carry both inventory items: sales map child variant -> parent item,
    fan-out maps parent item -> child item. `synced_view` (product and collection links) is the
    view of the synced fields the engine last wrote (`catalog.expected_view`,
    `collections.collection_view`), which tells a child edit from a parent change.
    """

    kind: LinkKind
    child_shop: str
    parent_id: str
    child_id: str
    matched_by: MatchedBy
    parent_product_id: str | None = None  # variant links: the products they belong to
    child_product_id: str | None = None
    parent_inventory_item_id: str | None = None
    child_inventory_item_id: str | None = None
    synced_view: dict[str, Any] | None = None  # product and collection links; JSON
    # Product links of a copy whose variants are not linked yet (`copies.pending_copy`); JSON.
    pending: dict[str, Any] | None = None


@dataclass
class LinkMap:
    """The links of one child store, indexed both ways."""

    child_shop: str
    links: list[Link] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._down: dict[tuple[LinkKind, str], Link] = {}
        self._up: dict[tuple[LinkKind, str], Link] = {}
        self._item_down: dict[str, Link] = {}
        self._item_up: dict[str, Link] = {}
        self._media_of: dict[str, list[Link]] = {}  # parent product id -> its media links
        for link in list(self.links):
            self._index(link)

    def _index(self, link: Link) -> None:
        if link.child_shop != self.child_shop:
            raise ValueError(f"link for {link.child_shop} in the link map of {self.child_shop}")
        self._down[(link.kind, link.parent_id)] = link
        self._up[(link.kind, link.child_id)] = link
        if link.kind is LinkKind.VARIANT:
            if link.parent_inventory_item_id:
                self._item_down[link.parent_inventory_item_id] = link
            if link.child_inventory_item_id:
                self._item_up[link.child_inventory_item_id] = link
        if link.kind is LinkKind.MEDIA and link.parent_product_id:
            self._media_of.setdefault(link.parent_product_id, []).append(link)

    def add(self, link: Link) -> None:
        self.links.append(link)
        self._index(link)

    def child_id(self, kind: LinkKind, parent_id: str) -> str | None:
        link = self._down.get((kind, parent_id))
        return link.child_id if link else None

    def parent_id(self, kind: LinkKind, child_id: str) -> str | None:
        link = self._up.get((kind, child_id))
        return link.parent_id if link else None

    def link_down(self, kind: LinkKind, parent_id: str) -> Link | None:
        return self._down.get((kind, parent_id))

    def link_up(self, kind: LinkKind, child_id: str) -> Link | None:
        return self._up.get((kind, child_id))

    def media_links_of(self, parent_product_id: str) -> list[Link]:
        """The media links of one parent product (a lookup: reconciling a 10,000-product child
        scanned every link of the child for each product)."""
        return list(self._media_of.get(parent_product_id, ()))

    def child_item(self, parent_item_id: str) -> str | None:
        link = self._item_down.get(parent_item_id)
        return link.child_inventory_item_id if link else None

    def parent_item(self, child_item_id: str) -> str | None:
        link = self._item_up.get(child_item_id)
        return link.parent_inventory_item_id if link else None

    def parent_item_for_child_variant(self, child_variant_id: str) -> str | None:
        link = self._up.get((LinkKind.VARIANT, child_variant_id))
        return link.parent_inventory_item_id if link else None
