"""Queue tuning from the environment (`STORESYNC_QUEUE_*`); `storesync worker` options override."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings


class QueueSettings(EnvironmentSettings):
    model_config = SettingsConfigDict(env_prefix="STORESYNC_QUEUE_", extra="ignore", frozen=True)

    # Jobs one worker process runs at once.
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 10
    # Claims a worker keeps in flight at once (each on its own connection).
    claimers: Annotated[int, Field(ge=1, le=16)] = 2
    # Most jobs one claim takes (also bounded by free slots).
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Groups (merchants) one claim locks and serves, least-recently-served first.
    groups_per_claim: Annotated[int, Field(ge=1, le=10_000)] = 16
    # A claim locks at most 1/claim_spread of the groups with work (at least 4), leaving the rest
    # to the claims in flight beside it (workers x claimers); 1 = always groups_per_claim.
    claim_spread: Annotated[int, Field(ge=1, le=1_000)] = 4
    # Most jobs one group gets in one claim.
    per_group_cap: Annotated[int, Field(ge=1, le=10_000)] = 50
    # A run's lease; heartbeats renew it every lease/3. A dead worker's job reruns after this.
    lease_seconds: Annotated[float, Field(gt=0)] = 30.0
    # How often an idle worker looks for jobs without a NOTIFY (and for due delayed jobs).
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    # SIGTERM: how long in-flight jobs may take to finish before they are released.
    drain_timeout: Annotated[float, Field(ge=0)] = 30.0
    # Retry delay: uniform in [0, min(cap, base * 2 ** (attempt - 1))] ("full jitter").
    backoff_base: Annotated[float, Field(gt=0)] = 1.0
    backoff_cap: Annotated[float, Field(gt=0)] = 300.0
    # Retention: finished jobs older than this are pruned; dead letters are kept longer.
    retention_seconds: Annotated[float, Field(gt=0)] = 7 * 86400.0
    dead_retention_seconds: Annotated[float, Field(gt=0)] = 30 * 86400.0
    prune_batch: Annotated[int, Field(ge=1, le=100_000)] = 500
    # How often the scheduler prunes (in small batches, each its own short transaction).
    prune_interval: Annotated[float, Field(gt=0)] = 60.0
    # How often the scheduler (one per cluster) enqueues due periodic jobs and prunes.
    scheduler_interval: Annotated[float, Field(gt=0)] = 1.0
    # Serve /metrics for this worker on 127.0.0.1:<port> (0: off).
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # Write each recorded heartbeat to this file too (JSON, replaced atomically; removed on stop)
    # for health checks that should not open a database connection: `python -m
    # storesync.healthcheck worker` (docs/operations.md, "Health checks").
    health_file: Path | None = None


def backoff_delay(attempt: int, base: float, cap: float, rand: float) -> float:
    """Full-jitter exponential backoff: `rand` in [0, 1) scales the capped exponential ceiling."""
    ceiling = min(cap, base * (2.0 ** min(max(attempt - 1, 0), 62)))
    return rand * ceiling
