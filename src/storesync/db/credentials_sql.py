"""SQL for the stores' credentials and tokens (`store_credentials`) and the install flow's used
states (`oauth_states_used`), migration 0010. Every secret column holds Fernet ciphertext
(`db.credentials.TokenCipher`); nothing here sees a secret in plain text but `configure_stores`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from storesync.config import NetworkConfig
    from storesync.db.credentials import TokenCipher

# configure_store: the configured credentials of a store (`network apply`). A change of kind or
# app forgets the tokens obtained for the old one; a static store's token is the configured one.
CONFIGURE_STORE = """
INSERT INTO store_credentials (shop_domain, kind, client_id, client_secret_encrypted, access_token_encrypted)
VALUES (%(shop)s, %(kind)s, %(client_id)s, %(secret)s, %(static_token)s)
ON CONFLICT (shop_domain) DO UPDATE SET
    kind = EXCLUDED.kind,
    client_id = EXCLUDED.client_id,
    client_secret_encrypted = EXCLUDED.client_secret_encrypted,
    access_token_encrypted = CASE
        WHEN EXCLUDED.kind = 'static' THEN EXCLUDED.access_token_encrypted
        WHEN (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.access_token_encrypted END,
    access_token_expires_at = CASE
        WHEN EXCLUDED.kind = 'static'
          OR (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.access_token_expires_at END,
    scopes = CASE
        WHEN EXCLUDED.kind = 'static'
          OR (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.scopes END,
    refresh_token_encrypted = CASE
        WHEN (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.refresh_token_encrypted END,
    refresh_token_expires_at = CASE
        WHEN (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.refresh_token_expires_at END,
    previous_refresh_token_encrypted = CASE
        WHEN (store_credentials.kind, store_credentials.client_id) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.client_id)
        THEN NULL ELSE store_credentials.previous_refresh_token_encrypted END,
    failure = NULL,
    updated_at = now()
"""

# static_tokens: the configured token of every static store, with its API URL.
STATIC_TOKENS = """
SELECT c.shop_domain, s.admin_api_url, c.access_token_encrypted
FROM store_credentials c JOIN stores s USING (shop_domain)
WHERE c.kind = 'static' AND c.access_token_encrypted IS NOT NULL
"""

# credentials_row: a store's row as the token provider reads it (no lock).
CREDENTIALS_ROW = """
SELECT kind, client_id, access_token_encrypted, access_token_expires_at, access_token_obtained_at,
       scopes, refresh_token_encrypted, refresh_token_expires_at, previous_refresh_token_encrypted, failure
FROM store_credentials WHERE shop_domain = %(shop)s
"""

# lock_credentials_row: the same row, locked until the transaction ends: one refresh at a time.
LOCK_CREDENTIALS_ROW = CREDENTIALS_ROW + " FOR UPDATE"

# save_token: a new token (and, for authorization_code, the rotated refresh token with the one
# it replaced), in the same transaction as the lock; the failure is cleared.
SAVE_TOKEN = """
UPDATE store_credentials SET
    access_token_encrypted = %(access_token)s,
    access_token_expires_at = %(expires_at)s,
    access_token_obtained_at = %(obtained_at)s,
    scopes = %(scopes)s,
    refresh_token_encrypted = COALESCE(%(refresh_token)s, refresh_token_encrypted),
    refresh_token_expires_at = CASE WHEN %(refresh_token)s::text IS NULL THEN refresh_token_expires_at
                                    ELSE %(refresh_expires_at)s END,
    previous_refresh_token_encrypted = CASE WHEN %(refresh_token)s::text IS NULL
                                            THEN previous_refresh_token_encrypted
                                            ELSE %(previous_refresh_token)s END,
    failure = NULL,
    updated_at = now()
WHERE shop_domain = %(shop)s AND kind = %(kind)s
RETURNING shop_domain
"""

# save_failure: why the store's credentials were refused for good (its token is forgotten).
SAVE_FAILURE = """
UPDATE store_credentials SET failure = %(failure)s, access_token_encrypted = CASE WHEN kind = 'static'
    THEN access_token_encrypted ELSE NULL END, updated_at = now()
WHERE shop_domain = %(shop)s
"""

# forget_token: a resumed store fetches a fresh token (its scopes may have changed); a static
# store keeps its configured one.
FORGET_TOKEN = """
UPDATE store_credentials SET
    access_token_encrypted = CASE WHEN kind = 'static' THEN access_token_encrypted ELSE NULL END,
    access_token_expires_at = NULL, failure = NULL, updated_at = now()
WHERE shop_domain = %(shop)s
"""

# credentials_overview: what `storesync api check` shows per store (no secrets).
CREDENTIALS_OVERVIEW = """
SELECT shop_domain, kind, client_id, access_token_encrypted IS NOT NULL AS has_token,
       access_token_expires_at, scopes, refresh_token_encrypted IS NOT NULL AS has_refresh_token,
       refresh_token_expires_at, failure
FROM store_credentials ORDER BY shop_domain
"""

# use_state: record an install callback's state nonce; no row back means it was used before.
USE_STATE = """
INSERT INTO oauth_states_used (nonce, shop_domain) VALUES (%(nonce)s, %(shop)s)
ON CONFLICT (nonce) DO NOTHING
RETURNING nonce
"""

# prune_states: states older than any still valid cannot be replayed anyway.
PRUNE_STATES = """
DELETE FROM oauth_states_used WHERE used_at < now() - make_interval(secs => %(older_than_s)s)
"""


def configure_stores(conn: psycopg.Connection, network: NetworkConfig, cipher: TokenCipher) -> None:
    """Store every configured store's credentials, encrypted, in the caller's transaction."""
    with conn.cursor() as cur:
        for m in network.merchants:
            for s in m.stores:
                app = network.app_of(s)
                token = s.static_token
                cur.execute(
                    CONFIGURE_STORE,
                    {
                        "shop": s.shop,
                        "kind": s.credential_kind,
                        "client_id": app.client_id if app else None,
                        "secret": cipher.encrypt(app.client_secrets[0].get_secret_value()) if app else None,
                        "static_token": cipher.encrypt(token.get_secret_value()) if token else None,
                    },
                )


def static_tokens(conn: psycopg.Connection, cipher: TokenCipher) -> dict[str, tuple[str, str]]:
    """shop -> (admin API URL, decrypted token) of every static store."""
    rows = conn.execute(STATIC_TOKENS).fetchall()
    return {shop: (url, cipher.decrypt(blob, shop=shop)) for shop, url, blob in rows}


def has_credentials(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM store_credentials LIMIT 1").fetchone() is not None


def overview(conn: psycopg.Connection) -> dict[str, dict]:
    """shop -> the row of CREDENTIALS_OVERVIEW as a dict (no secrets)."""
    cur = conn.execute(CREDENTIALS_OVERVIEW)
    names = [d.name for d in cur.description or ()]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def forget_token(conn: psycopg.Connection, shop: str) -> None:
    conn.execute(FORGET_TOKEN, {"shop": shop})
