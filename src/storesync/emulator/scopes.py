"""Access scopes the emulator's newer root fields need: any one of the scopes listed grants the
field. Taken from Shopify's own 2026-10 reference data (`offline_scopes` of
/work/shared/shopify/admin_schema_2026-10.json.gz, the "Requires ... access scope" line of each
page of https://shopify.dev/docs/api/admin-graphql/2026-10); where Shopify names the scope on
the returned type rather than the field (order, return, fulfillmentOrder), the type's is used.

Per-store scope enforcement reads this table (with the older fields' requirements).
metafieldsSet / metafieldsDelete need the owner's write scope (write_products for the
product, variant and collection metafields the emulator serves), which depends on the input,
so they are listed with that scope.
"""

from __future__ import annotations

ROOT_FIELD_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    # sales channels
    ("QueryRoot", "publications"): ("read_publications",),
    ("QueryRoot", "publication"): ("read_publications",),
    ("Mutation", "publishablePublish"): ("write_publications",),
    ("Mutation", "publishableUnpublish"): ("write_publications",),
    # metafields of products, variants and collections
    ("Mutation", "metafieldsSet"): ("write_products",),
    ("Mutation", "metafieldsDelete"): ("write_products",),
    # media and files
    ("QueryRoot", "files"): ("read_files", "read_themes", "read_images"),
    ("Mutation", "fileCreate"): ("write_files", "write_themes", "write_images"),
    ("Mutation", "fileUpdate"): ("write_files", "write_themes"),
    ("Mutation", "fileDelete"): ("write_files",),
    ("Mutation", "productReorderMedia"): ("write_products",),
    # inventory items and levels
    ("Mutation", "inventoryItemUpdate"): ("write_inventory",),
    ("Mutation", "inventoryActivate"): ("write_inventory",),
    ("Mutation", "inventoryDeactivate"): ("write_inventory",),
    # orders and what hangs off them
    ("QueryRoot", "order"): ("read_orders", "read_marketplace_orders"),
    ("QueryRoot", "orders"): ("read_orders", "read_marketplace_orders"),
    ("QueryRoot", "fulfillmentOrder"): (
        "read_merchant_managed_fulfillment_orders",
        "read_assigned_fulfillment_orders",
        "read_third_party_fulfillment_orders",
        "read_marketplace_fulfillment_orders",
    ),
    ("QueryRoot", "return"): ("read_returns", "read_marketplace_returns"),
}
