"""Prometheus metrics for the queue.

Two kinds: a worker's own counters and histograms (`WORKER_*`, in the process that runs jobs,
served on `storesync worker --metrics-port`), and gauges read from the database
(`QueueGauges`), which the web tier's `/metrics` refreshes on each scrape so any process can
report the state of the whole queue.
"""

from __future__ import annotations

from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from storesync.queue import queries as q

WORKER_JOBS = Counter(
    "storesync_worker_jobs_total",
    "Job runs finished by this worker, by outcome.",
    ["kind", "lane", "outcome"],  # outcome: succeeded | retried | deferred | dead | released | lost
)
WORKER_JOB_SECONDS = Histogram(
    "storesync_worker_job_duration_seconds",
    "Handler run time.",
    ["kind", "lane"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
WORKER_CLAIM_SECONDS = Histogram(
    "storesync_worker_claim_duration_seconds",
    "Time of one batched claim round trip.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
WORKER_IN_FLIGHT = Gauge("storesync_worker_in_flight_jobs", "Jobs this worker is running now.")

LANE_NAMES = {0: "inventory", 1: "catalog", 2: "backfill"}
STATES = ("queued", "running", "succeeded", "dead", "cancelled")


class QueueGauges:
    """Database-wide queue gauges: a prometheus collector over the rows of the last `refresh`.

    A collector rather than `Gauge` objects because these are facts about the database, not about
    a process: in prometheus_client's multiprocess mode (several uvicorn workers) a `Gauge` would
    be written to a per-process file and summed or labelled per pid, which is wrong for them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int] = ([], [], 0)
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Any]:
        return []  # families are known only after a refresh

    def collect(self) -> list[GaugeMetricFamily]:
        by_state, by_group, workers = self._rows
        jobs = GaugeMetricFamily(
            "storesync_queue_jobs", "Jobs in the table by state and lane.", labels=["state", "lane"]
        )
        counts = {(s, lane): 0 for s in STATES for lane in LANE_NAMES}
        for state, lane, n in by_state:
            counts[(state, lane)] = n
        for (state, lane), n in counts.items():
            jobs.add_metric([state, LANE_NAMES[lane]], n)
        due = GaugeMetricFamily(
            "storesync_queue_due_jobs", "Queued jobs that are due, per group (merchant).", labels=["group"]
        )
        age = GaugeMetricFamily(
            "storesync_queue_oldest_due_age_seconds",
            "Age of the oldest due queued job, per group (merchant).",
            labels=["group"],
        )
        for group, n, oldest in by_group:
            due.add_metric([group], n)
            age.add_metric([group], max(oldest, 0.0))
        live = GaugeMetricFamily(
            "storesync_queue_live_workers", "Workers that heartbeated recently.", value=workers
        )
        return [jobs, due, age, live]

    def refresh(self, conn: psycopg.Connection, *, live_within: float = 60.0) -> None:
        by_state = conn.execute(q.JOBS_BY_STATE_AND_LANE).fetchall()
        by_group = conn.execute(q.QUEUE_AGE_BY_GROUP).fetchall()
        workers = conn.execute(q.LIVE_WORKERS, {"within": live_within}).fetchall()
        self._rows = (by_state, by_group, len(workers))

    async def refresh_async(self, conn: psycopg.AsyncConnection, *, live_within: float = 60.0) -> None:
        by_state = await (await conn.execute(q.JOBS_BY_STATE_AND_LANE)).fetchall()
        by_group = await (await conn.execute(q.QUEUE_AGE_BY_GROUP)).fetchall()
        workers = await (await conn.execute(q.LIVE_WORKERS, {"within": live_within})).fetchall()
        self._rows = (by_state, by_group, len(workers))
