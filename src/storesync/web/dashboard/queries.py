"""The SQL the dashboard reads its own part's tables with (stores, webhook deliveries), named,
each with a one-line comment. The queue's tables are read through `storesync.queue.ops`, the
audit trail through `storesync.sync.adapters.postgres`: each part reads its own tables.

All run on the pooled path inside a transaction (PgBouncer transaction-mode safe: no session
state, the statement timeout is SET LOCAL). Lists are keyset-paginated on id (`before`), fetching
one row more than a page to know whether an older page exists. Writes are not here: replay and
cancel call `storesync.queue.ops`, the same functions as `storesync jobs retry|cancel`; signing
out records the session's revocation (REVOKE_SESSION).
"""

from __future__ import annotations

# session_revoked: whether a signed-in session was signed out (its cookie is dead everywhere).
SESSION_REVOKED = "SELECT EXISTS (SELECT 1 FROM dashboard_revoked_sessions WHERE nonce = %(nonce)s)"

# revoke_session: sign a session out for good (until its cookie would have expired anyway), and
# forget revocations whose cookies have expired by now.
REVOKE_SESSION = """
WITH forgotten AS (DELETE FROM dashboard_revoked_sessions WHERE expires_at < now())
INSERT INTO dashboard_revoked_sessions (nonce, expires_at)
VALUES (%(nonce)s, to_timestamp(%(expires_at)s))
ON CONFLICT (nonce) DO NOTHING
"""

# table_exists: whether a table of another part (e.g. the audit trail) exists in this schema yet.
TABLE_EXISTS = "SELECT to_regclass(%(name)s) IS NOT NULL"

# ----------------------------------------------------------------------------- overview

# stores_by_merchant: every merchant with its stores (parent first); merchants without stores too.
STORES_BY_MERCHANT = """
SELECT m.id AS merchant_id, m.name AS merchant_name, s.shop_domain, s.role, s.status, s.status_reason,
       s.updated_at
FROM merchants m LEFT JOIN stores s ON s.merchant_id = m.id
ORDER BY m.id, s.role DESC NULLS LAST, s.shop_domain
"""

# deliveries_by_status: how many webhook deliveries of each status are kept.
DELIVERIES_BY_STATUS = """
SELECT status, count(*) AS deliveries FROM webhook_deliveries GROUP BY status ORDER BY status
"""

# ----------------------------------------------------------------------------- queue

# delivery_of_webhook: the delivery a webhook job came from (its payload's delivery_id).
DELIVERY_OF_WEBHOOK = """
SELECT id, webhook_id, shop_domain, topic, status, received_at
FROM webhook_deliveries WHERE webhook_id = %(webhook_id)s
"""

# ----------------------------------------------------------------------------- failures

# failed_deliveries_page: one page of deliveries kept but not turned into jobs (unparseable,
# ignored), newest first.
FAILED_DELIVERIES_PAGE = """
SELECT id, webhook_id, shop_domain, merchant_id, topic, event_id, received_at, status,
       octet_length(payload) AS payload_bytes
FROM webhook_deliveries
WHERE status IN ('unparseable', 'ignored') AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# delivery_detail: one delivery (by id, or by webhook id when id is NULL) with the first
# `preview` bytes of its raw body.
DELIVERY_DETAIL = """
SELECT id, webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version,
       received_at, status, octet_length(payload) AS payload_bytes,
       substring(payload FROM 1 FOR %(preview)s) AS payload_preview
FROM webhook_deliveries
WHERE CASE WHEN %(id)s::bigint IS NULL THEN webhook_id = %(webhook_id)s ELSE id = %(id)s END
"""

# store_domains: every configured store, for the audit trail's store filter.
STORE_DOMAINS = "SELECT shop_domain FROM stores ORDER BY shop_domain"
