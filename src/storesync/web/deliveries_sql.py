"""SQL for the webhook_deliveries table (migration 0003)."""

from __future__ import annotations

# insert_deliveries: record a batch of deliveries (parallel arrays), skipping webhook ids already
# known (including a second copy within the batch); returns the webhook ids that were inserted.
# Rows go in webhook-id order so two concurrent batches cannot deadlock on each other's new rows.
INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries
    (webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version, payload, status)
SELECT * FROM unnest(%(webhook_id)s::text[], %(shop)s::text[], %(merchant_id)s::text[], %(topic)s::text[],
                     %(event_id)s::text[], %(triggered_at)s::timestamptz[], %(api_version)s::text[],
                     %(payload)s::bytea[], %(status)s::text[])
ORDER BY 1
ON CONFLICT (webhook_id) DO NOTHING
RETURNING webhook_id
"""

# list_deliveries: the newest deliveries, optionally of one status and from one store, for operators.
LIST_DELIVERIES = """
SELECT id, webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version,
       received_at, status, octet_length(payload) AS payload_bytes
FROM webhook_deliveries
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(shop)s::text IS NULL OR shop_domain = %(shop)s)
ORDER BY received_at DESC, id DESC
LIMIT %(limit)s
"""

# get_delivery_payload: the stored bytes of one delivery (as sent, or minimised: web/personal_data.py).
GET_DELIVERY_PAYLOAD = "SELECT payload FROM webhook_deliveries WHERE webhook_id = %(webhook_id)s"

# count_deliveries_by_status: how many deliveries of each status the table holds.
COUNT_DELIVERIES_BY_STATUS = "SELECT status, count(*) FROM webhook_deliveries GROUP BY status ORDER BY status"

# ----------------------------------------------------------------------------- retention

# count_old_deliveries: deliveries received before the cutoff.
COUNT_OLD_DELIVERIES = "SELECT count(*) FROM webhook_deliveries WHERE received_at < %(before)s"

# prune_deliveries: delete a batch of the oldest deliveries of one status received before the
# cutoff (by the (status, received_at) index; one status at a time so the index serves it).
PRUNE_DELIVERIES = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = %(status)s AND received_at < %(before)s
    ORDER BY received_at LIMIT %(limit)s
)
"""
