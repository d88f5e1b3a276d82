"""Every SQL statement the dashboard reads with, named, each with a one-line comment.

All run on the pooled path inside a transaction (PgBouncer transaction-mode safe: no session
state, the statement timeout is SET LOCAL). Lists are keyset-paginated on id (`before`), fetching
one row more than a page to know whether an older page exists. Writes are not here: replay and
cancel call `storesync.queue.ops`, the same functions as `storesync jobs retry|cancel`; signing
out records the session's revocation (REVOKE_SESSION).
"""

from __future__ import annotations

# set_local_statement_timeout: bound every statement of this read (transaction-scoped).
SET_LOCAL_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"

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

# queue_depth_by_lane_state: how many jobs each lane holds in each state.
QUEUE_DEPTH_BY_LANE_STATE = """
SELECT lane, state, count(*) AS jobs FROM jobs GROUP BY lane, state ORDER BY lane, state
"""

# queue_by_merchant: per group (merchant) with unfinished or dead jobs: queued (and due) jobs, how
# long the oldest due job has waited since it became due, running and dead jobs.
QUEUE_BY_MERCHANT = """
SELECT j.group_key, m.name AS merchant_name,
       count(*) FILTER (WHERE j.state = 'queued') AS queued,
       count(*) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS due,
       extract(epoch FROM now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()))::float8
           AS oldest_due_age_s,
       count(*) FILTER (WHERE j.state = 'running') AS running,
       count(*) FILTER (WHERE j.state = 'dead') AS dead
FROM jobs j LEFT JOIN merchants m ON m.id = j.group_key
WHERE j.state IN ('queued', 'running', 'dead')
GROUP BY j.group_key, m.name
ORDER BY oldest_due_age_s DESC NULLS LAST, j.group_key
"""

# worker_heartbeats: every worker that is not stopped, or stopped within the last hour, newest first.
WORKER_HEARTBEATS = """
SELECT worker_id, hostname, pid, concurrency, state, in_flight, jobs_done, is_scheduler, started_at,
       heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM queue_workers
WHERE state <> 'stopped' OR heartbeat_at > now() - interval '1 hour'
ORDER BY (state = 'stopped'), heartbeat_at DESC
"""

# deliveries_by_status: how many webhook deliveries of each status are kept.
DELIVERIES_BY_STATUS = """
SELECT status, count(*) AS deliveries FROM webhook_deliveries GROUP BY status ORDER BY status
"""

# ----------------------------------------------------------------------------- queue

# job_groups: every fairness group (merchant id) the queue knows, for the merchant filter.
JOB_GROUPS = "SELECT group_key FROM job_groups ORDER BY group_key"

# jobs_page: one page of jobs, newest first, optionally filtered by state, lane, group and kind.
JOBS_PAGE = """
SELECT id, kind, group_key, lane, state, attempt, max_attempts, collapsed, run_at, created_at,
       finished_at, errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(lane)s::smallint IS NULL OR lane = %(lane)s)
  AND (%(group)s::text IS NULL OR group_key = %(group)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# job_detail: everything about one job: payload, attempts, error history, lease.
JOB_DETAIL = """
SELECT id, kind, payload, group_key, lane, state, singleton_key, lock_key, run_at, attempt,
       max_attempts, collapsed, worker_id, lease_expires_at, errors, created_at, started_at, finished_at
FROM jobs WHERE id = %(id)s
"""

# delivery_of_webhook: the delivery a webhook job came from (its payload's delivery_id).
DELIVERY_OF_WEBHOOK = """
SELECT id, webhook_id, shop_domain, topic, status, received_at
FROM webhook_deliveries WHERE webhook_id = %(webhook_id)s
"""

# ----------------------------------------------------------------------------- failures

# dead_jobs_page: one page of dead-lettered jobs, newest first, with the last error.
DEAD_JOBS_PAGE = """
SELECT id, kind, group_key, lane, attempt, max_attempts, created_at, finished_at,
       errors -> -1 ->> 'error' AS last_error_type, errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE state = 'dead' AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

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

# jobs_of_delivery: the job(s) an accepted delivery enqueued (the payload names its webhook id).
# No index serves this: it scans the merchant's webhook jobs, bounded by the statement timeout.
JOBS_OF_DELIVERY = """
SELECT id, kind, state, attempt, max_attempts, finished_at, errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE group_key = %(group)s AND kind LIKE 'webhook.%%' AND payload ->> 'delivery_id' = %(webhook_id)s
ORDER BY id
"""

# ----------------------------------------------------------------------------- audit trail
# The sync part's table (migration 0005_sync.sql); the page says so when it is absent.
AUDIT_TABLE = "sync_audit"

# audit_page: one page of the audit trail, newest first (at, id), optionally for one store, one
# object and one cause; `before` is the id of the last entry of the previous page.
AUDIT_PAGE = """
SELECT id, at, shop, object_type, object_id, action, before, after, cause, detail
FROM sync_audit
WHERE (%(shop)s::text IS NULL OR shop = %(shop)s)
  AND (%(object)s::text IS NULL OR object_id = %(object)s)
  AND (%(cause)s::text IS NULL OR cause = %(cause)s)
  AND (%(before)s::bigint IS NULL
       OR (at, id) < (SELECT c.at, c.id FROM sync_audit c WHERE c.id = %(before)s))
ORDER BY at DESC, id DESC
LIMIT %(limit)s
"""

# store_domains: every configured store, for the audit trail's store filter.
STORE_DOMAINS = "SELECT shop_domain FROM stores ORDER BY shop_domain"
