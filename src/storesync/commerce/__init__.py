"""Shopify Admin GraphQL client: every document the engine sends (`operations/*.graphql`), a
cost-aware throttle shared by every process that talks to a store, retries, typed errors."""
