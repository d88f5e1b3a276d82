"""Prometheus metrics for the queue.

Two kinds: a worker's own counters and histograms (`WORKER_*`, in the process that runs jobs,
served on `storesync worker --metrics-port`), and gauges read from the database
(`QueueGauges`), which the web tier's `/metrics` refreshes on each scrape so any process can
report the state of the whole queue.
"""

from __future__ import annotations

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from storesync.queue import queries as q

WORKER_JOBS = Counter(
    "storesync_worker_jobs_total", "Job runs finished by this worker, by outcome.",
    ["kind", "lane", "outcome"],  # outcome: succeeded | retried | dead | released | lost
)
WORKER_JOB_SECONDS = Histogram(
    "storesync_worker_job_duration_seconds", "Handler run time.", ["kind", "lane"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
WORKER_CLAIM_SECONDS = Histogram(
    "storesync_worker_claim_duration_seconds", "Time of one batched claim round trip.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
WORKER_IN_FLIGHT = Gauge("storesync_worker_in_flight_jobs", "Jobs this worker is running now.")

LANE_NAMES = {0: "inventory", 1: "catalog", 2: "backfill"}
STATES = ("queued", "running", "succeeded", "dead", "cancelled")


class QueueGauges:
    """Database-wide queue gauges registered in `registry`; call `refresh(conn)` before a scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge("storesync_queue_jobs", "Jobs in the table by state and lane.",
                          ["state", "lane"], registry=registry)
        self.due = Gauge("storesync_queue_due_jobs", "Queued jobs that are due, per group (merchant).",
                         ["group"], registry=registry)
        self.age = Gauge("storesync_queue_oldest_due_age_seconds",
                         "Age of the oldest due queued job, per group (merchant).", ["group"], registry=registry)
        self.workers = Gauge("storesync_queue_live_workers", "Workers that heartbeated recently.",
                             registry=registry)

    def _apply(self, by_state: list[tuple], by_group: list[tuple], workers: int) -> None:
        counts = {(s, lane): 0 for s in STATES for lane in LANE_NAMES}
        for state, lane, n in by_state:
            counts[(state, lane)] = n
        for (state, lane), n in counts.items():
            self.jobs.labels(state, LANE_NAMES[lane]).set(n)
        self.due.clear()
        self.age.clear()
        for group, n, age in by_group:
            self.due.labels(group).set(n)
            self.age.labels(group).set(max(age, 0.0))
        self.workers.set(workers)

    def refresh(self, conn: psycopg.Connection, *, live_within: float = 60.0) -> None:
        by_state = conn.execute(q.JOBS_BY_STATE_AND_LANE).fetchall()
        by_group = conn.execute(q.QUEUE_AGE_BY_GROUP).fetchall()
        workers = conn.execute(q.LIVE_WORKERS, {"within": live_within}).fetchall()
        self._apply(by_state, by_group, len(workers))

    async def refresh_async(self, conn: psycopg.AsyncConnection, *, live_within: float = 60.0) -> None:
        by_state = await (await conn.execute(q.JOBS_BY_STATE_AND_LANE)).fetchall()
        by_group = await (await conn.execute(q.QUEUE_AGE_BY_GROUP)).fetchall()
        workers = await (await conn.execute(q.LIVE_WORKERS, {"within": live_within})).fetchall()
        self._apply(by_state, by_group, len(workers))
