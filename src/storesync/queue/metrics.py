"""Prometheus metrics for the queue.

Two kinds: a worker's own counters and histograms (`WORKER_*`, in the process that runs jobs,
with those of the handlers it runs: the Admin API client's, the sync engine's), and gauges read
from the database (`QueueGauges`), which the web tier's `/metrics` refreshes on each scrape so
any process can report the state of the whole queue.

A worker writes its own metrics (`worker_snapshot`, its `storesync_*` families, compressed) into
its heartbeat row; the web tier's operations listener serves every live worker's with a
`worker` label (`WorkerSnapshots`), so scraping one protected endpoint reaches them all. The
worker also adds the increments of a few counters to the per-minute series of the dashboard's
charts (`MINUTE_SERIES`, `storesync.db.series`). `storesync worker --metrics-port` still serves a
worker's metrics directly, on loopback.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from storesync.db.series import SERIES_API_CALLS, SERIES_JOBS, CounterSeries
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

# Counters whose increments a worker adds to the dashboard's per-minute series: its job outcomes,
# and the Admin API calls of its handlers per store and outcome (`commerce.metrics.CALLS`, named
# here: the queue does not import the client).
MINUTE_SERIES = (
    CounterSeries("storesync_worker_jobs", SERIES_JOBS, ("outcome",)),
    CounterSeries("storesync_admin_api_calls", SERIES_API_CALLS, ("shop", "outcome")),
)
# Families a worker publishes with its heartbeat: the engine's own.
SNAPSHOT_PREFIX = "storesync_"


class _Families:
    """A registry view of some families of another (what `generate_latest` needs)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def worker_snapshot(registry: CollectorRegistry = REGISTRY) -> bytes:
    """This process's `storesync_*` metrics as compressed Prometheus text."""
    families = _Families(f for f in registry.collect() if f.name.startswith(SNAPSHOT_PREFIX))
    return zlib.compress(generate_latest(families), 6)


class WorkerSnapshots:
    """A collector of the metrics the workers published with their heartbeats (`refresh`), each
    sample labelled with its worker: counters stay per process, as if each worker were scraped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._families: list[Metric] = []
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Metric]:
        return self._families

    def load(self, snapshots: Iterable[tuple[str, bytes]]) -> None:
        merged: dict[str, Metric] = {}
        for worker_id, blob in snapshots:
            try:
                text = zlib.decompress(blob).decode("utf-8")
                families = list(text_string_to_metric_families(text))
            except (zlib.error, UnicodeDecodeError, ValueError):
                continue  # a worker of another version wrote something else: skip it, keep the rest
            for family in families:
                if not family.name.startswith(SNAPSHOT_PREFIX):
                    continue
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type)
                if into.type != family.type:
                    continue
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "worker": worker_id}, sample.value)
        self._families = list(merged.values())

    async def refresh_async(self, conn: psycopg.AsyncConnection[Any], *, within_s: float) -> None:
        cur = await conn.execute(q.WORKER_METRICS, {"within": within_s})
        self.load((worker_id, bytes(blob)) for worker_id, blob in await cur.fetchall())


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
