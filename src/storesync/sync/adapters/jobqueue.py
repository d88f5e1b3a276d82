"""The job queue as the sync part uses it: `routing.SyncJob`s become `queue.JobSpec`s (the group is
the merchant, for fairness), enqueued in one transaction; a job of a paused store is parked."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import psycopg

from storesync.logs import get_logger
from storesync.queue import ops as queue_ops
from storesync.queue.enqueue import JobSpec, Lane, enqueue_many_async
from storesync.sync.domain.routing import SyncJob

log = get_logger("storesync.sync")


def job_spec(job: SyncJob, group: str, *, now: datetime | None = None) -> JobSpec:
    """The queue's spec of `job` (its payload checked against its type here: `queue.payloads`)."""
    run_at = job.run_at
    if run_at is None and job.delay_s:
        run_at = (now or datetime.now(UTC)) + timedelta(seconds=job.delay_s)
    return JobSpec(
        job.kind,
        job.payload,
        group=group,
        lane=Lane[job.lane.upper()],
        singleton_key=job.singleton_key,
        lock_key=job.lock_key,
        run_at=run_at,
        max_attempts=job.max_attempts,
    )


def job_specs(jobs: Iterable[SyncJob], group: str) -> list[JobSpec]:
    now = datetime.now(UTC)
    return [job_spec(j, group, now=now) for j in jobs]


async def enqueue_jobs(conn: psycopg.AsyncConnection, jobs: Iterable[SyncJob], group: str) -> list[int]:
    """Enqueue `jobs` (all or none) on an idle connection; the ids of the jobs (a job that
    collapsed into a queued one of its singleton key: that one's)."""
    specs = job_specs(jobs, group)
    if not specs:
        return []
    async with conn.transaction():
        return [e.job_id for e in await enqueue_many_async(conn, specs)]


async def job_states(conn: psycopg.AsyncConnection, ids: list[int]) -> dict[int, str]:
    """queued / running / succeeded / dead / cancelled of each job still in the table."""
    return await queue_ops.job_states_async(conn, ids)


async def park(conn: psycopg.AsyncConnection, spec: JobSpec, *, shop: str, delay_s: float) -> int:
    """Re-enqueue a job unchanged, parked for `shop` (a paused store), to run again after
    `delay_s`; `storesync network resume SHOP` makes it due at once."""
    job_id = await queue_ops.park(conn, spec, key=shop, delay_s=delay_s)
    log.info("job parked", kind=spec.kind, shop=shop, job_id=job_id, delay_s=delay_s)
    return job_id


async def unpark(conn: psycopg.AsyncConnection, key: str) -> int:
    """Make the jobs parked for `key` due now (e.g. a location active again); how many."""
    return await queue_ops.unpark_async(conn, key)
