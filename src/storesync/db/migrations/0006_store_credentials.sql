-- 0006 store credentials: how workers reach each store's Admin API, written by
-- `storesync network apply`. The access token is stored Fernet-encrypted with the key in
-- STORESYNC_ENCRYPTION_KEY (never in plain text); the location map mirrors storesync.toml.

ALTER TABLE stores
    ADD COLUMN admin_api_url          text,
    ADD COLUMN access_token_encrypted text,
    ADD COLUMN location_map           jsonb NOT NULL DEFAULT '{}',
    -- When the store was paused (status 'paused'), for operators.
    ADD COLUMN paused_at              timestamptz;
