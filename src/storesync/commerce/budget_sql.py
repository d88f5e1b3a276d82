"""SQL for the shared per-store rate-limit budget (migration 0004). Pooled-path safe: every
statement runs inside the caller's short transaction; no session state."""

# ensure_budget: create a store's bucket on first use (standard plan until the server says otherwise).
ENSURE_BUDGET = """
INSERT INTO api_budgets (shop_domain, capacity, restore_rate, available, observed_at)
VALUES (%(shop)s, %(capacity)s, %(restore_rate)s, %(capacity)s, clock_timestamp())
ON CONFLICT (shop_domain) DO NOTHING
"""

# lock_budget: the store's bucket, locked until commit, with the database's clock as epoch seconds.
LOCK_BUDGET = """
SELECT capacity, restore_rate, available, extract(epoch FROM observed_at)::float8,
       extract(epoch FROM clock_timestamp())::float8
FROM api_budgets WHERE shop_domain = %(shop)s
FOR UPDATE
"""

# update_budget: write the model back.
UPDATE_BUDGET = """
UPDATE api_budgets
SET capacity = %(capacity)s, restore_rate = %(restore_rate)s, available = %(available)s,
    observed_at = to_timestamp(%(at)s)
WHERE shop_domain = %(shop)s
"""

# grant_reservation: write the model back and remember the points granted and not yet answered,
# with when the call goes out (one statement: a grant is one round trip after the lock).
GRANT_RESERVATION = """
WITH bucket AS (
    UPDATE api_budgets
    SET capacity = %(capacity)s, restore_rate = %(restore_rate)s, available = %(available)s,
        observed_at = to_timestamp(%(at)s)
    WHERE shop_domain = %(shop)s
)
INSERT INTO api_budget_reservations (shop_domain, cost, send_at, expires_at)
VALUES (%(shop)s, %(cost)s, to_timestamp(%(send_at)s), to_timestamp(%(expires_at)s))
RETURNING id
"""

# settle_lock: the store's bucket locked until commit (as lock_budget), after forgetting the
# answered reservation and sweeping the store's expired ones, with the points granted to calls
# still waiting to go out (the server cannot have seen them). The sum reads the snapshot before
# the delete, which removes only reservations already sent (an answered one, or expired ones:
# expires_at is send_at plus a TTL), so it is the same either way.
SETTLE_LOCK = """
WITH released AS (
    DELETE FROM api_budget_reservations
    WHERE id = %(id)s OR (shop_domain = %(shop)s AND expires_at < clock_timestamp())
)
SELECT capacity, restore_rate, available, extract(epoch FROM observed_at)::float8,
       extract(epoch FROM clock_timestamp())::float8,
       (SELECT coalesce(sum(cost), 0)::float8 FROM api_budget_reservations
        WHERE shop_domain = %(shop)s AND send_at > clock_timestamp())
FROM api_budgets WHERE shop_domain = %(shop)s
FOR UPDATE
"""

# budget_row: a store's bucket as stored (for tests and the status page).
BUDGET_ROW = """
SELECT capacity, restore_rate, available, observed_at FROM api_budgets WHERE shop_domain = %(shop)s
"""

# list_budgets: every store's shared bucket, with the points it holds now (restored since observed_at).
LIST_BUDGETS = """
SELECT b.shop_domain, b.capacity, b.restore_rate,
       LEAST(b.capacity, b.available + extract(epoch FROM clock_timestamp() - b.observed_at) * b.restore_rate),
       b.observed_at,
       (SELECT count(*) FROM api_budget_reservations r
        WHERE r.shop_domain = b.shop_domain AND r.expires_at >= clock_timestamp())
FROM api_budgets b ORDER BY b.shop_domain
"""
