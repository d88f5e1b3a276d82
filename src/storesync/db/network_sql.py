"""SQL for the network tables (merchants, stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from storesync.config import NetworkConfig

if TYPE_CHECKING:
    from storesync.db.credentials import TokenCipher

# upsert_merchant: insert a merchant or refresh its name.
UPSERT_MERCHANT = """
INSERT INTO merchants (id, name) VALUES (%(id)s, %(name)s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
"""

# upsert_store: insert a store or refresh its merchant and role; status is left as operators set it.
UPSERT_STORE = """
INSERT INTO stores (shop_domain, merchant_id, role) VALUES (%(shop)s, %(merchant_id)s, %(role)s)
ON CONFLICT (shop_domain) DO UPDATE
SET merchant_id = EXCLUDED.merchant_id, role = EXCLUDED.role, updated_at = now()
WHERE (stores.merchant_id, stores.role) IS DISTINCT FROM (EXCLUDED.merchant_id, EXCLUDED.role)
"""

# demote_other_parent: when the configured parent changes, the old one becomes a child first.
DEMOTE_OTHER_PARENT = """
UPDATE stores SET role = 'child', updated_at = now()
WHERE merchant_id = %(merchant_id)s AND role = 'parent' AND shop_domain <> %(shop)s
"""

# list_stores: every store with its merchant, parents first.
LIST_STORES = """
SELECT s.merchant_id, m.name, s.shop_domain, s.role, s.status, s.status_reason
FROM stores s JOIN merchants m ON m.id = s.merchant_id
ORDER BY s.merchant_id, s.role DESC, s.shop_domain
"""


# stores_status: every store with its merchant's name, status and since when it is paused.
STORES_STATUS = """
SELECT s.merchant_id, m.name AS merchant_name, s.shop_domain, s.role, s.status, s.status_reason, s.paused_at
FROM stores s JOIN merchants m ON m.id = s.merchant_id
ORDER BY s.merchant_id, s.role DESC, s.shop_domain
"""


# set_store_endpoint: the store's API URL and location map (its credentials: credentials_sql).
SET_STORE_ENDPOINT = """
UPDATE stores SET admin_api_url = %(url)s, location_map = %(location_map)s
WHERE shop_domain = %(shop)s
"""

# pause_store: stop a store's work (app uninstalled, token revoked); keeps the first reason.
PAUSE_STORE = """
UPDATE stores SET status = 'paused', status_reason = %(reason)s, paused_at = now(), updated_at = now()
WHERE shop_domain = %(shop)s AND status <> 'paused'
RETURNING shop_domain
"""

# resume_store: an operator fixed the cause; the store's work runs again.
RESUME_STORE = """
UPDATE stores SET status = 'active', status_reason = NULL, paused_at = NULL, updated_at = now()
WHERE shop_domain = %(shop)s
RETURNING shop_domain
"""

# paused_stores: which of the given shops are paused, with the reason.
PAUSED_STORES = """
SELECT shop_domain, status_reason FROM stores WHERE shop_domain = ANY(%(shops)s) AND status = 'paused'
"""


def apply_network(
    conn: psycopg.Connection, network: NetworkConfig, cipher: TokenCipher | None = None
) -> None:
    """Mirror the configured network into the database, in the caller's transaction. With a
    cipher, each store's API URL, location map and encrypted credentials are written too."""
    with conn.cursor() as cur:
        for m in network.merchants:
            cur.execute(UPSERT_MERCHANT, {"id": m.id, "name": m.name})
            cur.execute(DEMOTE_OTHER_PARENT, {"merchant_id": m.id, "shop": m.parent.shop})
            cur.execute(UPSERT_STORE, {"shop": m.parent.shop, "merchant_id": m.id, "role": "parent"})
            for c in m.children:
                cur.execute(UPSERT_STORE, {"shop": c.shop, "merchant_id": m.id, "role": "child"})
            if cipher is not None:
                for s in m.stores:
                    cur.execute(
                        SET_STORE_ENDPOINT,
                        {"shop": s.shop, "url": s.admin_api_url, "location_map": Jsonb(dict(s.location_map))},
                    )
    if cipher is not None:
        from storesync.db.credentials_sql import configure_stores

        configure_stores(conn, network, cipher)


def resume_store(conn: psycopg.Connection, shop: str) -> bool:
    return conn.execute(RESUME_STORE, {"shop": shop}).fetchone() is not None


def list_stores(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(LIST_STORES).fetchall()
