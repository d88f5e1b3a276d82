"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its job).

Readiness checks, each bounded in time and listed in the JSON answer: the pooled path answers a
query, the direct path accepts a session, the schema is at this code's head. Any failure -> 503,
so a load balancer stops sending webhooks here (Shopify retries them elsewhere or later).
When the job queue's worker heartbeats exist, the newest one is reported too (informational:
workers being behind does not make the web tier unready, the queue absorbs the backlog).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse

from storesync.config import Settings
from storesync.db.migrate import current_version, head_version
from storesync.db.pools import connect_direct
from storesync.queue import ops as queue_ops
from storesync.web.deadline import within


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _direct_schema_version(settings: Settings) -> int:
    with connect_direct(settings) as conn:
        return current_version(conn)


async def _timed(name: str, timeout: float, check) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"name": name}
    try:
        detail = await within(check(), timeout)
        result.update(ok=True, **(detail or {}))
    except TimeoutError:
        result.update(ok=False, error=f"no answer within {timeout:g}s")
    except (psycopg.Error, OSError) as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        result.update(ok=False, error=f"{type(err).__name__}: {first_line}")
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


async def readiness(app) -> tuple[bool, list[dict[str, Any]]]:
    state = app.state
    timeout = state.web_settings.readiness_timeout_s

    async def pooled() -> None:
        async with state.pool.connection(timeout=timeout) as conn, conn.transaction():
            await conn.execute("SELECT 1")

    versions: dict[str, int] = {}

    async def direct() -> dict[str, Any]:
        versions["current"] = await asyncio.to_thread(_direct_schema_version, state.settings)
        return {}

    pooled_check, direct_check, heartbeat = await asyncio.gather(
        _timed("pooled", timeout, pooled),
        _timed("direct", timeout, direct),
        _latest_worker_heartbeat(app, timeout),
    )
    checks = [pooled_check, direct_check]
    head = head_version()
    if "current" in versions:
        current = versions["current"]
        schema = {"name": "schema", "ok": current >= head, "current": current, "head": head}
        if current < head:
            schema["error"] = f"schema at {current}, code needs {head}: run `storesync migrate`"
    else:
        schema = {"name": "schema", "ok": False, "head": head, "error": "unknown: the direct path failed"}
    checks.append(schema)
    if heartbeat is not None:
        checks.append(heartbeat)
    ready = all(c["ok"] for c in checks if not c.get("informational"))
    return ready, checks


async def _latest_worker_heartbeat(app, timeout: float) -> dict[str, Any] | None:
    """The queue's newest worker heartbeat, if the queue keeps one (None otherwise)."""
    try:
        return await within(queue_ops.latest_heartbeat(app.state.pool), timeout)
    except (TimeoutError, psycopg.Error, OSError):
        return None


async def readyz(request: Request) -> JSONResponse:
    ready, checks = await readiness(request.app)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
