-- 0016 operator records: what the dashboard's store health, its charts and the alerting metrics
-- need that was not recorded before, each kept cheap (docs/decisions/0040-operator-records.md).

-- Source changes and how far they have travelled: one row per webhook delivery that routed
-- sync jobs (its cause, `delivery:<webhook id>`, is carried by every job and write it leads to).
-- Written once when the webhook job routes, then by each audited write of that cause (one
-- primary-key UPDATE folded into the audit INSERT); settled by the periodic `sync.settle_changes`
-- once no job carrying the cause is left, which observes its propagation latency.
CREATE TABLE sync_changes (
    change           text PRIMARY KEY,
    merchant_id      text NOT NULL,
    source_shop      text NOT NULL,
    topic            text NOT NULL,
    -- When the change happened in the source store: X-Shopify-Triggered-At when plausible,
    -- else when the web tier received the delivery.
    changed_at       timestamptz NOT NULL,
    first_written_at timestamptz,
    last_written_at  timestamptz,
    writes           integer NOT NULL DEFAULT 0,
    settled_at       timestamptz
);
-- the charts (latency by when the change happened) and retention
CREATE INDEX sync_changes_changed_at ON sync_changes (changed_at);
-- the settle job's candidates
CREATE INDEX sync_changes_unsettled ON sync_changes (last_written_at) WHERE settled_at IS NULL;

-- One row per reconcile run of a merchant (the periodic job, `storesync reconcile`, its
-- --dry-run): what was checked and, per store, the drift found and what was repaired.
CREATE TABLE sync_reconcile_runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id         text NOT NULL,
    cause               text NOT NULL,
    dry_run             boolean NOT NULL DEFAULT false,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL DEFAULT now(),
    products_checked    integer NOT NULL DEFAULT 0,
    levels_checked      integer NOT NULL DEFAULT 0,
    collections_checked integer NOT NULL DEFAULT 0,
    -- {shop: {"found": n, "repaired": n, "left": n, "skipped": reason|null, "kinds": {kind: n}}}
    stores              jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX sync_reconcile_runs_latest ON sync_reconcile_runs (merchant_id, finished_at DESC);
CREATE INDEX sync_reconcile_runs_age ON sync_reconcile_runs (finished_at);

-- Per-minute counts every process adds to (webhooks received per store, job outcomes, Admin
-- API calls per store and outcome): the dashboard's charts over the last hour and day. Each
-- process sums its increments in memory and adds them every few seconds (one upsert).
CREATE TABLE ops_minute_counts (
    series text NOT NULL,
    minute timestamptz NOT NULL,
    key    text NOT NULL DEFAULT '',
    value  double precision NOT NULL,
    PRIMARY KEY (series, minute, key)
);
CREATE INDEX ops_minute_counts_age ON ops_minute_counts (minute);

-- Each worker's own Prometheus metrics (its job and Admin API counters and histograms), written
-- with its heartbeat: the web tier's operations listener serves them, so workers need no port.
ALTER TABLE queue_workers ADD COLUMN metrics bytea;
