-- 0011 retention: what the prune (`storesync prune`, the periodic `sync.prune` job) needs to
-- delete old rows in small batches by index, and the dashboard's sign-out revocations.
-- Batched DELETE by age rather than partitioning: docs/decisions/0011-retention-by-batched-delete.md.

-- The audit trail by age (its other indexes lead with shop, object or cause).
CREATE INDEX sync_audit_at ON sync_audit (at);

-- Applied ledger entries by age, and all entries of one order (an order is pruned whole).
CREATE INDEX sync_ledger_applied_at ON sync_inventory_ledger (applied_at, id) WHERE status = 'applied';
CREATE INDEX sync_ledger_by_order ON sync_inventory_ledger (child_shop, order_id);

-- Orders whose ledger entries were pruned. The ledger's unique key is what applies each order
-- line once; Shopify still sends webhooks about an order long after the sale (edits, refunds),
-- so an order whose entries are gone is remembered here (one small row per order, not per line)
-- and its later webhooks are not applied again.
CREATE TABLE sync_ledger_pruned_orders (
    child_shop text NOT NULL,
    order_id   text NOT NULL,
    pruned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_shop, order_id)
);

-- Finished sagas by age (their steps go with them: ON DELETE CASCADE).
CREATE INDEX sync_sagas_finished ON sync_sagas (updated_at) WHERE state IN ('completed', 'compensated');

-- Dashboard sessions signed out before their cookie expired: a copy of the cookie is refused
-- everywhere. Rows are forgotten once the cookie would have expired anyway.
CREATE TABLE dashboard_revoked_sessions (
    nonce      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

COMMENT ON COLUMN webhook_deliveries.payload IS
    'The body as signed, except: order, refund and app/uninstalled bodies cut to what sync needs '
    '(web/personal_data.py), and ignored topics kept without their body.';
