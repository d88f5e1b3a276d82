"""The web tier's ASGI app: `create_app(settings, network)`.

Start-up opens the pooled-path pool (PgBouncer-safe, bounded waits) and refuses to serve when
the database is unreachable or its schema is behind this code: a web tier that accepted webhooks
into a schema it does not match could lose them. The public port serves webhooks, `/healthz`,
a yes/no `/readyz` (checked on a one-connection pool of its own) and the dashboard; metrics and
detailed readiness are on the operations listener (`ops.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from storesync.config import NetworkConfig, Settings
from storesync.db.migrate import SchemaBehindError, ensure_at_head
from storesync.db.pools import async_pooled_pool, connect_direct
from storesync.db.series import flush_counts
from storesync.logs import configure_logging, get_logger
from storesync.web.auth import auth_routes
from storesync.web.batcher import DeliveryBatcher
from storesync.web.dashboard import create_dashboard
from storesync.web.health import ReadinessProbe, healthz, readyz
from storesync.web.metrics import WebMetrics
from storesync.web.settings import WebSettings
from storesync.web.webhooks import WebhookSlots, shopify_webhook

log = get_logger("storesync.web")

POOL_GAUGE_INTERVAL_S = 1.0


class NotServing(RuntimeError):
    """The web tier must not start; the message says why and what to do."""


def check_database(settings: Settings) -> None:
    """Raise NotServing unless the direct path answers and the schema is at head."""
    try:
        with connect_direct(settings) as conn:
            ensure_at_head(conn)
    except SchemaBehindError as err:
        raise NotServing(f"refusing to serve: {err}") from None
    except psycopg.OperationalError as err:
        raise NotServing(f"refusing to serve: cannot reach the database on the direct path: {err}") from None


def create_app(
    settings: Settings, network: NetworkConfig, web_settings: WebSettings | None = None
) -> Starlette:
    """The ASGI app. `app.state.network` may be replaced at run time (new secrets take effect
    for the next request)."""
    web_settings = web_settings or WebSettings.load()
    metrics = WebMetrics()
    dashboard = create_dashboard(settings, lambda: app.state.pool, network=lambda: app.state.network)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(check_database, settings)
        except NotServing as err:
            app.state.startup_error = str(err)
            log.error("web_not_serving", reason=str(err))
            raise
        pool = async_pooled_pool(settings, name="storesync-web")
        await pool.open(wait=settings.pool_min_size > 0, timeout=float(settings.connect_timeout))
        app.state.pool = pool
        metrics.watched_pool = pool
        probe_pool = async_pooled_pool(settings, name="storesync-web-probe", min_size=0, max_size=1)
        await probe_pool.open(wait=False)
        app.state.readiness = ReadinessProbe(lambda: app.state.settings, web_settings, probe_pool)
        app.state.batcher = batcher = DeliveryBatcher(
            pool,
            statement_timeout_ms=settings.statement_timeout_ms,
            max_batch=web_settings.batch_max,
            max_in_flight=web_settings.batches_in_flight,
        )

        async def refresh_pool_gauges() -> None:
            while True:
                metrics.observe_pool(pool)
                await asyncio.sleep(POOL_GAUGE_INTERVAL_S)

        async def flush_minute_counts() -> None:
            while True:
                await asyncio.sleep(web_settings.minute_counts_flush_s)
                try:
                    # committed as the pool takes the connection back
                    async with pool.connection(timeout=2.0) as conn:
                        await flush_counts(conn, metrics.minute_counts)
                except Exception as err:  # kept for the next flush; charts are not worth a crash
                    log.warning("minute_counts_not_flushed", error=f"{type(err).__name__}: {err}"[:200])

        gauges = asyncio.create_task(refresh_pool_gauges())
        flusher = asyncio.create_task(flush_minute_counts())
        log.info(
            "web_serving",
            shops=sum(len(m.stores) for m in network.merchants),
            max_body_bytes=web_settings.max_body_bytes,
        )
        try:
            yield
        finally:
            metrics.watched_pool = None
            gauges.cancel()
            flusher.cancel()
            for task in (gauges, flusher):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                async with pool.connection(timeout=2.0) as conn:
                    await flush_counts(conn, metrics.minute_counts)
            await dashboard.state.live.aclose()
            await batcher.close()
            await probe_pool.close(timeout=5.0)
            await pool.close(timeout=5.0)

    app = Starlette(
        routes=[
            Route("/webhooks/shopify", shopify_webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            # The install flow of stores that connect by the authorization code grant.
            *auth_routes(),
            # Operator dashboard (STORESYNC_DASHBOARD_TOKEN; disabled when unset); reads on this pool.
            Mount("/dashboard", app=dashboard),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.network = network
    app.state.web_settings = web_settings
    app.state.metrics = metrics
    app.state.webhook_slots = WebhookSlots(web_settings.max_concurrent)
    app.state.readiness = None
    app.state.pool = None
    app.state.batcher = None
    app.state.startup_error = None
    return app


def app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` (each of several workers builds its own app)."""
    settings = Settings.load()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, NetworkConfig.load(settings.config_file), WebSettings.load())
