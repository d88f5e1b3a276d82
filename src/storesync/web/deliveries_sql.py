"""SQL for the webhook_deliveries table (migration 0003)."""

from __future__ import annotations

# set_local_statement_timeout: bound every statement of this transaction (SET LOCAL: PgBouncer-safe).
SET_LOCAL_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"

# insert_delivery: record a delivery unless its webhook id is already known; returns its id only
# when this was the first delivery (a retry or duplicate returns no row).
INSERT_DELIVERY = """
INSERT INTO webhook_deliveries
    (webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version, payload, status)
VALUES
    (%(webhook_id)s, %(shop)s, %(merchant_id)s, %(topic)s, %(event_id)s, %(triggered_at)s,
     %(api_version)s, %(payload)s, %(status)s)
ON CONFLICT (webhook_id) DO NOTHING
RETURNING id
"""

# list_deliveries: the newest deliveries, optionally of one status, for operators.
LIST_DELIVERIES = """
SELECT id, webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version,
       received_at, status, octet_length(payload) AS payload_bytes
FROM webhook_deliveries
WHERE %(status)s::text IS NULL OR status = %(status)s
ORDER BY received_at DESC, id DESC
LIMIT %(limit)s
"""

# get_delivery_payload: the raw bytes of one delivery, as Shopify sent them.
GET_DELIVERY_PAYLOAD = "SELECT payload FROM webhook_deliveries WHERE webhook_id = %(webhook_id)s"

# count_deliveries_by_status: how many deliveries of each status the table holds.
COUNT_DELIVERIES_BY_STATUS = "SELECT status, count(*) FROM webhook_deliveries GROUP BY status ORDER BY status"
