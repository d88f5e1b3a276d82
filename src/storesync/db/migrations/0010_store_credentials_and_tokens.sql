-- 0010 credentials per store, the tokens Shopify issues for them, and the install flow's states.
--
-- store_credentials: one row per store, written by `storesync network apply` (kind, the app's
-- client id and encrypted secret, or a static token) and by the engine (tokens it obtained).
-- Every secret is Fernet-encrypted with STORESYNC_ENCRYPTION_KEY. Workers share the row: one
-- refresh at a time, under the row's lock (SELECT ... FOR UPDATE inside one transaction, so the
-- pooled path and PgBouncer in transaction mode are fine), the others find the new token.
CREATE TABLE store_credentials (
    shop_domain                  text PRIMARY KEY REFERENCES stores (shop_domain) ON DELETE CASCADE,
    kind                         text NOT NULL CHECK (kind IN ('static', 'client_credentials', 'authorization_code')),
    client_id                    text,
    client_secret_encrypted      text,
    access_token_encrypted       text,
    -- NULL: the token does not expire (static, or a non-expiring offline token).
    access_token_expires_at      timestamptz,
    access_token_obtained_at     timestamptz,
    -- The scopes the token answer granted (Shopify's comma-separated `scope`).
    scopes                       text,
    -- authorization_code: the refresh token to use next, and the one that produced it. Shopify
    -- keeps the previous one valid until the new one is first used, so it is kept until then.
    refresh_token_encrypted      text,
    refresh_token_expires_at     timestamptz,
    previous_refresh_token_encrypted text,
    -- Why the last token request was refused for good (the store is paused with it), or NULL.
    failure                      text,
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'static' OR access_token_encrypted IS NOT NULL),
    CHECK (kind = 'static' OR client_id IS NOT NULL)
);

-- Static tokens stored before credentials had kinds move to their new home.
INSERT INTO store_credentials (shop_domain, kind, access_token_encrypted)
SELECT shop_domain, 'static', access_token_encrypted FROM stores WHERE access_token_encrypted IS NOT NULL;
ALTER TABLE stores DROP COLUMN access_token_encrypted;

-- The install flow's `state` nonces, recorded when a callback uses one: a callback replayed
-- with the same state is refused (Shopify also refuses a code exchanged twice).
CREATE TABLE oauth_states_used (
    nonce       text PRIMARY KEY,
    shop_domain text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now()
);

-- Inventory deltas: which idempotency key of the entry's plan is in use. Shopify refuses a key
-- whose first attempt failed (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: "retry with a new key"); the
-- next attempt number is stored before it is sent, so a replay after a crash sends the key of
-- the attempt that may have succeeded.
ALTER TABLE sync_inventory_ledger ADD COLUMN key_attempt integer NOT NULL DEFAULT 0;
