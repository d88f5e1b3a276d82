-- 0013 stock where Shopify moved it: the ledger's new kinds (counters of a line's units sold and
-- removed by edits, return dispositions as restocks, a child's own moves reported to the parent),
-- where each movement happened in the child, the stock accounts of children whose own moves are
-- reported, each child's orders checkpoint (the reconciliation of sales) and the levels storesync
-- must not write (a deactivated location, an item no longer stocked somewhere).
-- docs/sync.md, "Sales, restocks and the ledger".

ALTER TABLE sync_inventory_ledger DROP CONSTRAINT sync_inventory_ledger_kind_check;
ALTER TABLE sync_inventory_ledger
    ADD CONSTRAINT sync_inventory_ledger_kind_check
    CHECK (kind IN ('sale', 'restock', 'edit_removal', 'manual'));
ALTER TABLE sync_inventory_ledger ADD COLUMN child_item_id text;
ALTER TABLE sync_inventory_ledger ADD COLUMN child_location_id text;
-- a counter's units so far, and the restocks of one line (the restock bound)
CREATE INDEX sync_ledger_by_line ON sync_inventory_ledger (child_shop, order_line_id, kind);

-- A child with `stock_changes = "report"`: per child level, the level the child would show if
-- nothing but its orders, storesync's writes and the moves already reported (or reverted) had
-- moved it. Its own level minus `expected` is the move still to report. A write of storesync's
-- whose answer was lost stays `pending` until it is known to have landed or not.
CREATE TABLE sync_stock_accounts (
    child_shop        text NOT NULL,
    inventory_item_id text NOT NULL,
    location_id       text NOT NULL,
    expected          integer NOT NULL,
    reports           integer NOT NULL DEFAULT 0,  -- moves reported so far (the next report's number)
    pending_from      integer,
    pending_to        integer,
    pending_key       text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_shop, inventory_item_id, location_id),
    CHECK ((pending_key IS NULL) = (pending_to IS NULL))
);

-- Per child: orders placed before `tracked_since` are the child's history (their sales were in
-- its stock when storesync took it over); every order updated before `checkpoint` has been
-- compared with the ledger by a reconciliation.
CREATE TABLE sync_order_checkpoints (
    child_shop    text PRIMARY KEY,
    tracked_since timestamptz NOT NULL,
    checkpoint    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Levels storesync does not write: a deactivated location (inventory_item_id = '') or an item
-- disconnected from a location (inventory_levels/disconnect), until it is active or stocked again.
CREATE TABLE sync_inactive_levels (
    shop              text NOT NULL,
    location_id       text NOT NULL,
    inventory_item_id text NOT NULL DEFAULT '',
    reason            text NOT NULL,
    since             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, location_id, inventory_item_id)
);
