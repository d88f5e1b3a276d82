"""The operations listener: `/metrics`, detailed `/readyz` and `/healthz`, apart from webhooks.

`storesync serve` runs it beside the webhook port on `STORESYNC_WEB_OPS_HOST:PORT` (loopback
and 9464 by default; `--ops-port 0` turns it off), in a thread of the serving process with an
event loop and a small pool of its own: however often it is scraped, it never takes a connection
or an event-loop turn from webhook ingestion. What it serves names merchants (queue gauges per
group) and carries database error text, so it is never on the public port: on a loopback
address it is open to local callers, anywhere else it refuses to start without
`STORESYNC_WEB_OPS_TOKEN`, and with a token set every request must carry
`Authorization: Bearer <token>`.

Cheap by construction: the queue's database gauges (a GROUP BY over the jobs) are refreshed at
most every `ops_cache_s` seconds, one refresh at a time, each statement under
`ops_statement_timeout_ms`; readiness is the cached `ReadinessProbe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from storesync.config import Settings, is_loopback
from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT, async_pooled_pool
from storesync.logs import get_logger
from storesync.sync.settings import SyncSettings
from storesync.web.dashboard.auth import SignInLimiter
from storesync.web.health import ReadinessProbe, healthz, readyz_detailed
from storesync.web.metrics import WebMetrics, multiprocess_mode
from storesync.web.settings import WebSettings
from storesync.web.store_metrics import StoreHealthGauges

log = get_logger("storesync.web.ops")


class OpsListenerRefused(RuntimeError):
    """The ops listener must not start as configured; the message says why."""


def check_ops_settings(web: WebSettings) -> None:
    if web.ops_port and not is_loopback(web.ops_host) and web.ops_token is None:
        raise OpsListenerRefused(
            f"refusing to serve /metrics and /readyz on {web.ops_host} without STORESYNC_WEB_OPS_TOKEN "
            "(set a token, or keep STORESYNC_WEB_OPS_HOST on a loopback address)"
        )


# Failed tokens a client may send per minute before it is answered 429 (the dashboard's sign-in
# limit, STORESYNC_DASHBOARD_SIGN_IN_ATTEMPTS_PER_MINUTE, is 5 by default; a scraper that is
# misconfigured retries every scrape interval, so this allows a little more).
OPS_FAILED_TOKENS_PER_MINUTE = 10


class _BearerToken:
    """Every request carries `Authorization: Bearer <token>` (compared in constant time), or 401;
    a client that keeps sending wrong tokens is answered 429 for a while, as the dashboard's
    sign-in is (docs/decisions/0041-ops-listener-protection.md)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.digest = hashlib.sha256(token.encode()).digest()
        self.limiter = SignInLimiter(OPS_FAILED_TOKENS_PER_MINUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            client = request.client.host if request.client else "unknown"
            wait_s = self.limiter.retry_after(client)
            if wait_s:
                response = JSONResponse(
                    {"status": 429, "message": "too many refused tokens"}, status_code=429
                )
                response.headers["Retry-After"] = str(wait_s)
                await response(scope, receive, send)
                return
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self.digest):
                self.limiter.failed(client)
                log.warning("ops_token_refused", client=client, path=scope.get("path"))
                response = JSONResponse({"status": 401, "message": "unauthorized"}, status_code=401)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class DatabaseGaugeRefresher:
    """Refreshes the collectors read from the database (the queue's gauges, the workers' own
    metrics, the stores' health) at most every `every_s` seconds, one refresh at a time, each
    collector in its own short transaction under the statement timeout: one that fails keeps its
    last values and does not stop the others."""

    # Workers' metrics older than this are not served (a worker gone for good drops out).
    WORKER_METRICS_WITHIN_S = 120.0

    def __init__(
        self, metrics: WebMetrics, stores: StoreHealthGauges, every_s: float, statement_timeout_ms: int
    ) -> None:
        self.metrics = metrics
        self.stores = stores
        self.every_s = every_s
        self.statement_timeout = str(statement_timeout_ms)
        self._at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, pool) -> None:
        if self._at is not None and time.monotonic() - self._at < self.every_s:
            return
        async with self._lock:
            if self._at is not None and time.monotonic() - self._at < self.every_s:
                return
            steps = {
                "queue": self.metrics.queue.refresh_async,
                "workers": lambda conn: self.metrics.workers.refresh_async(
                    conn, within_s=self.WORKER_METRICS_WITHIN_S
                ),
                "stores": self.stores.refresh_async,
            }
            for name, step in steps.items():
                try:
                    async with pool.connection(timeout=1.0) as conn, conn.transaction():
                        await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (self.statement_timeout,))
                        await step(conn)
                except Exception as err:  # a scrape must still answer; the gauges keep their last values
                    log.warning(
                        "database_gauges_unavailable", gauges=name, error=f"{type(err).__name__}: {err}"[:300]
                    )
            self._at = time.monotonic()  # a failure is not retried on every scrape either


def create_ops_app(
    settings_of: Callable[[], Settings], web: WebSettings, metrics: WebMetrics | None = None
) -> Starlette:
    """The ops listener's app. `metrics`: the webhook app's (one process); None in multiprocess
    mode, where the exposition sums the workers' files."""
    metrics = metrics or WebMetrics()
    stores = StoreHealthGauges(SyncSettings.load())
    if multiprocess_mode():
        metrics.database_collectors.append(stores)
    else:
        metrics.registry.register(stores)
    refresher = DatabaseGaugeRefresher(metrics, stores, web.ops_cache_s, web.ops_statement_timeout_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = async_pooled_pool(settings_of(), name="storesync-ops", min_size=0, max_size=2)
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.readiness = ReadinessProbe(settings_of, web, pool)
        try:
            yield
        finally:
            await pool.close(timeout=5.0)

    async def metrics_endpoint(request: Request) -> Response:
        await refresher.refresh(request.app.state.pool)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    middleware = [Middleware(_BearerToken, token=web.ops_token.get_secret_value())] if web.ops_token else []
    app = Starlette(
        routes=[
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/readyz", readyz_detailed, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app


class OpsListener:
    """The ops app served by uvicorn in a daemon thread (its own event loop)."""

    def __init__(self, app: Starlette, sock: socket.socket, log_level: str) -> None:
        import uvicorn

        self.sock = sock
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level=log_level, log_config=None, access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self._run, name="storesync-ops", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits this way when start-up fails
            self.server.run(sockets=[self.sock])

    def start(self) -> OpsListener:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_ops_listener(
    settings_of: Callable[[], Settings], web: WebSettings, metrics: WebMetrics | None, log_level: str
) -> OpsListener | None:
    """Bind and serve the ops listener; None when it is off (port 0) or its port is taken (logged:
    webhooks matter more than metrics, so the webhook port is served either way)."""
    check_ops_settings(web)
    if not web.ops_port:
        return None
    family = socket.AF_INET6 if ":" in web.ops_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((web.ops_host, web.ops_port))
    except OSError as err:
        sock.close()
        log.error(
            "ops_listener_not_serving",
            reason=f"cannot listen on {web.ops_host}:{web.ops_port}: {err}",
            hint="set STORESYNC_WEB_OPS_PORT (or --ops-port) to a free port",
        )
        return None
    sock.listen(128)
    listener = OpsListener(create_ops_app(settings_of, web, metrics), sock, log_level).start()
    log.info("ops_listener_serving", host=web.ops_host, port=listener.port)
    return listener
