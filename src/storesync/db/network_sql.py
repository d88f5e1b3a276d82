"""SQL for the network tables (merchants, stores)."""

from __future__ import annotations

import psycopg

from storesync.config import NetworkConfig

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


def apply_network(conn: psycopg.Connection, network: NetworkConfig) -> None:
    """Mirror the configured network into the database, in the caller's transaction."""
    with conn.cursor() as cur:
        for m in network.merchants:
            cur.execute(UPSERT_MERCHANT, {"id": m.id, "name": m.name})
            cur.execute(DEMOTE_OTHER_PARENT, {"merchant_id": m.id, "shop": m.parent.shop})
            cur.execute(UPSERT_STORE, {"shop": m.parent.shop, "merchant_id": m.id, "role": "parent"})
            for c in m.children:
                cur.execute(UPSERT_STORE, {"shop": c.shop, "merchant_id": m.id, "role": "child"})


def list_stores(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(LIST_STORES).fetchall()
