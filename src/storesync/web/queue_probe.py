"""What the web tier reads from the job queue's tables for /readyz (informational only)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from storesync.web.deliveries_sql import SET_LOCAL_STATEMENT_TIMEOUT

# latest_worker_heartbeat: the newest heartbeat of a running worker and how many workers run;
# NULLs when the queue's table is absent (the whole query is guarded by to_regclass).
LATEST_WORKER_HEARTBEAT = """
SELECT max(heartbeat_at), extract(epoch FROM now() - max(heartbeat_at)), count(*)
FROM queue_workers WHERE state <> 'stopped'
"""

# queue_workers_exists: whether the queue's worker table exists in this database.
QUEUE_WORKERS_EXISTS = "SELECT to_regclass('queue_workers') IS NOT NULL"


async def latest_heartbeat(pool: AsyncConnectionPool, statement_timeout_ms: str) -> dict[str, Any] | None:
    """A readiness entry describing the newest worker heartbeat, or None without a queue."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (statement_timeout_ms,))
        cur = await conn.execute(QUEUE_WORKERS_EXISTS)
        exists = await cur.fetchone()
        if not exists or not exists[0]:
            return None
        cur = await conn.execute(LATEST_WORKER_HEARTBEAT)
        newest, age_s, workers = await cur.fetchone()
    return {
        "name": "worker_heartbeat",
        "ok": True,
        "informational": True,
        "workers": workers,
        "latest": newest.isoformat() if newest else None,
        "age_s": round(float(age_s), 1) if age_s is not None else None,
    }
