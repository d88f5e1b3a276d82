"""storesync: a sync engine for networks of Shopify storefronts."""

__version__ = "0.1.0"
