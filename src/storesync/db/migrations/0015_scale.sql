-- 0015 scale: what flash-sale traffic and large catalogs need (issue 16).

-- The last products/update payload seen per product, as digests (sync/domain/echoes.py
-- `product_digest`): a later one that differs only in its variants' stock is a stock move and
-- is not read back from the store. One small row per product and store.
CREATE TABLE sync_product_payloads (
    shop          text NOT NULL,
    product_id    text NOT NULL,
    updated_at    timestamptz,
    fields_digest text NOT NULL,
    stock_digest  text NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, product_id)
);

-- Reconciliation passes per merchant: when the last one started (an incremental pass compares
-- what changed since then) and when the last full one did (deletions are only seen by those).
CREATE TABLE sync_reconcile_passes (
    merchant_id text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    full_at     timestamptz
);
