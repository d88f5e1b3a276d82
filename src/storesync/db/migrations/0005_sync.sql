-- 0005 sync: storage of the sync domain (src/storesync/sync/store_pg.py): links between parent
-- and child objects, the inventory ledger, engine write records (echo suppression), last applied
-- versions (stale rejection), saga step logs and the audit trail.

-- A parent object and its counterpart in one child store. A child object belongs to one parent
-- object at most (the second unique key), so a mistaken link fails loudly instead of hijacking.
CREATE TABLE sync_links (
    child_shop               text NOT NULL,
    kind                     text NOT NULL CHECK (kind IN ('product', 'variant', 'collection')),
    parent_id                text NOT NULL,
    child_id                 text NOT NULL,
    matched_by               text NOT NULL CHECK (matched_by IN ('sku', 'barcode', 'handle', 'created')),
    parent_product_id        text,
    child_product_id         text,
    parent_inventory_item_id text,
    child_inventory_item_id  text,
    -- product links: the synced fields last written (tells a child edit from a parent change)
    synced_view              jsonb,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_shop, kind, parent_id),
    UNIQUE (child_shop, kind, child_id)
);
-- fan-out: every child's counterpart of one parent object
CREATE INDEX sync_links_by_parent ON sync_links (kind, parent_id);
CREATE INDEX sync_links_by_parent_item ON sync_links (parent_inventory_item_id)
    WHERE parent_inventory_item_id IS NOT NULL;

-- One row per child order line effect on the parent: the sale, and each restock (ref = refund
-- line). The unique key makes a sale apply once whatever the deliveries do.
CREATE TABLE sync_inventory_ledger (
    id                 bigserial PRIMARY KEY,
    child_shop         text NOT NULL,
    order_line_id      text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('sale', 'restock')),
    ref                text NOT NULL DEFAULT '',
    order_id           text NOT NULL,
    parent_item_id     text NOT NULL,
    parent_location_id text NOT NULL,
    requested_delta    integer NOT NULL CHECK (requested_delta <> 0),
    status             text NOT NULL DEFAULT 'claimed' CHECK (status IN ('claimed', 'planned', 'applied')),
    applied_delta      integer,
    backlog_after      integer CHECK (backlog_after >= 0),
    expected_after     integer,
    quantity_after     integer,
    plan_no            integer NOT NULL DEFAULT 0,  -- bumped when a lost compare-and-set forces a new plan
    cause              text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    planned_at         timestamptz,
    applied_at         timestamptz,
    UNIQUE (child_shop, order_line_id, kind, ref),
    CHECK (status = 'claimed' OR (applied_delta IS NOT NULL AND backlog_after IS NOT NULL
                                  AND expected_after IS NOT NULL))
);
-- finish interrupted plans of an item+location before planning a new one
CREATE INDEX sync_ledger_unfinished ON sync_inventory_ledger (parent_item_id, parent_location_id, id)
    WHERE status <> 'applied';

-- Units sold by children that the parent did not have (the parent is kept at 0, never below).
CREATE TABLE sync_inventory_backlog (
    parent_item_id     text NOT NULL,
    parent_location_id text NOT NULL,
    oversold           integer NOT NULL CHECK (oversold >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (parent_item_id, parent_location_id)
);

-- Inventory writes the engine made (recorded before making them): their webhooks are echoes.
CREATE TABLE sync_write_records (
    id                bigserial PRIMARY KEY,
    shop              text NOT NULL,
    inventory_item_id text NOT NULL,
    location_id       text NOT NULL,
    quantity          integer NOT NULL,
    written_at        timestamptz NOT NULL,
    cause             text NOT NULL
);
CREATE INDEX sync_write_records_level ON sync_write_records (shop, inventory_item_id, location_id, written_at DESC);
CREATE INDEX sync_write_records_age ON sync_write_records (written_at);

-- Newest version (X-Shopify-Triggered-At / updated_at, tiebreak) applied per store level.
CREATE TABLE sync_applied_versions (
    shop              text NOT NULL,
    inventory_item_id text NOT NULL,
    location_id       text NOT NULL,
    applied_at        timestamptz NOT NULL,
    tiebreak          text NOT NULL DEFAULT '',
    PRIMARY KEY (shop, inventory_item_id, location_id)
);

CREATE TABLE sync_sagas (
    id         text PRIMARY KEY,
    kind       text NOT NULL,
    shop       text NOT NULL,
    cause      text NOT NULL,
    state      text NOT NULL DEFAULT 'running'
               CHECK (state IN ('running', 'compensating', 'completed', 'compensated', 'stuck')),
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- resume after a restart
CREATE INDEX sync_sagas_unfinished ON sync_sagas (created_at) WHERE state IN ('running', 'compensating');

CREATE TABLE sync_saga_steps (
    saga_id        text NOT NULL REFERENCES sync_sagas (id) ON DELETE CASCADE,
    idx            integer NOT NULL CHECK (idx >= 0),
    name           text NOT NULL,
    action         text NOT NULL,
    params         jsonb NOT NULL DEFAULT '{}',
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'started', 'done', 'compensated')),
    undo           jsonb,  -- written before the step runs
    result         jsonb,
    started_at     timestamptz,
    done_at        timestamptz,
    compensated_at timestamptz,
    PRIMARY KEY (saga_id, idx),
    UNIQUE (saga_id, name)
);

-- Every write the engine makes and every saga outcome.
CREATE TABLE sync_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    shop        text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    action      text NOT NULL,
    before      jsonb,
    after       jsonb,
    cause       text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX sync_audit_by_shop ON sync_audit (shop, at DESC);
CREATE INDEX sync_audit_by_object ON sync_audit (object_id, at DESC);
CREATE INDEX sync_audit_by_cause ON sync_audit (cause);
