"""Every SQL statement of the queue, named, each with a one-line comment saying what it does.

Parameters are psycopg named placeholders. Nothing here opens connections: callers pass theirs.
Lock ordering (why the queue cannot deadlock itself) is described in `storesync.queue.claim`.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- enqueue

# enqueue_one: insert a job (registering its group) or collapse it into the queued job that holds
# its singleton key (newest payload, highest lane, earliest run_at); returns (id, collapsed).
ENQUEUE_ONE = """
WITH new_group AS (
    INSERT INTO job_groups (group_key) VALUES (%(group)s) ON CONFLICT DO NOTHING
)
INSERT INTO jobs (kind, payload, group_key, lane, singleton_key, lock_key, run_at, max_attempts)
VALUES (%(kind)s, %(payload)s, %(group)s, %(lane)s, %(singleton_key)s, %(lock_key)s,
        coalesce(%(run_at)s, now()), %(max_attempts)s)
ON CONFLICT (singleton_key) WHERE state = 'queued' AND singleton_key IS NOT NULL
DO UPDATE SET payload = EXCLUDED.payload,
              lane = least(jobs.lane, EXCLUDED.lane),
              run_at = least(jobs.run_at, EXCLUDED.run_at),
              collapsed = jobs.collapsed + 1
RETURNING id, xmax::text <> '0' AS collapsed
"""

# enqueue_batch: the batch form of enqueue_one over parallel arrays; groups and singleton keys are
# written in sorted order so two concurrent batches cannot deadlock on each other's new rows.
# Returns (id, singleton_key, collapsed) per spec; non-singleton rows come back in input order.
ENQUEUE_BATCH = """
WITH input AS (
    SELECT * FROM unnest(%(kind)s::text[], %(payload)s::jsonb[], %(group)s::text[],
                         %(lane)s::smallint[], %(singleton_key)s::text[], %(lock_key)s::text[],
                         %(run_at)s::timestamptz[], %(max_attempts)s::integer[])
        WITH ORDINALITY AS t(kind, payload, group_key, lane, singleton_key, lock_key, run_at,
                             max_attempts, ord)
), new_groups AS (
    INSERT INTO job_groups (group_key)
    SELECT DISTINCT group_key FROM input ORDER BY group_key
    ON CONFLICT DO NOTHING
)
INSERT INTO jobs (kind, payload, group_key, lane, singleton_key, lock_key, run_at, max_attempts)
SELECT kind, payload, group_key, lane, singleton_key, lock_key, coalesce(run_at, now()), max_attempts
FROM input ORDER BY singleton_key NULLS FIRST, ord
ON CONFLICT (singleton_key) WHERE state = 'queued' AND singleton_key IS NOT NULL
DO UPDATE SET payload = EXCLUDED.payload,
              lane = least(jobs.lane, EXCLUDED.lane),
              run_at = least(jobs.run_at, EXCLUDED.run_at),
              collapsed = jobs.collapsed + 1
RETURNING id, singleton_key, xmax::text <> '0' AS collapsed
"""
