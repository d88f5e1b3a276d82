"""Access scopes, enforced per store as Shopify enforces them.

The requirements are Shopify's own, as published with the 2026-10 schema (`offline_scopes` of
@shopify/dev-mcp's schema data, see /work/shared/shopify/README.md; the contract test
tests/emulator/test_scopes_contract.py checks this table against it for every type and field
the emulator serves). A requirement lists scopes of which any one suffices; write_X implies
read_X (https://shopify.dev/docs/api/admin-graphql/latest/mutations/appDowngradeAccessScopes).

A field the app may not read or a mutation it may not run is refused as Shopify refuses it:
the field resolves to null with an error
  {"message": "Access denied for inventorySetQuantities field. Required access: `write_inventory`
   access scope.", "path": [...], "extensions": {"code": "ACCESS_DENIED", "documentation":
   "https://shopify.dev/api/usage/access-scopes", "requiredAccess": "`write_inventory` access scope."}}
(https://shopify.dev/changelog/new-error-messages-for-graphql-operations-without-necessary-access-scopes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, get_named_type

# Objects of these types need one of the scopes, wherever a field returns them.
TYPE_ACCESS: dict[str, frozenset[str]] = {
    "Product": frozenset({"read_products"}),
    "ProductVariant": frozenset({"read_products"}),
    "ProductOption": frozenset({"read_products"}),
    "ProductOptionValue": frozenset({"read_products"}),
    "ProductSetOperation": frozenset({"read_products"}),
    "ProductVariantsBulkUpdateUserError": frozenset({"read_products"}),
    "Collection": frozenset({"read_products"}),
    "CollectionRuleSet": frozenset({"read_products"}),
    "CollectionRule": frozenset({"read_products"}),
    "CollectionSource": frozenset({"read_products"}),
    "CollectionConditionsSource": frozenset({"read_products"}),
    "CollectionSourceInclusion": frozenset({"read_products"}),
    "CollectionInclusionProductSelection": frozenset({"read_products"}),
    "CollectionSourceInclusionCondition": frozenset({"read_products"}),
    **{
        f"CollectionSourceInclusionCondition{kind}": frozenset({"read_products"})
        for kind in (
            "ProductTag",
            "ProductTitle",
            "ProductType",
            "ProductVendor",
            "VariantTitle",
            "VariantPrice",
            "VariantCompareAtPrice",
            "VariantInventory",
        )
    },
    "InventoryItem": frozenset({"read_inventory", "read_products"}),
    "InventoryLevel": frozenset({"read_inventory"}),
    "InventoryQuantity": frozenset({"read_inventory"}),
    "InventoryAdjustmentGroup": frozenset({"read_inventory"}),
    "InventoryChange": frozenset({"read_inventory"}),
    "Location": frozenset({"read_locations", "read_inventory", "read_markets_home"}),
    # orders and their fulfillment, refunds and returns; media; sales channels
    "AppCatalog": frozenset({"read_product_listings", "read_products"}),
    "File": frozenset(
        {
            "read_draft_orders",
            "read_files",
            "read_images",
            "read_orders",
            "read_products",
            "read_quick_sale",
            "read_themes",
        }
    ),
    "FileError": frozenset({"read_files", "read_images", "read_themes"}),
    "FilesUserError": frozenset({"read_files", "read_images", "read_themes"}),
    "FulfillmentLineItem": frozenset({"read_marketplace_orders", "read_orders"}),
    "FulfillmentOrder": frozenset(
        {
            "read_assigned_fulfillment_orders",
            "read_marketplace_fulfillment_orders",
            "read_merchant_managed_fulfillment_orders",
            "read_third_party_fulfillment_orders",
        }
    ),
    "FulfillmentOrderAssignedLocation": frozenset(
        {
            "read_assigned_fulfillment_orders",
            "read_marketplace_fulfillment_orders",
            "read_merchant_managed_fulfillment_orders",
            "read_third_party_fulfillment_orders",
        }
    ),
    "FulfillmentOrderLineItem": frozenset(
        {
            "read_assigned_fulfillment_orders",
            "read_merchant_managed_fulfillment_orders",
            "read_third_party_fulfillment_orders",
        }
    ),
    "InventoryItemMeasurement": frozenset({"read_inventory", "read_products"}),
    "LineItem": frozenset({"read_marketplace_orders", "read_orders"}),
    "Media": frozenset(
        {
            "read_draft_orders",
            "read_files",
            "read_images",
            "read_orders",
            "read_products",
            "read_quick_sale",
            "read_themes",
        }
    ),
    "MediaError": frozenset({"read_files", "read_products"}),
    "MediaImage": frozenset(
        {
            "read_draft_orders",
            "read_files",
            "read_images",
            "read_orders",
            "read_products",
            "read_quick_sale",
            "read_themes",
        }
    ),
    "MediaImageOriginalSource": frozenset(
        {
            "read_draft_orders",
            "read_files",
            "read_images",
            "read_orders",
            "read_products",
            "read_quick_sale",
            "read_themes",
        }
    ),
    "MediaPreviewImage": frozenset({"read_files", "read_images", "read_products"}),
    "MediaWarning": frozenset({"read_files", "read_products"}),
    "Order": frozenset({"read_marketplace_orders", "read_orders", "read_quick_sale"}),
    "Refund": frozenset({"read_marketplace_orders", "read_orders"}),
    "RefundLineItem": frozenset({"read_marketplace_orders", "read_orders"}),
    "Return": frozenset({"read_marketplace_returns", "read_returns"}),
    "ReturnLineItem": frozenset({"read_marketplace_returns", "read_returns"}),
    "ReturnLineItemType": frozenset({"read_marketplace_returns", "read_returns"}),
    "ReverseFulfillmentOrder": frozenset({"read_marketplace_returns", "read_returns"}),
    "ReverseFulfillmentOrderDisposition": frozenset({"read_marketplace_returns", "read_returns"}),
    "ReverseFulfillmentOrderLineItem": frozenset({"read_marketplace_returns", "read_returns"}),
}

# Fields that need one of the scopes themselves (mutations: their write scope).
FIELD_ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("QueryRoot", "productByIdentifier"): frozenset({"read_products"}),
    ("QueryRoot", "productsCount"): frozenset({"read_products"}),
    ("Mutation", "productSet"): frozenset({"write_products"}),
    ("Mutation", "productDelete"): frozenset({"write_products"}),
    ("Mutation", "productVariantsBulkUpdate"): frozenset({"write_products"}),
    ("Mutation", "collectionCreate"): frozenset({"write_products"}),
    ("Mutation", "collectionUpdate"): frozenset({"write_products"}),
    ("Mutation", "collectionDelete"): frozenset({"write_products"}),
    ("Mutation", "collectionAddProducts"): frozenset({"write_products"}),
    ("Mutation", "collectionRemoveProducts"): frozenset({"write_products"}),
    ("Mutation", "inventorySetQuantities"): frozenset({"write_inventory"}),
    ("Mutation", "inventoryAdjustQuantities"): frozenset({"write_inventory"}),
    ("InventoryItem", "inventoryLevel"): frozenset({"read_inventory"}),
    ("InventoryItem", "inventoryLevels"): frozenset({"read_inventory"}),
    ("Location", "id"): frozenset({"read_locations", "read_inventory", "read_markets_home"}),
    ("Location", "name"): frozenset({"read_locations", "read_markets_home"}),
    ("Location", "isActive"): frozenset({"read_locations"}),
    ("Location", "fulfillsOnlineOrders"): frozenset({"read_locations"}),
    ("Location", "shipsInventory"): frozenset({"read_locations"}),
    ("Location", "createdAt"): frozenset({"read_locations"}),
    ("Location", "updatedAt"): frozenset({"read_locations"}),
    ("Location", "inventoryLevel"): frozenset({"read_locations"}),
    ("Location", "inventoryLevels"): frozenset({"read_locations"}),
    # locations, media and files, inventory activation, sales channels
    ("Collection", "resourcePublicationsCount"): frozenset({"read_publications"}),
    ("Collection", "resourcePublicationsV2"): frozenset({"read_publications"}),
    ("Collection", "unpublishedPublications"): frozenset({"read_publications"}),
    ("Location", "activatable"): frozenset({"read_locations"}),
    ("Location", "address"): frozenset({"read_locations"}),
    ("Location", "deactivatable"): frozenset({"read_locations"}),
    ("Location", "deactivatedAt"): frozenset({"read_locations"}),
    ("Location", "hasActiveInventory"): frozenset({"read_locations"}),
    ("Location", "isFulfillmentService"): frozenset({"read_locations"}),
    ("Mutation", "fileCreate"): frozenset({"write_files", "write_images", "write_themes"}),
    ("Mutation", "fileDelete"): frozenset({"write_files"}),
    ("Mutation", "fileUpdate"): frozenset({"write_files", "write_themes"}),
    ("Mutation", "inventoryActivate"): frozenset({"write_inventory"}),
    ("Mutation", "inventoryDeactivate"): frozenset({"write_inventory"}),
    ("Mutation", "inventoryItemUpdate"): frozenset({"write_inventory"}),
    ("Mutation", "productReorderMedia"): frozenset({"write_products"}),
    ("Mutation", "publishablePublish"): frozenset({"write_publications"}),
    ("Mutation", "publishableUnpublish"): frozenset({"write_publications"}),
    ("Product", "resourcePublicationsCount"): frozenset({"read_publications"}),
    ("Product", "resourcePublicationsV2"): frozenset({"read_publications"}),
    ("Product", "unpublishedPublications"): frozenset({"read_publications"}),
    ("Publishable", "resourcePublicationsCount"): frozenset({"read_publications"}),
    ("Publishable", "resourcePublicationsV2"): frozenset({"read_publications"}),
    ("Publishable", "unpublishedPublications"): frozenset({"read_publications"}),
    ("QueryRoot", "files"): frozenset({"read_files", "read_images", "read_themes"}),
    ("QueryRoot", "publications"): frozenset({"read_publications"}),
    ("QueryRoot", "return"): frozenset({"read_marketplace_returns", "read_returns"}),
}

_REQUIREMENTS = frozenset((*TYPE_ACCESS.values(), *FIELD_ACCESS.values()))


def _required(options: frozenset[str]) -> str:
    named = [f"`{s}` access scope" for s in sorted(options)]
    return (", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else named[0]) + "."


def access_denied(field_name: str, options: frozenset[str]) -> GraphQLError:
    required = _required(options)
    return GraphQLError(
        f"Access denied for {field_name} field. Required access: {required}",
        extensions={
            "code": "ACCESS_DENIED",
            "documentation": "https://shopify.dev/api/usage/access-scopes",
            "requiredAccess": required,
        },
    )


def needs_guard(granted: frozenset[str]) -> bool:
    """Whether any requirement could fail for an installation with these (implied) scopes."""
    return any(not options & granted for options in _REQUIREMENTS)


def scope_guard(granted: frozenset[str]) -> Callable[..., Any]:
    """A graphql-core middleware refusing fields the installation may not access."""

    def guard(next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        own = FIELD_ACCESS.get((info.parent_type.name, info.field_name))
        if own is not None and not own & granted:
            raise access_denied(info.field_name, own)
        of_type = TYPE_ACCESS.get(get_named_type(info.return_type).name)
        if of_type is not None and not of_type & granted:
            raise access_denied(info.field_name, of_type)
        return next_(root, info, **args)

    return guard
