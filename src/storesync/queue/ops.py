"""The queue's API beyond enqueue and the worker: operator commands (list, show, replay, cancel),
parking, counts, and the reads of /readyz, the dashboard and the demo harness. Nothing outside
`queue/` reads or writes the queue's tables; every statement is in `queries.py`.

Parking: a job that cannot run now for a reason outside it (e.g. a paused store) is re-enqueued
unchanged, tagged with a key (`parked_for`), due some time later; `unpark(key)` makes every job
parked for that key due at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT
from storesync.queue import queries as q
from storesync.queue.enqueue import JobSpec, enqueue_async
from storesync.queue.payloads import PARKED_FOR


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
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            q.LIST_JOBS, {"state": state, "group": group, "kind": kind, "limit": limit}
        ).fetchall()


def show_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
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


# --------------------------------------------------------------------------- parking


async def park(conn: psycopg.AsyncConnection, spec: JobSpec, *, key: str, delay_s: float) -> int:
    """Enqueue `spec` again, tagged as parked for `key`, due `delay_s` from now (its own
    transaction); the new job's id."""
    parked = JobSpec(
        spec.kind,
        {**spec.payload, PARKED_FOR: key},
        group=spec.group,
        lane=spec.lane,
        lock_key=spec.lock_key,
        max_attempts=spec.max_attempts,
        run_at=datetime.now(UTC) + timedelta(seconds=delay_s),
    )
    async with conn.transaction():
        return (await enqueue_async(conn, parked)).job_id


def unpark(conn: psycopg.Connection, key: str) -> int:
    """Make the jobs parked for `key` due now and wake the workers (in the caller's transaction);
    how many."""
    n = conn.execute(q.UNPARK_JOBS, {"key": key}).rowcount
    conn.execute(q.NOTIFY_JOBS)
    return n


async def unpark_async(conn: psycopg.AsyncConnection, key: str) -> int:
    """`unpark` on an idle async connection (its own transaction)."""
    async with conn.transaction():
        n = (await conn.execute(q.UNPARK_JOBS, {"key": key})).rowcount
        await conn.execute(q.NOTIFY_JOBS)
    return n


async def job_states_async(conn: psycopg.AsyncConnection, ids: list[int]) -> dict[int, str]:
    """The state of each job of `ids` still in the table (finished jobs may be pruned)."""
    if not ids:
        return {}
    cur = await conn.execute(q.JOB_STATES, {"ids": ids})
    return {row[0]: row[1] for row in await cur.fetchall()}


def count_parked(conn: psycopg.Connection, key: str) -> int:
    return int(conn.execute(q.COUNT_PARKED, {"key": key}).fetchone()[0])  # type: ignore[index]


def count_jobs(conn: psycopg.Connection) -> int:
    """Every job the table holds, in any state."""
    return int(conn.execute(q.COUNT_JOBS).fetchone()[0])  # type: ignore[index]


def count_due_or_running(conn: psycopg.Connection) -> int:
    """Jobs running, or queued and due: 0 once the queue has settled."""
    return int(conn.execute(q.COUNT_DUE_OR_RUNNING).fetchone()[0])  # type: ignore[index]


# --------------------------------------------------------------------------- retention
# On the caller's connection and transaction (which bounds them with its statement timeout).


async def count_prunable_jobs(
    conn: psycopg.AsyncConnection, *, age: float, dead_age: float
) -> tuple[int, int]:
    """(finished, dead) jobs past their retention (`age`, `dead_age` in seconds)."""
    cur = await conn.execute(q.COUNT_PRUNABLE_JOBS, {"age": age, "dead_age": dead_age})
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def prune_jobs(conn: psycopg.AsyncConnection, *, dead: bool, age: float, limit: int) -> int:
    """Delete one batch of the oldest finished (or `dead`) jobs past `age` seconds; how many."""
    cur = await conn.execute(
        q.PRUNE_DEAD_JOBS if dead else q.PRUNE_FINISHED_JOBS, {"age": age, "limit": limit}
    )
    return cur.rowcount


# --------------------------------------------------------------------------- readiness


async def latest_heartbeat(pool: AsyncConnectionPool, statement_timeout_ms: str) -> dict[str, Any] | None:
    """A readiness entry describing the newest worker heartbeat, or None without a queue."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (statement_timeout_ms,))
        cur = await conn.execute(q.QUEUE_WORKERS_EXISTS)
        exists = await cur.fetchone()
        if not exists or not exists[0]:
            return None
        cur = await conn.execute(q.LATEST_WORKER_HEARTBEAT)
        row = await cur.fetchone()
    assert row is not None
    newest, age_s, workers = row
    return {
        "name": "worker_heartbeat",
        "ok": True,
        "informational": True,
        "workers": workers,
        "latest": newest.isoformat() if newest else None,
        "age_s": round(float(age_s), 1) if age_s is not None else None,
    }


# --------------------------------------------------------------------------- dashboard reads
# On the caller's connection and transaction (which bounds them with its statement timeout).


async def _rows(
    conn: psycopg.AsyncConnection, sql: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def depth_by_lane_and_state(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """(lane, state, jobs) rows."""
    return await _rows(conn, q.QUEUE_DEPTH_BY_LANE_STATE)


async def backlog_by_group(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Per group with unfinished or dead jobs: queued, due, oldest_due_age_s, running, dead."""
    return await _rows(conn, q.QUEUE_BY_GROUP)


async def worker_heartbeats(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Workers not stopped, or stopped within the last hour, newest first."""
    return await _rows(conn, q.WORKER_HEARTBEATS)


async def groups(conn: psycopg.AsyncConnection) -> list[str]:
    return [r["group_key"] for r in await _rows(conn, q.JOB_GROUPS)]


async def jobs_page(
    conn: psycopg.AsyncConnection,
    *,
    state: str | None,
    lane: int | None,
    group: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first, ids below `before`."""
    params = {"state": state, "lane": lane, "group": group, "kind": kind, "before": before, "limit": limit}
    return await _rows(conn, q.JOBS_PAGE, params)


async def job_detail(conn: psycopg.AsyncConnection, job_id: int) -> dict[str, Any] | None:
    found = await _rows(conn, q.SHOW_JOB, {"id": job_id})
    return found[0] if found else None


async def dead_jobs_page(
    conn: psycopg.AsyncConnection, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    return await _rows(conn, q.DEAD_JOBS_PAGE, {"before": before, "limit": limit})


async def jobs_with_payload_value(
    conn: psycopg.AsyncConnection, *, group: str, kind_prefix: str, key: str, value: str
) -> list[dict[str, Any]]:
    """A group's jobs of kinds starting with `kind_prefix` whose payload holds `value` at `key`."""
    params = {"group": group, "kind_prefix": kind_prefix, "key": key, "value": value}
    return await _rows(conn, q.JOBS_WITH_PAYLOAD_VALUE, params)
