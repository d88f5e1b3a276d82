"""Operator and health views of the queue (sync; CLI, /readyz, dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from storesync.queue import queries as q


@dataclass(frozen=True)
class WorkerHeartbeat:
    worker_id: str
    hostname: str
    pid: int
    concurrency: int
    state: str  # running | draining
    in_flight: int
    jobs_done: int
    is_scheduler: bool
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float


def live_workers(conn: psycopg.Connection, within_seconds: float = 30.0) -> list[WorkerHeartbeat]:
    """Workers that heartbeated within `within_seconds` and are not stopped (for /readyz)."""
    rows = conn.execute(q.LIVE_WORKERS, {"within": within_seconds}).fetchall()
    return [WorkerHeartbeat(*row) for row in rows]


def list_jobs(
    conn: psycopg.Connection,
    *,
    state: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            q.LIST_JOBS, {"state": state, "group": group, "kind": kind, "limit": limit}
        ).fetchall()


def show_job(conn: psycopg.Connection, job_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.SHOW_JOB, {"id": job_id}).fetchone()


def replay_job(conn: psycopg.Connection, job_id: int) -> bool:
    """Put a dead or cancelled job back in the queue (fresh attempts, history kept).

    False if it is not dead/cancelled or a job with its singleton key is already queued."""
    row = conn.execute(q.REPLAY_DEAD_JOB, {"id": job_id}).fetchone()
    if row:
        conn.execute(q.NOTIFY_JOBS)
    return row is not None


def cancel_job(conn: psycopg.Connection, job_id: int) -> bool:
    """Cancel a queued job. False if it is not queued (running, finished or unknown)."""
    return conn.execute(q.CANCEL_JOB, {"id": job_id}).fetchone() is not None
