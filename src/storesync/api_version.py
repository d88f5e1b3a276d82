"""The Shopify Admin API version storesync speaks, in one place.

Every Admin API URL the engine builds, the emulator's default endpoint and the web tier's check of
a webhook's `X-Shopify-API-Version` read it from here. Changing it is a migration of the engine's
documents: the contract tests validate them against Shopify's schema of this version.
"""

ADMIN_API_VERSION = "2026-10"


def admin_api_url(shop: str, base_url: str | None = None) -> str:
    """The Admin GraphQL endpoint of `shop`: `https://{shop}` unless `base_url` is given (e.g. the
    emulator's `http://127.0.0.1:8081/stores/{shop}`)."""
    return f"{base_url or f'https://{shop}'}/admin/api/{ADMIN_API_VERSION}/graphql.json"
