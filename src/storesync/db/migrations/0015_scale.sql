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

-- Level pushes waiting to be sent to a child, one per child level: a newer target replaces an
-- older one (sync/domain/pushes.py). `target` NULL: the parent's level as known when sent;
-- `change_from`: the child's level as last seen (a webhook) and `seen_at` when (Shopify's time);
-- `version` grows with each
-- replacement, so a flush that sent an older target leaves the newer one waiting.
CREATE TABLE sync_pending_pushes (
    shop               text NOT NULL,
    item_id            text NOT NULL,
    location_id        text NOT NULL,
    parent_item_id     text NOT NULL,
    parent_location_id text NOT NULL,
    target             integer,
    change_from        integer,
    seen_at            timestamptz,
    cause              text NOT NULL,
    version            bigint NOT NULL DEFAULT 1,
    due_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, item_id, location_id)
);
CREATE INDEX sync_pending_pushes_due ON sync_pending_pushes (shop, due_at);

-- The parent's levels as the engine last knew them: its own adjusts' results and its reads. An
-- open push target (a child's own move set back) is this level when the push is sent.
CREATE TABLE sync_parent_levels (
    shop        text NOT NULL,
    item_id     text NOT NULL,
    location_id text NOT NULL,
    available   integer NOT NULL,
    known_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, item_id, location_id)
);
