"""Every SQL statement of the queue, named, each with a one-line comment saying what it does.

Parameters are psycopg named placeholders. Nothing here opens connections: callers pass theirs.
Lock ordering (why the queue cannot deadlock itself) is described in `storesync.queue.claim`.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- enqueue

# enqueue_one: insert a job (registering its group) or collapse it into the queued job that holds
# its singleton key (newest payload, highest lane, earliest run_at); returns (id, collapsed).
# A group is inserted only when missing: inserting a known one (ON CONFLICT DO NOTHING) waits for
# any claim that has just updated its row to commit (the unique check sees the new version).
ENQUEUE_ONE = """
WITH new_group AS (
    INSERT INTO job_groups (group_key)
    SELECT %(group)s WHERE NOT EXISTS (SELECT 1 FROM job_groups WHERE group_key = %(group)s)
    ON CONFLICT DO NOTHING
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
    SELECT DISTINCT group_key FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM job_groups g WHERE g.group_key = i.group_key)
    ORDER BY group_key
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

# ----------------------------------------------------------------------------- claim

# claim_jobs: one statement, one snapshot. Lock (SKIP LOCKED) the least-recently-served groups
# that have queued jobs (found by a loose index scan over jobs_ready, so idle groups cost
# nothing): `groups` at most, 1/`spread` of the active groups but at least `min_groups`, so
# that concurrent claims find groups of their own instead of coming back empty; skip a locked group whose row changed after our snapshot (another claim served it
# since, so our view of its jobs is stale); take up to `cap` head jobs per group (an even share of
# twice the batch at most; less if the group's concurrency limit leaves less room), skipping jobs
# whose lock key is running and keeping one job per lock key (candidates are row-locked SKIP LOCKED
# as they are read); order lanes first, then round-robin across groups (each group's 1st job
# before any group's 2nd); mark the chosen ones running under a lease; move the served groups,
# and those with nothing claimable (empty, at their concurrency limit, stale), to the back.
CLAIM_JOBS = """
WITH RECURSIVE active(group_key) AS (
    (SELECT group_key FROM jobs WHERE state = 'queued' ORDER BY group_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.group_key FROM jobs j
            WHERE j.state = 'queued' AND j.group_key > a.group_key
            ORDER BY j.group_key LIMIT 1)
    FROM active a WHERE a.group_key IS NOT NULL
), picked AS MATERIALIZED (
    SELECT g.group_key, g.concurrency_limit, g.last_served_at, g.xmin AS locked_xmin
    FROM job_groups g
    WHERE g.group_key IN (SELECT group_key FROM active WHERE group_key IS NOT NULL)
    ORDER BY g.last_served_at, g.group_key
    LIMIT (SELECT least(%(groups)s, greatest(%(min_groups)s, ceil(count(*)::numeric / %(spread)s)))
           FROM active WHERE group_key IS NOT NULL)
    FOR NO KEY UPDATE OF g SKIP LOCKED
), share AS (
    SELECT least(%(cap)s, greatest(1, ceil(2.0 * %(batch)s / greatest(count(*), 1))::integer)) AS cap
    FROM picked
), grp AS MATERIALIZED (
    SELECT p.group_key, row_number() OVER (ORDER BY p.last_served_at, p.group_key) AS ord,
           CASE WHEN NOT (seen.xmin = p.locked_xmin) THEN 0
                WHEN p.concurrency_limit IS NULL THEN share.cap
                ELSE greatest(0, least(share.cap, p.concurrency_limit - (
                    SELECT count(*) FROM jobs r WHERE r.group_key = p.group_key AND r.state = 'running')))
           END AS room
    FROM picked p JOIN job_groups seen ON seen.group_key = p.group_key CROSS JOIN share
), cand AS MATERIALIZED (
    SELECT h.id, h.row_id, h.lane, h.lock_key, grp.group_key, grp.ord, h.rn
    FROM grp CROSS JOIN LATERAL (
        SELECT s.id, s.row_id, s.lane, s.lock_key, row_number() OVER () AS rn FROM (
            SELECT j.id, j.ctid AS row_id, j.lane, j.run_at, j.lock_key FROM jobs j
            WHERE j.group_key = grp.group_key AND j.state = 'queued' AND j.run_at <= now()
            ORDER BY j.lane, j.run_at, j.id
            LIMIT grp.room + 8
            FOR NO KEY UPDATE OF j SKIP LOCKED
        ) s
        WHERE s.lock_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs r WHERE r.lock_key = s.lock_key AND r.state = 'running')
        LIMIT grp.room
    ) h
    WHERE grp.room > 0
), chosen AS MATERIALIZED (
    SELECT id, row_id, lock_key, group_key FROM cand c
    WHERE c.lock_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM cand o WHERE o.lock_key = c.lock_key AND (o.lane, o.rn, o.ord) < (c.lane, c.rn, c.ord))
    ORDER BY lane, rn, ord
    LIMIT %(batch)s
), keyed AS MATERIALIZED (
    SELECT row_id FROM chosen
    WHERE lock_key IS NULL OR pg_try_advisory_xact_lock(%(lock_ns)s, hashtext(lock_key))
), claimed AS (
    -- By ctid (the rows are locked by this statement, so they cannot move): a TID scan whatever
    -- the statistics say (a queue table goes from empty to 20k rows faster than ANALYZE runs).
    UPDATE jobs j
    SET state = 'running', attempt = j.attempt + 1, worker_id = %(worker)s, started_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease)s)
    WHERE j.ctid = ANY (ARRAY(SELECT row_id FROM keyed))
    RETURNING j.id, j.kind, j.payload, j.group_key, j.lane, j.attempt, j.max_attempts, j.lock_key
), served AS (
    UPDATE job_groups g SET last_served_at = clock_timestamp()
    WHERE g.group_key IN (SELECT group_key FROM chosen)
       OR g.group_key IN (SELECT group_key FROM grp EXCEPT SELECT group_key FROM cand)
)
SELECT id, kind, payload, group_key, lane, attempt, max_attempts, lock_key FROM claimed
"""

# custom_plans_only: plan the claim afresh even when it is prepared (for its transaction only).
CUSTOM_PLANS_ONLY = """
SET LOCAL plan_cache_mode = force_custom_plan
"""

# claim_jobs_fifo: the bare SKIP LOCKED batch claim (no fairness, no lock keys); the benchmark's
# ceiling, kept next to the real claim so both measure the same table and indexes.
CLAIM_JOBS_FIFO = """
WITH locked AS (
    SELECT id FROM jobs WHERE state = 'queued' AND run_at <= now()
    ORDER BY lane, run_at, id LIMIT %(batch)s
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE jobs j
SET state = 'running', attempt = j.attempt + 1, worker_id = %(worker)s, started_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM locked WHERE j.id = locked.id
RETURNING j.id, j.kind, j.payload, j.group_key, j.lane, j.attempt, j.max_attempts, j.lock_key
"""

# ----------------------------------------------------------------------------- outcomes

# async_commit: this transaction's commit need not wait for the WAL flush (completions only).
ASYNC_COMMIT = """
SET LOCAL synchronous_commit = off
"""

# complete_jobs: mark runs succeeded; (id, attempt) fences out a run whose lease was lost and
# whose job was claimed again. Returns the ids that were still ours.
COMPLETE_JOBS = """
UPDATE jobs j SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS done(id, attempt)
WHERE j.id = done.id AND j.attempt = done.attempt AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.id
"""

# retry_job: a failed run goes back to the queue at `run_at = now() + delay` with its error
# appended; if a newer job with its singleton key is already queued it is superseded instead.
RETRY_JOB = """
UPDATE jobs j
SET state = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN 'cancelled' ELSE 'queued' END,
    run_at = now() + make_interval(secs => %(delay)s),
    lease_expires_at = NULL,
    finished_at = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN now() END,
    errors = j.errors || jsonb_build_array(%(error)s::jsonb || jsonb_build_object('at', now()))
WHERE j.id = %(id)s AND j.attempt = %(attempt)s AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.state
"""

# after_outage: for the runs in a CTE `expired` (their worker died, or their database went
# away), whether the attempt is given back (fewer than `max_attempts` given back before) and the
# state each goes to: the two statements below share it.
_AFTER_OUTAGE = """, verdict AS (
    SELECT e.id,
           (SELECT count(*) FROM jsonb_array_elements(j.errors) x
            WHERE (x ->> 'infrastructure')::boolean) < j.max_attempts AS given_back
    FROM expired e JOIN jobs j ON j.id = e.id
), next AS (
    SELECT v.id, v.given_back,
           CASE WHEN NOT v.given_back AND j.attempt >= j.max_attempts THEN 'dead'
                WHEN j.singleton_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                THEN 'cancelled'
                ELSE 'queued' END AS state
    FROM verdict v JOIN jobs j ON j.id = v.id
)"""

# retry_after_outage: a run that failed because the database went away under it (a restart, a
# failover) goes back to the queue with its attempt given back (its error marked
# `infrastructure`), at most `max_attempts` times per job, as a run whose worker died
# (reap_expired_leases); past that it counts, and the last attempt goes to the dead letter.
RETRY_AFTER_OUTAGE = f"""
WITH expired AS (
    SELECT id FROM jobs
    WHERE id = %(id)s AND attempt = %(attempt)s AND state = 'running' AND worker_id = %(worker)s
){_AFTER_OUTAGE}
UPDATE jobs j
SET state = n.state,
    attempt = j.attempt - CASE WHEN n.given_back THEN 1 ELSE 0 END,
    run_at = now() + make_interval(secs => %(delay)s),
    lease_expires_at = NULL,
    finished_at = CASE WHEN n.state = 'queued' THEN NULL ELSE now() END,
    errors = j.errors || jsonb_build_array(
        %(error)s::jsonb || jsonb_build_object('at', now(), 'infrastructure', true))
FROM next n WHERE j.id = n.id
RETURNING j.state
"""

# bury_job: a run that failed permanently or used its last attempt goes to the dead letter.
BURY_JOB = """
UPDATE jobs j
SET state = 'dead', finished_at = now(), lease_expires_at = NULL,
    errors = j.errors || jsonb_build_array(%(error)s::jsonb || jsonb_build_object('at', now()))
WHERE j.id = %(id)s AND j.attempt = %(attempt)s AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.state
"""

# defer_job: a run that cannot make progress now for a reason not its own (its store's rate-limit
# bucket is empty) goes back to the queue due after `delay`, its attempt given back (not a
# failure, no error recorded), marked deferred (`payloads.DEFERRED_SINCE`: still work its store
# is behind on); superseded instead if a job with its singleton key is queued.
DEFER_JOB = """
UPDATE jobs j
SET state = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN 'cancelled' ELSE 'queued' END,
    attempt = j.attempt - 1,
    payload = j.payload || jsonb_build_object('deferred_since', coalesce(j.payload ->> 'deferred_since', now()::text)),
    run_at = now() + make_interval(secs => %(delay)s),
    lease_expires_at = NULL,
    finished_at = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN now() END
WHERE j.id = %(id)s AND j.attempt = %(attempt)s AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.state
"""

# release_jobs: a draining worker hands back runs it will not finish (attempt not counted).
RELEASE_JOBS = """
UPDATE jobs j
SET state = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN 'cancelled' ELSE 'queued' END,
    attempt = j.attempt - 1, run_at = now(), lease_expires_at = NULL,
    finished_at = CASE WHEN j.singleton_key IS NOT NULL AND EXISTS (
                     SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued')
                 THEN now() END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'error', 'Released', 'retryable', true,
        'message', 'worker ' || %(worker)s || ' shut down before the job finished'))
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS rel(id, attempt)
WHERE j.id = rel.id AND j.attempt = rel.attempt AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.id
"""

# ----------------------------------------------------------------------------- leases

# extend_leases: renew this worker's leases; returns the runs that are still ours (others were
# reaped and must be abandoned so the job never runs twice at once).
EXTEND_LEASES = """
UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS run(id, attempt)
WHERE j.id = run.id AND j.attempt = run.attempt AND j.state = 'running' AND j.worker_id = %(worker)s
RETURNING j.id
"""

# reap_expired_leases: runs whose worker stopped heartbeating go back to the queue. A worker's
# death is not the job's failure: the attempt is given back (marked `infrastructure` in its
# error), at most `max_attempts` times per job, after which such attempts count and the last one
# goes to the dead letter (a job that kills every worker it runs on still ends). A small batch
# per call.
REAP_EXPIRED_LEASES = f"""
WITH expired AS (
    SELECT id FROM jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
){_AFTER_OUTAGE}
UPDATE jobs j
SET state = n.state, run_at = now(), lease_expires_at = NULL,
    attempt = j.attempt - CASE WHEN n.given_back THEN 1 ELSE 0 END,
    finished_at = CASE WHEN n.state = 'queued' THEN NULL ELSE now() END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'error', 'LeaseExpired', 'retryable', true,
        'infrastructure', true,
        'message', 'worker ' || coalesce(j.worker_id, '?') || ' stopped renewing the lease'))
FROM next n WHERE j.id = n.id
RETURNING j.id, j.state
"""

# ----------------------------------------------------------------------------- workers

# upsert_worker: record this worker's heartbeat (and state) for /readyz and the dashboard, with
# its own metrics (compressed Prometheus text; NULL keeps the last ones) for the ops listener.
UPSERT_WORKER = """
INSERT INTO queue_workers (worker_id, hostname, pid, concurrency, state, in_flight, jobs_done, is_scheduler,
                           metrics)
VALUES (%(worker)s, %(hostname)s, %(pid)s, %(concurrency)s, %(state)s, %(in_flight)s, %(jobs_done)s,
        %(is_scheduler)s, %(metrics)s)
ON CONFLICT (worker_id) DO UPDATE
SET state = EXCLUDED.state, in_flight = EXCLUDED.in_flight, jobs_done = EXCLUDED.jobs_done,
    is_scheduler = EXCLUDED.is_scheduler, heartbeat_at = now(),
    metrics = coalesce(EXCLUDED.metrics, queue_workers.metrics)
"""

# worker_metrics: the metrics of every worker that heartbeated within `within` seconds (stopped
# ones too, so their last counts are scraped once more).
WORKER_METRICS = """
SELECT worker_id, metrics FROM queue_workers
WHERE metrics IS NOT NULL AND heartbeat_at > now() - make_interval(secs => %(within)s)
ORDER BY worker_id
"""

# live_workers: workers that heartbeated within the last `within` seconds and have not stopped.
LIVE_WORKERS = """
SELECT worker_id, hostname, pid, concurrency, state, in_flight, jobs_done, is_scheduler, started_at,
       heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM queue_workers
WHERE state <> 'stopped' AND heartbeat_at > now() - make_interval(secs => %(within)s)
ORDER BY started_at
"""

# prune_workers: forget worker rows that have not heartbeated for a day.
PRUNE_WORKERS = """
DELETE FROM queue_workers WHERE heartbeat_at < now() - interval '1 day'
"""

# ----------------------------------------------------------------------------- schedules

# listen_jobs: subscribe this (direct-path) session to the enqueue wake-ups.
LISTEN_JOBS = "LISTEN storesync_jobs"

# session_alive: a no-op round trip proving the scheduler's session (and so its lock) still holds.
SESSION_ALIVE = """
SELECT 1
"""

# try_scheduler_lock: become the one active scheduler (session advisory lock, direct path only).
TRY_SCHEDULER_LOCK = """
SELECT pg_try_advisory_lock(%(key)s)
"""

# upsert_schedule: declare or update a periodic job, keeping its next due time.
UPSERT_SCHEDULE = """
INSERT INTO queue_schedules (name, kind, payload, group_key, lane, every_seconds)
VALUES (%(name)s, %(kind)s, %(payload)s, %(group)s, %(lane)s, %(every)s)
ON CONFLICT (name) DO UPDATE
SET kind = EXCLUDED.kind, payload = EXCLUDED.payload, group_key = EXCLUDED.group_key,
    lane = EXCLUDED.lane, every_seconds = EXCLUDED.every_seconds, updated_at = now(),
    next_run_at = least(queue_schedules.next_run_at, now() + make_interval(secs => EXCLUDED.every_seconds))
"""

# take_due_schedules: advance every due schedule the running code still declares by its period
# (missed ticks are not replayed) and return what to enqueue now.
TAKE_DUE_SCHEDULES = """
UPDATE queue_schedules
SET next_run_at = now() + make_interval(secs => every_seconds), updated_at = now()
WHERE next_run_at <= now() AND name = ANY(%(names)s::text[])
RETURNING name, kind, payload, group_key, lane
"""

# ----------------------------------------------------------------------------- retention

# prune_finished_jobs: delete a small batch of jobs that finished (succeeded or cancelled) before
# the cutoff, oldest first, skipping rows anyone holds; repeated until a batch comes back short.
PRUNE_FINISHED_JOBS = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE state IN ('succeeded', 'cancelled') AND finished_at < now() - make_interval(secs => %(age)s)
    ORDER BY finished_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

# prune_dead_jobs: the same for dead letters, which are kept longer for replay.
PRUNE_DEAD_JOBS = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE state = 'dead' AND finished_at < now() - make_interval(secs => %(age)s)
    ORDER BY finished_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

# count_prunable_jobs: finished and dead jobs past their retention (what the two above delete).
COUNT_PRUNABLE_JOBS = """
SELECT (SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'cancelled')
                                    AND finished_at < now() - make_interval(secs => %(age)s)),
       (SELECT count(*) FROM jobs WHERE state = 'dead'
                                    AND finished_at < now() - make_interval(secs => %(dead_age)s))
"""

# ----------------------------------------------------------------------------- operators

# list_jobs: the newest jobs, optionally filtered by state, group, kind and lane.
LIST_JOBS = """
SELECT id, kind, group_key, lane, state, attempt, max_attempts, run_at, created_at, finished_at,
       errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(group)s::text IS NULL OR group_key = %(group)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(lane)s::smallint IS NULL OR lane = %(lane)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# show_job: everything about one job, error history included.
SHOW_JOB = """
SELECT id, kind, payload, group_key, lane, state, singleton_key, lock_key, run_at, attempt,
       max_attempts, collapsed, worker_id, lease_expires_at, errors, created_at, started_at, finished_at
FROM jobs WHERE id = %(id)s
"""

# replay_dead_job: put a dead (or cancelled) job back in the queue with fresh attempts; its error
# history is kept. Refused (no row) if a job with its singleton key is already queued.
REPLAY_DEAD_JOB = """
UPDATE jobs j
SET state = 'queued', attempt = 0, run_at = now(), finished_at = NULL, worker_id = NULL,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'error', 'Replayed', 'retryable', true,
        'message', 'replayed by an operator'))
WHERE j.id = %(id)s AND j.state IN ('dead', 'cancelled')
  AND NOT (j.singleton_key IS NOT NULL AND EXISTS (
      SELECT 1 FROM jobs q WHERE q.singleton_key = j.singleton_key AND q.state = 'queued'))
RETURNING j.id
"""

# cancel_job: a queued job will not run (running jobs finish; their lease holder decides).
CANCEL_JOB = """
UPDATE jobs SET state = 'cancelled', finished_at = now()
WHERE id = %(id)s AND state = 'queued'
RETURNING id
"""

# notify_jobs: wake listening workers (replayed and released jobs; inserts notify by trigger).
NOTIFY_JOBS = """
SELECT pg_notify('storesync_jobs', '')
"""

# ----------------------------------------------------------------------------- metrics

# jobs_by_state_and_lane: counts for the jobs gauge.
JOBS_BY_STATE_AND_LANE = """
SELECT state, lane, count(*) FROM jobs GROUP BY state, lane
"""

# queue_age_by_group: per group the queue knows (every one, so that a gauge reads 0 rather than
# vanishing), queued jobs that are due and the age of the oldest one (0 without any).
QUEUE_AGE_BY_GROUP = """
SELECT g.group_key, count(j.id), coalesce(extract(epoch FROM now() - min(j.run_at)), 0)::float8
FROM job_groups g
LEFT JOIN jobs j ON j.group_key = g.group_key AND j.state = 'queued' AND j.run_at <= now()
GROUP BY g.group_key
"""

# ----------------------------------------------------------------------------- parking

# unpark_jobs: the queued jobs parked for a key (e.g. a paused store) become due now.
UNPARK_JOBS = """
UPDATE jobs SET run_at = now()
WHERE state = 'queued' AND payload->>'parked_for' = %(key)s AND run_at > now()
"""

# job_states: the state of each of some jobs (ids no longer in the table are left out).
JOB_STATES = """
SELECT id, state FROM jobs WHERE id = ANY(%(ids)s)
"""

# count_parked: how many queued jobs are parked for a key.
COUNT_PARKED = """
SELECT count(*) FROM jobs WHERE state = 'queued' AND payload->>'parked_for' = %(key)s
"""

# count_jobs: how many jobs the table holds, in any state.
COUNT_JOBS = "SELECT count(*) FROM jobs"

# count_due_or_running: jobs running, or queued and due (periodic jobs waiting for their time do
# not count): whether the queue has settled.
COUNT_DUE_OR_RUNNING = """
SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_at <= now())
"""

# ----------------------------------------------------------------------------- readiness

# queue_workers_exists: whether the queue's worker table exists in this database.
QUEUE_WORKERS_EXISTS = "SELECT to_regclass('queue_workers') IS NOT NULL"

# latest_worker_heartbeat: the newest heartbeat of a running worker and how many workers run.
LATEST_WORKER_HEARTBEAT = """
SELECT max(heartbeat_at), extract(epoch FROM now() - max(heartbeat_at)), count(*)
FROM queue_workers WHERE state <> 'stopped'
"""

# ----------------------------------------------------------------------------- dashboard
# Read on the pooled path inside the caller's transaction; lists are keyset-paginated on id
# (`before`), the caller asking one row more than a page to know whether an older page exists.

# queue_depth_by_lane_state: how many jobs each lane holds in each state.
QUEUE_DEPTH_BY_LANE_STATE = """
SELECT lane, state, count(*) AS jobs FROM jobs GROUP BY lane, state ORDER BY lane, state
"""

# queue_by_group: per group (merchant) with unfinished or dead jobs: queued (and due) jobs, how
# long the oldest due job has waited since it became due, running and dead jobs.
QUEUE_BY_GROUP = """
SELECT group_key,
       count(*) FILTER (WHERE state = 'queued') AS queued,
       count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS due,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))::float8
           AS oldest_due_age_s,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'dead') AS dead
FROM jobs
WHERE state IN ('queued', 'running', 'dead')
GROUP BY group_key
ORDER BY oldest_due_age_s DESC NULLS LAST, group_key
"""

# worker_heartbeats: every worker that is not stopped, or stopped within the last hour, newest first.
WORKER_HEARTBEATS = """
SELECT worker_id, hostname, pid, concurrency, state, in_flight, jobs_done, is_scheduler, started_at,
       heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM queue_workers
WHERE state <> 'stopped' OR heartbeat_at > now() - interval '1 hour'
ORDER BY (state = 'stopped'), heartbeat_at DESC
"""

# job_groups: every fairness group (merchant id) the queue knows.
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

# dead_jobs_page: one page of dead-lettered jobs, newest first, with the last error.
DEAD_JOBS_PAGE = """
SELECT id, kind, group_key, lane, attempt, max_attempts, created_at, finished_at,
       errors -> -1 ->> 'error' AS last_error_type, errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE state = 'dead' AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# jobs_with_payload_value: a group's jobs of kinds starting with a prefix whose payload holds one
# value under one key (e.g. the webhook jobs of one delivery). No index serves this: it scans the
# group's jobs of those kinds, bounded by the caller's statement timeout.
JOBS_WITH_PAYLOAD_VALUE = """
SELECT id, kind, state, attempt, max_attempts, finished_at, errors -> -1 ->> 'message' AS last_error
FROM jobs
WHERE group_key = %(group)s AND kind LIKE %(kind_prefix)s || '%%' AND payload ->> %(key)s = %(value)s
ORDER BY id
"""

# ----------------------------------------------------------------------------- work per target
# Whom a job is for is in its payload, which only its enqueuer understands: these group by the
# values of the payload keys the caller names (`keys`) and leave the meaning to it.

# work_by_payload: unfinished jobs, and jobs that died within `dead_within` seconds, per group,
# kind, the store they are parked for and the values of `keys`: jobs running, due, deferred or
# waiting out a retry's backoff (`active`: their change is not applied yet; the oldest one's age counted
# from when it was first parked or else enqueued), parked and waiting (`parked`, since when),
# dead (the newest death). Jobs never run that wait for a later time (periodic, debounced) are
# no backlog and count nowhere. One scan of the unfinished jobs (and the recent dead ones, by
# their index), bounded by the caller's statement timeout.
WORK_BY_PAYLOAD = """
WITH work AS (
    SELECT group_key, kind, state, run_at, finished_at,
           state = 'running' OR (state = 'queued' AND (run_at <= now() OR payload ? 'deferred_since'
               OR (attempt > 0 AND payload ->> 'parked_for' IS NULL))) AS active,
           payload ->> 'parked_for' AS parked_for,
           coalesce((payload ->> 'parked_since')::timestamptz, created_at) AS since,
           (SELECT jsonb_object_agg(k, payload -> k) FROM unnest(%(keys)s::text[]) AS k WHERE payload ? k)
               AS keyed
    FROM jobs
    WHERE state IN ('queued', 'running')
       OR (state = 'dead' AND finished_at > now() - make_interval(secs => %(dead_within)s))
)
SELECT group_key, kind, parked_for, coalesce(keyed, '{}') AS keyed,
       count(*) FILTER (WHERE active) AS active,
       min(since) FILTER (WHERE active) AS oldest_active,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now() AND parked_for IS NOT NULL) AS parked,
       min(since) FILTER (WHERE state = 'queued' AND run_at > now() AND parked_for IS NOT NULL)
           AS parked_since,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       max(finished_at) FILTER (WHERE state = 'dead') AS last_dead_at
FROM work
GROUP BY 1, 2, 3, 4
"""

# recent_dead_jobs: the newest dead jobs (by when they died), with their payload and last error.
RECENT_DEAD_JOBS = """
SELECT id, kind, group_key, payload, finished_at, attempt,
       errors -> -1 ->> 'error' AS last_error_type, errors -> -1 ->> 'message' AS last_error,
       coalesce((errors -> -1 ->> 'retryable')::boolean, true) AS last_retryable
FROM jobs
WHERE state = 'dead' AND finished_at > now() - make_interval(secs => %(within)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s
"""

# dead_job_ids: every dead job (optionally of one kind), oldest first: `jobs retry --all-dead`.
DEAD_JOB_IDS = """
SELECT id FROM jobs WHERE state = 'dead' AND (%(kind)s::text IS NULL OR kind = %(kind)s) ORDER BY id
"""

# pending_payload_values: the distinct values under `keys` in the payloads of unfinished jobs
# (e.g. which source changes still have work in flight).
PENDING_PAYLOAD_VALUES = """
SELECT DISTINCT k, payload ->> k
FROM jobs, unnest(%(keys)s::text[]) AS k
WHERE state IN ('queued', 'running') AND payload ? k
"""
