-- 0001 network: the merchants (tenants) and stores storesync serves, mirrored from storesync.toml
-- by `storesync network apply`. Secrets stay in configuration, never in these tables.

CREATE TABLE merchants (
    id         text PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stores (
    shop_domain   text PRIMARY KEY,
    merchant_id   text NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('parent', 'child')),
    -- paused: uninstalled app or revoked token; its jobs wait instead of retrying forever.
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    status_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A network has exactly one parent: it owns the catalog.
CREATE UNIQUE INDEX stores_one_parent_per_merchant ON stores (merchant_id) WHERE role = 'parent';
