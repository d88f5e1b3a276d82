-- 0003 webhook deliveries: every authenticated webhook Shopify sent us, exactly as it arrived.
-- Shopify delivers at least once; X-Shopify-Webhook-Id is the same for a delivery and its retries,
-- so the unique constraint on it is what makes ingestion idempotent: the first insert wins and
-- enqueues its job in the same transaction (the job payload's `delivery_id` is the webhook id);
-- later copies find the row and enqueue nothing.

CREATE TABLE webhook_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id   text NOT NULL,
    shop_domain  text NOT NULL,
    -- No foreign key: the network lives in storesync.toml and `network apply` may not have run yet;
    -- a delivery from a configured shop must never be refused for that.
    merchant_id  text NOT NULL,
    topic        text NOT NULL,
    event_id     text,
    triggered_at timestamptz,
    api_version  text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- The raw bytes the HMAC was computed over (may not even be UTF-8 when unparseable).
    payload      bytea NOT NULL,
    -- accepted: parsed and its job enqueued; unparseable: signed but not a JSON object;
    -- ignored: a topic storesync does not handle. The last two are kept for operators.
    status       text NOT NULL CHECK (status IN ('accepted', 'unparseable', 'ignored')),
    CONSTRAINT webhook_deliveries_webhook_id_key UNIQUE (webhook_id)
);

-- Operators list recent deliveries by status (`storesync deliveries list --status ...`).
CREATE INDEX webhook_deliveries_status_received ON webhook_deliveries (status, received_at DESC);
