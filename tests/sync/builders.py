"""Small builders for sync-domain tests: products, variants, a network of one parent and children."""

from __future__ import annotations

from decimal import Decimal

from storesync.config import NetworkConfig
from storesync.sync.domain.model import Metafield, Option, Product, Variant
from storesync.sync.domain.network import MerchantNetwork

PARENT = "parent.myshopify.com"
CHILD_A = "child-a.myshopify.com"
CHILD_B = "child-b.myshopify.com"
CHILD_C = "child-c.myshopify.com"
P_LOC1, P_LOC2 = "gid://shopify/Location/1", "gid://shopify/Location/2"
A_LOC1, A_LOC2 = "gid://shopify/Location/11", "gid://shopify/Location/12"
B_LOC1 = "gid://shopify/Location/21"
C_LOC1 = "gid://shopify/Location/31"


def network_config() -> NetworkConfig:
    def store(shop: str, locations: dict[str, str] | None = None) -> dict:
        return {
            "shop": shop,
            "admin_api_url": f"http://127.0.0.1:1/stores/{shop}/admin/api/2026-10/graphql.json",
            "access_token": "t",
            "webhook_secrets": ["s"],
            "location_map": locations or {},
        }

    return NetworkConfig.model_validate(
        {
            "merchants": [
                {
                    "id": "acme",
                    "parent": store(PARENT),
                    "children": [
                        store(CHILD_A, {P_LOC1: A_LOC1, P_LOC2: A_LOC2}),
                        store(CHILD_B, {P_LOC1: B_LOC1}),
                        store(CHILD_C, {P_LOC1: C_LOC1}),
                    ],
                }
            ]
        }
    )


def merchant() -> MerchantNetwork:
    return MerchantNetwork.from_config(network_config().merchants[0])


def variant(
    sku: str | None,
    *opts: tuple[str, str],
    price: str = "10.00",
    barcode: str | None = None,
    id: str | None = None,
    metafields: tuple[Metafield, ...] = (),
) -> Variant:
    return Variant(
        id=id,
        option_values=tuple(opts),
        price=Decimal(price),
        sku=sku,
        barcode=barcode,
        metafields=metafields,
    )


def tee(handle: str = "tee", skus: tuple[str, ...] = ("TEE-S", "TEE-M"), **kw) -> Product:
    sizes = [s.split("-")[-1] for s in skus]
    return Product(
        id=None,
        handle=handle,
        title=kw.pop("title", "Tee"),
        description_html="<p>soft</p>",
        vendor="Acme",
        product_type="Shirt",
        tags=("cotton", "summer"),
        options=(Option("Size", tuple(sizes)),),
        variants=tuple(variant(sku, ("Size", size)) for sku, size in zip(skus, sizes, strict=True)),
        status="ACTIVE",
        seo_title="Tee",
        seo_description="A tee",
        **kw,
    )
