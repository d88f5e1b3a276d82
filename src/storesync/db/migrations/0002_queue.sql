-- 0002 queue: storesync's own durable job queue (see src/storesync/queue/).
--
-- One `jobs` table holds every job from enqueue to pruning; `state` moves
--   queued -> running -> succeeded | queued (retry, lease expired) | dead | cancelled.
-- Dead jobs keep their error history in `errors` (the dead letter); `storesync jobs retry`
-- puts them back in the queue. `job_groups` is the fairness state: one row per group
-- (merchant), served least-recently-first by claims.

CREATE TABLE job_groups (
    group_key         text PRIMARY KEY,
    -- The fairness clock: claims lock the groups served longest ago first.
    last_served_at    timestamptz NOT NULL DEFAULT '-infinity',
    -- At most this many running jobs of the group at once (NULL: no limit).
    concurrency_limit integer CHECK (concurrency_limit IS NULL OR concurrency_limit > 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_groups_least_recently_served ON job_groups (last_served_at, group_key);

CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind <> ''),
    payload          jsonb NOT NULL DEFAULT '{}',
    group_key        text NOT NULL CHECK (group_key <> ''),
    -- 0 inventory, 1 catalog, 2 backfill: lower runs first.
    lane             smallint NOT NULL DEFAULT 1 CHECK (lane BETWEEN 0 AND 2),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    -- At most one QUEUED job per singleton key; later enqueues collapse into it.
    singleton_key    text,
    -- Jobs with the same lock key never run at the same time.
    lock_key         text,
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- Claims so far (the current run's number while running).
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    -- How many later enqueues were merged into this job.
    collapsed        integer NOT NULL DEFAULT 0,
    worker_id        text,
    lease_expires_at timestamptz,
    -- Error history, oldest first: [{attempt, at, error, message, retryable}].
    errors           jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL))
);

-- The claim's per-group scan: a group's ready jobs in lane, due time, age order.
CREATE INDEX jobs_ready ON jobs (group_key, lane, run_at, id) WHERE state = 'queued';

-- Singleton collapse: enqueue's ON CONFLICT target. Running jobs are outside the index, so a
-- running job never blocks a new queued one with the same key.
CREATE UNIQUE INDEX jobs_one_queued_per_singleton_key ON jobs (singleton_key)
    WHERE state = 'queued' AND singleton_key IS NOT NULL;

-- Lock-key mutual exclusion, enforced by Postgres itself: two running jobs cannot share a key.
CREATE UNIQUE INDEX jobs_one_running_per_lock_key ON jobs (lock_key)
    WHERE state = 'running' AND lock_key IS NOT NULL;

-- The reaper's scan (expired leases) and per-group running counts.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_running_group ON jobs (group_key) WHERE state = 'running';

-- Retention pruning of finished jobs, oldest first; dead letters listing.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'cancelled');
CREATE INDEX jobs_dead ON jobs (finished_at) WHERE state = 'dead';

-- Wake listening workers when jobs are inserted; NOTIFY is delivered at commit, so a rolled
-- back enqueue wakes nobody. Postgres folds identical notifications within a transaction.
CREATE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storesync_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_inserted AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();

-- One row per worker process: its heartbeat, read by /readyz and the dashboard.
CREATE TABLE queue_workers (
    worker_id    text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    concurrency  integer NOT NULL,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'draining', 'stopped')),
    in_flight    integer NOT NULL DEFAULT 0,
    jobs_done    bigint NOT NULL DEFAULT 0,
    is_scheduler boolean NOT NULL DEFAULT false,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Periodic jobs (reconciliation): the one active scheduler enqueues each when it is due.
CREATE TABLE queue_schedules (
    name          text PRIMARY KEY,
    kind          text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    group_key     text NOT NULL,
    lane          smallint NOT NULL DEFAULT 2 CHECK (lane BETWEEN 0 AND 2),
    every_seconds double precision NOT NULL CHECK (every_seconds > 0),
    next_run_at   timestamptz NOT NULL DEFAULT now(),
    last_job_id   bigint,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
