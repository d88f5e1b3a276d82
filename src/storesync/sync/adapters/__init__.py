"""Storage (Postgres), store (Shopify) and queue adapters of the sync part."""
