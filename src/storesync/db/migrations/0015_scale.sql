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

-- Coalesced sale deltas: a batch of planned ledger entries sent to the parent as one
-- inventoryAdjustQuantities (sync/domain/adjusts.py). It is stored, with its entries' plans,
-- before it is sent: after a crash the same batch is sent again under the same @idempotent key
-- (`key_attempt`, raised and stored when Shopify refuses a key as spent), so Shopify replays it
-- instead of applying it twice. `void`: refused (a stale quantity), nothing applied.
CREATE TABLE sync_adjust_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_shop text NOT NULL,
    key_attempt integer NOT NULL DEFAULT 0,
    status      text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'applied', 'void')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX sync_adjust_batches_sent ON sync_adjust_batches (parent_shop, id) WHERE status = 'sent';
ALTER TABLE sync_inventory_ledger ADD COLUMN batch_id bigint;
-- A parent's unfinished entries, oldest first (its children's sales waiting for the next batch).
CREATE INDEX sync_ledger_unfinished_by_child ON sync_inventory_ledger (child_shop, id) WHERE status <> 'applied';
