"""Per-store gauges an operator alerts on, read from the database by the operations listener
(`ops.py`) through the sync engine's health read (`sync/services/health.py`): the same facts the
dashboard's overview shows. Every configured store always has every series (0 when there is
nothing to report), so an alert on a gauge never goes quiet because its series vanished."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from storesync.sync.domain.health import StoreState
from storesync.sync.services.health import NetworkHealth, network_health
from storesync.sync.settings import SyncSettings


def _ts(at: datetime | None) -> float:
    return at.timestamp() if at else 0.0


class StoreHealthGauges:
    """A collector over the last `refresh` of the network's health."""

    def __init__(self, settings: SyncSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self._health: NetworkHealth | None = None
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Any]:
        return []

    async def refresh_async(self, conn: psycopg.AsyncConnection) -> None:
        self._health = await network_health(
            conn,
            behind_after_s=self.settings.behind_after_s,
            failing_within_s=self.settings.failing_within_s,
            dead_shown=0,
        )

    def collect(self) -> list[GaugeMetricFamily]:
        labels = ["merchant", "shop"]

        def family(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels + (extra or []))

        paused = family("storesync_store_paused", "1 while the store is paused (its jobs parked), else 0.")
        state = family(
            "storesync_store_state",
            "1 for the store's sync state (in step, behind, paused, failing), 0 for the others.",
            ["state"],
        )
        lag = family(
            "storesync_store_lag_seconds",
            "Age of the oldest change not yet applied to the store (its oldest running, due or "
            "parked job), 0 when there is none.",
        )
        pending = family("storesync_store_pending_jobs", "Jobs running or due that will write the store.")
        parked = family("storesync_store_parked_jobs", "Jobs parked until the store is resumed.")
        dead = family(
            "storesync_store_dead_jobs",
            "Jobs writing the store that died within STORESYNC_SYNC_FAILING_WITHIN_S.",
        )
        last_write = family(
            "storesync_store_last_write_timestamp_seconds",
            "When the engine last wrote the store (Unix time; 0: never).",
        )
        available = family(
            "storesync_store_api_points_available",
            "Points in the store's shared Admin API bucket now (negative while calls wait).",
        )
        drift_found = family(
            "storesync_reconcile_drift_found",
            "Differences the merchant's last reconcile found in the store (dropped webhooks, "
            "edits made while the engine was down).",
        )
        drift_repaired = family(
            "storesync_reconcile_drift_repaired", "Differences the last reconcile repaired in the store."
        )
        drift_left = family(
            "storesync_reconcile_drift_left", "Differences the last reconcile could not repair in the store."
        )
        last_run = GaugeMetricFamily(
            "storesync_reconcile_last_run_timestamp_seconds",
            "When the merchant's last reconcile (not a dry run) finished (Unix time; 0: never).",
            labels=["merchant"],
        )
        out = [paused, state, lag, pending, parked, dead, last_write, available]
        out += [drift_found, drift_repaired, drift_left, last_run]
        if self._health is None:
            return out
        runs: dict[str, float] = {}
        for h in self._health.stores:
            f = h.facts
            key = [f.merchant_id, f.shop]
            paused.add_metric(key, 1.0 if f.status == "paused" else 0.0)
            for s in StoreState:
                state.add_metric([*key, str(s)], 1.0 if h.state is s else 0.0)
            lag.add_metric(key, h.lag_s)
            pending.add_metric(key, f.work.active)
            parked.add_metric(key, f.work.parked)
            dead.add_metric(key, f.work.dead)
            last_write.add_metric(key, _ts(f.last_write_at))
            available.add_metric(key, f.bucket.available if f.bucket else 0.0)
            run = f.reconcile
            drift_found.add_metric(key, run.found if run else 0)
            drift_repaired.add_metric(key, run.repaired if run else 0)
            drift_left.add_metric(key, run.left if run else 0)
            runs[f.merchant_id] = max(runs.get(f.merchant_id, 0.0), _ts(run.at) if run else 0.0)
        for merchant, at in sorted(runs.items()):
            last_run.add_metric([merchant], at)
        return out
