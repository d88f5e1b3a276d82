"""Health and readiness.

`GET /healthz` (on both listeners): the process answers; nothing else is looked at.

Readiness checks, each bounded in time: the pooled path answers a query, the direct path accepts
a session, the schema is at this code's head; the newest worker heartbeat is reported too
(informational: workers being behind does not make the web tier unready, the queue absorbs the
backlog). They run on a small pool of their own, never the webhook pool, and a result is reused
for `readiness_cache_s` with concurrent callers sharing one run, so a flood of probes costs one
check per period.

The webhook port's `GET /readyz` answers only `{"ready": true|false}` (200 or 503, so a load
balancer stops sending webhooks to a tier that cannot record them); the checks themselves, with
their error text, are on the operations listener (`ops.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse

from storesync.config import Settings
from storesync.db.migrate import current_version, head_version
from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT, connect_direct
from storesync.queue import ops as queue_ops
from storesync.web.deadline import within
from storesync.web.settings import WebSettings


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


class ReadinessProbe:
    """The readiness checks on `pool` (a pool of their own), cached for `readiness_cache_s`.
    `settings_of` is called on each run (tests swap the settings of a running app)."""

    def __init__(
        self, settings_of: Callable[[], Settings], web: WebSettings, pool: AsyncConnectionPool
    ) -> None:
        self.settings_of = settings_of
        self.web = web
        self.pool = pool
        self._result: tuple[bool, list[dict[str, Any]]] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> tuple[bool, list[dict[str, Any]]]:
        if self._result is not None and self._fresh():
            return self._result
        async with self._lock:  # one run at a time; those who waited get its result
            if self._result is None or not self._fresh():
                self._result = await self._run()
                self._at = time.monotonic()
            return self._result

    def _fresh(self) -> bool:
        return time.monotonic() - self._at < self.web.readiness_cache_s

    async def _run(self) -> tuple[bool, list[dict[str, Any]]]:
        timeout = self.web.readiness_timeout_s
        settings = self.settings_of()
        statement_timeout = str(max(1, int(timeout * 1000)))

        async def pooled() -> None:
            async with self.pool.connection(timeout=timeout) as conn, conn.transaction():
                await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (statement_timeout,))
                await conn.execute("SELECT 1")

        versions: dict[str, int] = {}

        async def direct() -> dict[str, Any]:
            versions["current"] = await asyncio.to_thread(_direct_schema_version, settings)
            return {}

        pooled_check, direct_check, heartbeat = await asyncio.gather(
            _timed("pooled", timeout, pooled),
            _timed("direct", timeout, direct),
            self._latest_worker_heartbeat(timeout, statement_timeout),
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

    async def _latest_worker_heartbeat(self, timeout: float, statement_timeout: str) -> dict[str, Any] | None:
        """The queue's newest worker heartbeat, if the queue keeps one (None otherwise)."""
        try:
            return await within(queue_ops.latest_heartbeat(self.pool, statement_timeout), timeout)
        except (TimeoutError, psycopg.Error, OSError):
            return None


async def readyz(request: Request) -> JSONResponse:
    """The webhook port's answer: ready or not, nothing more."""
    ready, _checks = await request.app.state.readiness.check()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def readyz_detailed(request: Request) -> JSONResponse:
    """The operations listener's answer: every check, with what failed and why."""
    ready, checks = await request.app.state.readiness.check()
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
