"""Prometheus metrics of the web tier (served by the operations listener: `ops.py`).

One process: each app has its own registry (several apps can live in one test process).
Several uvicorn workers: `storesync serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` before the
workers start, values live in files there, and the ops listener (in the serving process) reports
the sum over all workers (prometheus_client's multiprocess mode). Limitation: pool gauges are summed over
the workers' files, so a worker that died and was replaced leaves its last pool figures behind
until the server restarts (counters and histograms stay exact).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from psycopg_pool import AsyncConnectionPool

from storesync.db.series import MinuteCounts
from storesync.queue.metrics import QueueGauges, WorkerSnapshots

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class WebMetrics:
    """The web tier's counters, histogram and pool gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "storesync_webhook_deliveries",
            "Authenticated webhook deliveries by topic and outcome "
            "(accepted, duplicate, unparseable, ignored).",
            ["topic", "outcome"],
            registry=r,
        )
        self.deliveries_by_shop = Counter(
            "storesync_webhook_deliveries_by_shop",
            "Authenticated webhook deliveries by the store that sent them and outcome "
            "(accepted, duplicate, unparseable, ignored).",
            ["shop", "outcome"],
            registry=r,
        )
        self.duplicates = Counter(
            "storesync_webhook_duplicates",
            "Deliveries whose webhook id was already recorded (answered 200, nothing enqueued).",
            ["topic"],
            registry=r,
        )
        self.rejections = Counter(
            "storesync_webhook_rejections",
            "Requests refused before anything was written, by reason.",
            ["reason"],
            registry=r,
        )
        self.ignored_headers = Counter(
            "storesync_webhook_ignored_headers",
            "Signed deliveries recorded without an unsigned header that was malformed, by header.",
            ["header"],
            registry=r,
        )
        self.unavailable = Counter(
            "storesync_webhook_unavailable",
            "Requests answered 503 because the database could not take them (Shopify retries), by reason.",
            ["reason"],
            registry=r,
        )
        self.api_version_mismatch = Counter(
            "storesync_webhook_api_version_mismatch",
            "Authenticated deliveries whose X-Shopify-API-Version is not the version storesync "
            "speaks (set the app's webhook API version in the Dev Dashboard), by the version sent.",
            ["version"],
            registry=r,
        )
        self.judged_at_ingest = Counter(
            "storesync_webhook_judged_at_ingest",
            "inventory_levels/update deliveries recorded without a job, by what they were judged at "
            "ingest (echo: the engine's own write; stale: such an echo older than the level's "
            "applied version; unlinked: a child item linked to nothing).",
            ["outcome"],
            registry=r,
        )
        self.levels_not_judged = Counter(
            "storesync_webhook_levels_not_judged",
            "inventory_levels/update deliveries that could not be judged at ingest (the judging "
            "failed: each got its job, as with STORESYNC_WEB_ECHOES_AT_INGEST off; see the log).",
            registry=r,
        )
        self.oauth_callbacks = Counter(
            "storesync_oauth_callbacks",
            "Install-flow callbacks (GET /auth/callback) by outcome (connected, or why refused).",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "storesync_webhook_request_seconds",
            "Time to answer POST /webhooks/shopify, by status.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        gauge: dict[str, Any] = {"registry": r, "multiprocess_mode": "livesum"}
        self.pool_size = Gauge("storesync_db_pool_size", "Pooled-path connections open.", **gauge)
        self.pool_in_use = Gauge("storesync_db_pool_in_use", "Pooled-path connections lent out.", **gauge)
        self.pool_max = Gauge("storesync_db_pool_max", "Pooled-path pool maximum size.", **gauge)
        self.pool_waiting = Gauge(
            "storesync_db_pool_waiting", "Requests waiting for a pooled-path connection.", **gauge
        )
        # The state of the whole queue, read from the database on each scrape.
        self.queue = QueueGauges(r)
        # The workers' own metrics, as they published them with their heartbeats.
        self.workers = WorkerSnapshots(r)
        # Further collectors read from the database (the sync engine's store health), registered
        # by the ops listener; kept here so that multiprocess mode registers them too.
        self.database_collectors: list[Any] = [self.queue, self.workers]
        # Webhooks received per store and minute, added to the charts' series every few seconds.
        self.minute_counts = MinuteCounts()
        # The webhook pool, read again at each scrape (one process; workers refresh their files).
        self.watched_pool: AsyncConnectionPool | None = None

    def observe_pool(self, pool: AsyncConnectionPool) -> None:
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        self.pool_size.set(size)
        self.pool_in_use.set(size - stats.get("pool_available", 0))
        self.pool_max.set(stats.get("pool_max", pool.max_size))
        self.pool_waiting.set(stats.get("requests_waiting", 0))

    def exposition(self) -> bytes:
        if multiprocess_mode():
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)
            for collector in self.database_collectors:
                registry.register(collector)
            return generate_latest(registry)
        if self.watched_pool is not None:
            self.observe_pool(self.watched_pool)  # counters only: safe from the ops listener's thread
        return generate_latest(self.registry)
