"""Commerce emulator: a multi-store fake of Shopify's Admin GraphQL API and its webhooks."""
