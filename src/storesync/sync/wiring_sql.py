"""SQL the sync wiring runs on the queue's table (parked jobs of paused stores)."""

from __future__ import annotations

# unpark_jobs: a resumed store's parked jobs become due now.
UNPARK_JOBS = """
UPDATE jobs SET run_at = now()
WHERE state = 'queued' AND payload->>'parked_for' = %(shop)s AND run_at > now()
"""

# parked_jobs: how many jobs wait for a paused store.
PARKED_JOBS = """
SELECT count(*) FROM jobs WHERE state = 'queued' AND payload->>'parked_for' = %(shop)s
"""

# notify_jobs: wake listening workers.
NOTIFY_JOBS = "SELECT pg_notify('storesync_jobs', '')"

# unfinished_sagas: sagas left running or compensating (resumed through their queue job at worker start).
UNFINISHED_SAGAS = """
SELECT s.id, s.shop FROM sync_sagas s
WHERE s.state IN ('running', 'compensating')
ORDER BY s.created_at, s.id
LIMIT %(limit)s
"""

# copy_saga_states: every copy saga's state (the backfill picks each copy's saga id from them).
COPY_SAGA_STATES = "SELECT id, state FROM sync_sagas WHERE kind = 'copy_product'"

# analyze_links: fresh planner statistics for the links table, which a backfill fills from a few
# rows to thousands in seconds: planned on stale statistics, a child's link lookup by inventory
# item read every index entry of the child (0.7 ms instead of 0.05) until autovacuum got to it.
ANALYZE_LINKS = "ANALYZE sync_links"

# links_by_child: per child store, its linked products and the copies whose variants are not linked yet.
LINKS_BY_CHILD = """
SELECT child_shop, count(*) FILTER (WHERE kind = 'product'), count(*) FILTER (WHERE pending IS NOT NULL)
FROM sync_links GROUP BY child_shop
"""

# merchant_of_shop: the merchant of a store (the fairness group of its jobs).
MERCHANT_OF_SHOP = "SELECT merchant_id FROM stores WHERE shop_domain = %(shop)s"

# child_links_subset: the links of one child for some of its products, variants or inventory items,
# and its collection links when asked (a webhook or a sale needs a handful, not the whole map).
# One branch per index, so that even a generic plan made while the table was empty looks each
# id up in its index (one OR of the four read every link of the child).
CHILD_LINKS_SUBSET = """
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'product' AND child_id = ANY(%(products)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'variant' AND child_id = ANY(%(variants)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND child_inventory_item_id = ANY(%(items)s) AND kind = 'variant'
  AND NOT child_id = ANY(%(variants)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'collection' AND %(collections)s
"""
