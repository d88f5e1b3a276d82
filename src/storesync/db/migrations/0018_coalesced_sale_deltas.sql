-- 0018 coalesced sale deltas (issue 16): a sale job leaves its ledger entries pending for the
-- parent (`pending_parent`); the parent's flush job plans them and sends them together as one
-- inventoryAdjustQuantities (sync/domain/adjusts.py, sync/services/adjusts.py).
--
-- A batch in flight: stored with its entries' plans (`batch_id`) BEFORE the call, so that after a
-- crash the same changes are sent again under the same @idempotent key (`key_attempt` is raised
-- and stored when Shopify refuses a key as spent). A row lives only while its batch is in flight:
-- it is deleted in the transaction that marks its entries applied, or returns them to pending
-- (the call was refused: nothing applied).
CREATE TABLE sync_adjust_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_shop text NOT NULL,
    key_attempt integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_adjust_batches_by_parent ON sync_adjust_batches (parent_shop, id);

ALTER TABLE sync_inventory_ledger ADD COLUMN pending_parent text;
ALTER TABLE sync_inventory_ledger ADD COLUMN batch_id bigint;
-- The entries waiting for a parent's next batch, oldest first.
CREATE INDEX sync_ledger_pending_for_parent ON sync_inventory_ledger (pending_parent, id)
    WHERE pending_parent IS NOT NULL AND status = 'claimed';
CREATE INDEX sync_ledger_by_batch ON sync_inventory_ledger (batch_id) WHERE batch_id IS NOT NULL;
