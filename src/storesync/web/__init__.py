"""The webhook tier: HMAC-verified, idempotent, transactional ingestion of Shopify webhooks,
with health, readiness and Prometheus metrics. `create_app(settings, network)` builds the ASGI app;
`storesync serve` runs it under uvicorn."""
