"""The operator dashboard: a Starlette sub-app mounted at /dashboard by `storesync.web.app`.

Pages (HTML, Jinja2, no JS framework, assets served from ./static): overview (what needs a human,
every store's sync health, charts over the last hour or day as server-rendered SVG, the queue),
products (one product across every store, found by SKU, handle, title or order), queue, job
detail, failures (dead jobs, unparseable/ignored deliveries), delivery detail, audit trail.
Actions (POST + CSRF token): replay a dead or cancelled job (saying first why it would fail
again, when something says so), cancel a queued one, through `storesync.queue.ops` (the
functions `storesync jobs retry|cancel` use).

Store health is `storesync.sync.services.health` (the same read as `storesync status` and the
ops listener's store gauges); the product page reads the stores live through the sync engine's
runtime (`live.py`), which needs the stores' credentials like a worker does.

Reads use the web app's pooled-path pool, each page in one read transaction with a SET LOCAL
statement timeout (PgBouncer transaction-mode safe). Actions open one short connection on the
pooled path (the queue's operations are synchronous; operators act rarely).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from storesync.commerce.errors import CommerceError
from storesync.config import ConfigError, NetworkConfig, Settings, is_loopback
from storesync.db import series
from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT, connect_pooled
from storesync.logs import get_logger
from storesync.queue import ops as queue_ops
from storesync.sync.adapters.postgres import (
    AUDIT_TABLE,
    audit_page,
    open_attention_page,
    propagation_buckets,
    stores_status,
)
from storesync.sync.domain.health import StoreState, admin_url, store_handle
from storesync.sync.services.health import network_health, why_replay_fails
from storesync.sync.services.product_view import find_products, product_across_stores
from storesync.sync.settings import SyncSettings
from storesync.web.dashboard import auth, charts, render
from storesync.web.dashboard import queries as q
from storesync.web.dashboard.live import LiveStores, LiveUnavailable
from storesync.web.dashboard.settings import DashboardSettings

log = get_logger("storesync.web.dashboard")

HERE = Path(__file__).resolve().parent
JOB_STATES = ("queued", "running", "succeeded", "dead", "cancelled")
DELIVERY_PREVIEW_BYTES = 64 * 1024
# Outcomes of an action, shown after its redirect (a fixed set: nothing from the URL is echoed).
NOTICES = {
    "replayed": ("ok", "Job queued again with fresh attempts; its error history is kept."),
    "not-replayed": (
        "error",
        "Not replayed: the job is not dead or cancelled any more, or a job "
        "with its singleton key is already queued.",
    ),
    "cancelled": ("ok", "Job cancelled."),
    "not-cancelled": ("error", "Not cancelled: the job is no longer queued."),
}

PoolGetter = Callable[[], AsyncConnectionPool | None]
NetworkGetter = Callable[[], NetworkConfig | None]
JOB_OUTCOMES = ("succeeded", "retried", "dead", "released", "lost")
OUTCOME_CLASSES = {"succeeded": "ok", "retried": "warn", "dead": "bad", "released": "muted", "lost": "muted"}
THROTTLED_OUTCOMES = ("throttled", "http_429")
# A product page's URL: /products/<merchant>/<the parent product's numeric id>.
MERCHANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# Row ids in URLs and query strings: plain ASCII digits that fit a bigint, or not a match at all
# (404 or 400, never an error deeper down: `int()` refuses 5,000 digits, Postgres a 20-digit id).
ROW_ID = re.compile(r"[0-9]{1,18}")


class RowIdConvertor(Convertor[int]):
    regex = ROW_ID.pattern

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("row_id", RowIdConvertor())


class BadRequest(Exception):
    """A filter or form value that cannot be used; the message says which and why."""


class Unavailable(Exception):
    """The database did not answer in time (or at all); the message says what happened."""


async def form_fields(request: Request, limit: int = 16 * 1024) -> dict[str, str]:
    """The fields of a small urlencoded form (the dashboard's own forms; anything else is empty).
    Parsed here rather than with python-multipart: our forms are a handful of short fields."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        chart=charts.render,
        admin_store=admin_url,
        since=lambda value: render.since(value, datetime.now(UTC)),
    )
    env.filters.update(
        age=render.age,
        ts=render.timestamp,
        lane=render.lane_name,
        pretty=render.pretty_json,
        clean=render.redact_text,
    )
    return Jinja2Templates(env=env)


def create_dashboard(
    settings: Settings,
    pool: PoolGetter,
    dashboard_settings: DashboardSettings | None = None,
    network: NetworkGetter | None = None,
) -> Starlette:
    """The dashboard app. `pool()` returns the web app's pooled-path pool (None before start-up);
    `network()` the configured network (the product page reads its stores)."""
    disabled_reason = ""
    if dashboard_settings is None:
        try:
            dashboard_settings = DashboardSettings.load()
        except ConfigError as err:
            # A bad dashboard setting must not stop webhook ingestion: the dashboard stays off
            # and says why (the message names the variable, never its value).
            log.error("dashboard_disabled", reason=str(err))
            disabled_reason = str(err)
            dashboard_settings = DashboardSettings.model_construct()  # defaults, token unset: disabled
    ds = dashboard_settings
    sync_settings = SyncSettings.load()
    live = LiveStores(settings, network or (lambda: None), pool)
    templates = _templates()
    max_age_s = ds.session_hours * 3600

    def base_of(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def page(
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        session: auth.Session | None = None,
    ) -> Response:
        token = ds.token.get_secret_value() if ds.token else ""
        context = {
            "base": base_of(request),
            "csrf": session.csrf_token(token) if session and not session.via_bearer else "",
            "signed_in": session is not None,
            "now": datetime.now(UTC),
            "nav": "",
            **context,
        }
        response = templates.TemplateResponse(request, name, context, status_code=status)
        # Operator pages hold live data and carry a CSRF token: never cache, never frame.
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def refused(request: Request) -> Response | None:
        """The answer for a caller who may not see the dashboard, or None when they may."""
        if not ds.enabled:
            return page(request, "disabled.html", {"reason": disabled_reason}, status=503)
        return None

    def guard(handler: Callable[[Request, auth.Session], Awaitable[Response]]):
        async def endpoint(request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            token = ds.token.get_secret_value() if ds.token else ""
            session = auth.session_of(request, token, max_age_s)
            if session is None:
                next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return page(
                    request,
                    "login.html",
                    {"next": next_path if request.method == "GET" else "", "error": ""},
                    status=401,
                )
            nonce = session.nonce
            try:
                revoked = not session.via_bearer and await read(
                    lambda conn: scalar(conn, q.SESSION_REVOKED, {"nonce": nonce})
                )
            except Unavailable as err:
                return page(
                    request, "error.html", {"title": "Database unavailable", "message": str(err)}, status=503
                )
            if revoked:  # signed out (in any browser holding a copy of the cookie)
                return page(request, "login.html", {"next": "", "error": ""}, status=401)
            if request.method == "POST":
                form = await form_fields(request)
                if not session.csrf_ok(token, form.get("csrf")):
                    return page(
                        request,
                        "error.html",
                        {
                            "title": "Refused",
                            "message": "The form's CSRF token is missing or stale: reload the page and try again.",
                        },
                        status=403,
                        session=session,
                    )
            try:
                return await handler(request, session)
            except BadRequest as err:
                return page(
                    request,
                    "error.html",
                    {"title": "Bad request", "message": str(err)},
                    status=400,
                    session=session,
                )
            except Unavailable as err:
                return page(
                    request,
                    "error.html",
                    {"title": "Database unavailable", "message": str(err)},
                    status=503,
                    session=session,
                )

        return endpoint

    readers = asyncio.Semaphore(ds.max_concurrent_reads)

    async def read(
        work: Callable[[psycopg.AsyncConnection], Awaitable[Any]], *, live_reads: bool = False
    ) -> Any:
        """Run `work` in one transaction on the pooled path (page reads; a sign-out's revocation),
        bounded in time, holding at most `max_concurrent_reads` of the shared pool's connections.
        `live_reads`: `work` also calls the stores' API, so its statements run each in its own
        transaction (autocommit: no transaction is held open while a store answers)."""
        current = pool()
        if current is None:
            raise Unavailable("the web tier has not opened its database pool yet")
        try:
            async with asyncio.timeout(settings.pool_timeout):
                await readers.acquire()
        except TimeoutError:
            raise Unavailable("other dashboard pages are still loading; try again shortly") from None
        try:
            # Rows come back as dicts through each cursor's own row factory: the connection goes
            # back to a pool shared with ingestion and must leave exactly as it came.
            if live_reads:
                async with current.connection() as conn:
                    await conn.set_autocommit(True)
                    try:
                        return await work(conn)
                    finally:
                        if not conn.closed:
                            await conn.set_autocommit(False)
            async with current.connection() as conn, conn.transaction():
                if ds.statement_timeout_ms:
                    await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (str(ds.statement_timeout_ms),))
                return await work(conn)
        except PoolTimeout:
            raise Unavailable("no database connection was free in time; try again shortly") from None
        except psycopg.errors.QueryCanceled:
            raise Unavailable(f"the page's query ran longer than {ds.statement_timeout_ms} ms") from None
        except psycopg.OperationalError as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise Unavailable(f"cannot reach the database: {render.redact_text(first)}") from None
        finally:
            readers.release()

    async def rows(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> list[dict]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def one(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> dict | None:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchone()

    async def scalar(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> Any:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
        return row[0] if row else None

    async def table_exists(conn: psycopg.AsyncConnection, name: str) -> bool:
        row = await one(conn, q.TABLE_EXISTS, {"name": name})
        return bool(row and next(iter(row.values())))

    def run_op(op: Callable[[psycopg.Connection, int], bool], job_id: int) -> bool:
        """One queue operation in its own short transaction on the pooled path."""
        with (
            connect_pooled(settings, autocommit=False) as conn,
            conn.transaction(),
        ):
            if ds.statement_timeout_ms:
                conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (str(ds.statement_timeout_ms),))
            return op(conn, job_id)

    async def act(op_name: str, job_id: int) -> bool:
        op = {"replay": queue_ops.replay_job, "cancel": queue_ops.cancel_job}[op_name]
        try:
            return await asyncio.to_thread(run_op, op, job_id)
        except psycopg.errors.QueryCanceled:
            raise Unavailable(f"the {op_name} did not finish within {ds.statement_timeout_ms} ms") from None
        except psycopg.OperationalError as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise Unavailable(f"cannot reach the database: {render.redact_text(first)}") from None

    # ------------------------------------------------------------------------- parameters

    def opt_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
        value = request.query_params.get(name) or None
        if value is not None and value not in choices:
            raise BadRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def opt_int(request: Request, name: str, low: int = 0, high: int = 2**62) -> int | None:
        value = (request.query_params.get(name) or "").strip()
        if not value:
            return None
        if not ROW_ID.fullmatch(value) or not (low <= int(value) <= high):
            raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        return int(value)

    def opt_text(request: Request, name: str, max_len: int = 200) -> str | None:
        value = (request.query_params.get(name) or "").strip()
        if len(value) > max_len:
            raise BadRequest(f"{name} is longer than {max_len} characters")
        return value or None

    def paged(found: list[dict], limit: int) -> tuple[list[dict], int | None]:
        """The page's rows and the `before` cursor of the next (older) page, if any."""
        if len(found) > limit:
            found = found[:limit]
            return found, found[-1]["id"]
        return found, None

    def link(request: Request, path: str, **params: Any) -> str:
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return base_of(request) + path + (f"?{urlencode(kept)}" if kept else "")

    # ------------------------------------------------------------------------- pages

    async def overview(request: Request, session: auth.Session) -> Response:
        rng = charts.RANGES[opt_choice(request, "range", tuple(charts.RANGES)) or "hour"]

        async def work(conn):
            health = await network_health(
                conn,
                behind_after_s=sync_settings.behind_after_s,
                failing_within_s=sync_settings.failing_within_s,
            )
            shown = await chart_data(conn, rng, health.at, [h.shop for h in health.stores])
            depth = await queue_ops.depth_by_lane_and_state(conn)
            merchants_queue = await queue_ops.backlog_by_group(conn)
            workers = await queue_ops.worker_heartbeats(conn)
            deliveries = await rows(conn, q.DELIVERIES_BY_STATUS)
            return health, shown, depth, merchants_queue, workers, deliveries

        health, shown, depth, merchants_queue, workers, deliveries = await read(work)
        names = {h.facts.merchant_id: h.facts.merchant_name for h in health.stores}
        merchants_queue = [{**g, "merchant_name": names.get(g["group_key"])} for g in merchants_queue]
        lanes = sorted(render.LANE_NAMES)
        grid = {(r["lane"], r["state"]): r["jobs"] for r in depth}
        depth_rows = [
            {"lane": lane, "counts": [grid.get((lane, st), 0) for st in JOB_STATES]} for lane in lanes
        ]
        totals = [sum(grid.get((lane, st), 0) for lane in lanes) for st in JOB_STATES]
        counts = {state: len(health.by_state(state)) for state in StoreState}
        return page(
            request,
            "overview.html",
            {
                "nav": "overview",
                "health": health,
                "state_counts": counts,
                "charts": shown,
                "range": rng.name,
                "ranges": list(charts.RANGES),
                "states": JOB_STATES,
                "depth_rows": depth_rows,
                "totals": totals,
                "merchants_queue": merchants_queue,
                "workers": workers,
                "deliveries": deliveries,
            },
            session=session,
        )

    async def chart_data(conn, rng: charts.Range, now: datetime, shops: list[str]) -> list[charts.Chart]:
        buckets = rng.buckets(now)
        since = buckets[0]

        async def counted(name: str) -> dict[tuple[datetime, str], float]:
            found = await series.series_buckets(conn, name, since=since, bucket_s=rng.bucket_s)
            return {(b.at, b.key): b.value for b in found}

        received = await counted(series.SERIES_WEBHOOKS)
        per_bucket: dict[datetime, float] = {}
        for (at, _shop), n in received.items():
            per_bucket[at] = per_bucket.get(at, 0.0) + n
        webhooks = charts.Chart(
            "chart-webhooks",
            "Webhooks received",
            "",
            buckets,
            {"webhooks": [per_bucket.get(b, 0.0) for b in buckets]},
            "bars",
        )
        latency_rows = {
            r["at"]: r for r in await propagation_buckets(conn, since=since, bucket_s=rng.bucket_s)
        }
        latency = charts.Chart(
            "chart-latency",
            "Propagation latency: source change to last store written (p50, p99)",
            "s",
            buckets,
            {
                q_name: [
                    float(latency_rows[b][q_name])
                    if b in latency_rows and latency_rows[b][q_name] is not None
                    else None
                    for b in buckets
                ]
                for q_name in ("p50", "p99")
            },
            "lines",
            {"p50": "s0", "p99": "s3"},
        )
        outcomes = await counted(series.SERIES_JOBS)
        jobs = charts.Chart(
            "chart-jobs",
            "Jobs by outcome",
            "",
            buckets,
            charts.bucketed(
                buckets, outcomes, [o for o in JOB_OUTCOMES if any(k == o for _b, k in outcomes)]
            ),
            "stacked",
            OUTCOME_CLASSES,
        )
        calls: dict[tuple[datetime, str], float] = {}
        throttled: dict[tuple[datetime, str], float] = {}
        for (at, key), n in (await counted(series.SERIES_API_CALLS)).items():
            shop, _, outcome = key.rpartition(" ")
            calls[(at, shop)] = calls.get((at, shop), 0.0) + n
            if outcome in THROTTLED_OUTCOMES:
                throttled[(at, shop)] = throttled.get((at, shop), 0.0) + n
        called = sorted({shop for _at, shop in calls}, key=lambda s: (s not in shops, s))
        share = charts.Chart(
            "chart-throttled",
            "THROTTLED share of Admin API calls, per store",
            "%",
            buckets,
            {
                store_handle(shop): [
                    100.0 * throttled.get((b, shop), 0.0) / calls[(b, shop)] if calls.get((b, shop)) else None
                    for b in buckets
                ]
                for shop in called
            },
            "lines",
        )
        return [webhooks, latency, jobs, share]

    async def queue(request: Request, session: auth.Session) -> Response:
        filters: dict[str, Any] = {
            "state": opt_choice(request, "state", JOB_STATES),
            "lane": opt_int(request, "lane", 0, max(render.LANE_NAMES)),
            "group": opt_text(request, "merchant"),
            "kind": opt_text(request, "kind"),
        }
        before = opt_int(request, "before", 1)

        async def work(conn):
            found = await queue_ops.jobs_page(conn, **filters, before=before, limit=ds.page_size + 1)
            groups = await queue_ops.groups(conn)
            return found, groups

        found, groups = await read(work)
        jobs, next_before = paged(found, ds.page_size)
        shown = {
            "state": filters["state"],
            "lane": filters["lane"],
            "merchant": filters["group"],
            "kind": filters["kind"],
        }
        return page(
            request,
            "queue.html",
            {
                "nav": "queue",
                "jobs": jobs,
                "groups": groups,
                "states": JOB_STATES,
                "lanes": render.LANE_NAMES,
                "filters": shown,
                "paged": before is not None,
                "next_url": link(request, "/queue", **shown, before=next_before) if next_before else "",
                "first_url": link(request, "/queue", **shown),
            },
            session=session,
        )

    async def job_detail(request: Request, session: auth.Session) -> Response:
        job_id = request.path_params["job_id"]

        async def work(conn):
            job = await queue_ops.job_detail(conn, job_id)
            delivery = None
            if (
                job
                and job["kind"].startswith("webhook.")
                and isinstance(job["payload"], dict)
                and isinstance(job["payload"].get("delivery_id"), str)
            ):
                delivery = await one(
                    conn, q.DELIVERY_OF_WEBHOOK, {"webhook_id": job["payload"]["delivery_id"]}
                )
            return job, delivery, await stores_status(conn) if job else []

        job, delivery, stores = await read(work)
        if job is None:
            return page(
                request,
                "error.html",
                {"title": "Not found", "message": f"There is no job {job_id}."},
                status=404,
                session=session,
            )
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return page(
            request,
            "job.html",
            {
                "nav": "queue",
                "job": job,
                "delivery": delivery,
                "errors": render.redact(job["errors"] or []),
                "notice": notice,
                "replay_warning": why_replay_fails(job, stores),
            },
            session=session,
        )

    def job_action(op_name: str, done: str, not_done: str):
        async def handler(request: Request, session: auth.Session) -> Response:
            job_id = request.path_params["job_id"]
            ok = await act(op_name, job_id)
            log.info(f"dashboard_job_{op_name}", job_id=job_id, ok=ok)
            return RedirectResponse(
                link(request, f"/jobs/{job_id}", notice=done if ok else not_done), status_code=303
            )

        return handler

    async def products(request: Request, session: auth.Session) -> Response:
        query = opt_text(request, "q") or ""
        hits, error = [], ""
        if query:
            try:
                runtime = await live.runtime()

                async def work(conn):
                    return await find_products(runtime, conn, query)

                hits = await read(work, live_reads=True)
            except LiveUnavailable as err:
                error = str(err)
            except CommerceError as err:
                error = f"a store did not answer the search: {type(err).__name__}: {render.redact_text(str(err))[:300]}"
        if len(hits) == 1:
            hit = hits[0]
            return RedirectResponse(
                link(request, f"/products/{hit.merchant_id}/{hit.product_id.rsplit('/', 1)[-1]}"),
                status_code=303,
            )
        return page(
            request,
            "products.html",
            {"nav": "products", "query": query, "hits": hits, "error": error},
            session=session,
        )

    async def product(request: Request, session: auth.Session) -> Response:
        merchant_id = request.path_params["merchant"]
        number = request.path_params["product"]
        if not MERCHANT_ID.fullmatch(merchant_id):
            raise BadRequest("not a merchant id")
        product_id = f"gid://shopify/Product/{number}"
        try:
            runtime = await live.runtime()
            if merchant_id not in {m.merchant_id for m in runtime.network.merchants}:
                raise BadRequest(f"there is no merchant {merchant_id!r}")

            async def work(conn):
                return await product_across_stores(runtime, conn, merchant_id, product_id)

            view = await read(work, live_reads=True)
        except LiveUnavailable as err:
            return page(
                request,
                "error.html",
                {"title": "Stores unavailable", "message": str(err)},
                status=503,
                session=session,
            )
        except CommerceError as err:
            return page(
                request,
                "error.html",
                {
                    "title": "The parent store did not answer",
                    "message": f"{type(err).__name__}: {render.redact_text(str(err))[:300]}",
                },
                status=502,
                session=session,
            )
        if view is None:
            return page(
                request,
                "error.html",
                {
                    "title": "Not found",
                    "message": f"The parent store of {merchant_id} has no product {number}.",
                },
                status=404,
                session=session,
            )
        return page(
            request,
            "product.html",
            {"nav": "products", "view": view, "admin_url": admin_url},
            session=session,
        )

    async def failures(request: Request, session: auth.Session) -> Response:
        jobs_before = opt_int(request, "jobs_before", 1)
        deliveries_before = opt_int(request, "deliveries_before", 1)

        async def work(conn):
            dead = await queue_ops.dead_jobs_page(conn, before=jobs_before, limit=ds.page_size + 1)
            bad = await rows(
                conn, q.FAILED_DELIVERIES_PAGE, {"before": deliveries_before, "limit": ds.page_size + 1}
            )
            attention = await open_attention_page(conn, limit=ds.page_size)
            return dead, bad, attention

        dead, bad, attention = await read(work)
        dead, next_jobs = paged(dead, ds.page_size)
        bad, next_deliveries = paged(bad, ds.page_size)
        return page(
            request,
            "failures.html",
            {
                "nav": "failures",
                "dead": dead,
                "deliveries": bad,
                "attention": attention,
                "next_jobs_url": link(
                    request, "/failures", jobs_before=next_jobs, deliveries_before=deliveries_before
                )
                if next_jobs
                else "",
                "next_deliveries_url": link(
                    request, "/failures", jobs_before=jobs_before, deliveries_before=next_deliveries
                )
                if next_deliveries
                else "",
                "first_url": link(request, "/failures"),
                "paged": jobs_before is not None or deliveries_before is not None,
            },
            session=session,
        )

    async def delivery_detail(request: Request, session: auth.Session) -> Response:
        delivery_id = request.path_params.get("delivery_id")
        webhook_id = request.path_params.get("webhook_id")

        async def work(conn):
            d = await one(
                conn,
                q.DELIVERY_DETAIL,
                {"id": delivery_id, "webhook_id": webhook_id, "preview": DELIVERY_PREVIEW_BYTES},
            )
            jobs = []
            if d and d["status"] == "accepted":
                jobs = await queue_ops.jobs_with_payload_value(
                    conn,
                    group=d["merchant_id"],
                    kind_prefix="webhook.",
                    key="delivery_id",
                    value=d["webhook_id"],
                )
            return d, jobs

        d, jobs = await read(work)
        if d is None:
            return page(
                request,
                "error.html",
                {"title": "Not found", "message": f"There is no delivery {delivery_id or webhook_id}."},
                status=404,
                session=session,
            )
        body, is_json = render.raw_body_text(d["payload_preview"], d["payload_bytes"])
        return page(
            request,
            "delivery.html",
            {"nav": "failures", "d": d, "jobs": jobs, "body": body, "body_is_json": is_json},
            session=session,
        )

    async def audit(request: Request, session: auth.Session) -> Response:
        filters = {
            "shop": opt_text(request, "shop"),
            "object": opt_text(request, "object"),
            "cause": opt_text(request, "cause"),
        }
        before = opt_int(request, "before", 1)

        async def work(conn):
            shops = [r["shop_domain"] for r in await rows(conn, q.STORE_DOMAINS)]
            if not await table_exists(conn, AUDIT_TABLE):
                return None, shops
            found = await audit_page(
                conn,
                shop=filters["shop"],
                object_id=filters["object"],
                cause=filters["cause"],
                before=before,
                limit=ds.page_size + 1,
            )
            return found, shops

        found, shops = await read(work)
        entries, next_before = paged(found or [], ds.page_size)
        return page(
            request,
            "audit.html",
            {
                "nav": "audit",
                "available": found is not None,
                "table": AUDIT_TABLE,
                "entries": [render.audit_entry(e) for e in entries],
                "filters": filters,
                "shops": shops,
                "paged": before is not None,
                "next_url": link(request, "/audit", **filters, before=next_before) if next_before else "",
                "first_url": link(request, "/audit", **filters),
            },
            session=session,
        )

    # ------------------------------------------------------------------------- sign-in

    async def login_form(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        return page(
            request,
            "login.html",
            {"next": auth.safe_next(base_of(request), request.query_params.get("next")), "error": ""},
        )

    limiter = auth.SignInLimiter(ds.sign_in_attempts_per_minute)

    def cookie_secure(request: Request) -> bool:
        """Secure, unless explicitly allowed off for plain http between loopback addresses."""
        if not ds.plain_http_loopback or request.url.scheme != "http":
            return True
        ends = [request.client.host if request.client else "", (request.scope.get("server") or ("",))[0]]
        return not all(is_loopback(end) for end in ends)

    async def login(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        client = request.client.host if request.client else "unknown"
        wait_s = limiter.retry_after(client)
        if wait_s:
            log.warning("dashboard_sign_in_throttled", client=client, retry_after_s=wait_s)
            response = page(
                request,
                "login.html",
                {"next": "", "error": f"Too many failed sign-ins: try again in {wait_s} s."},
                status=429,
            )
            response.headers["Retry-After"] = str(wait_s)
            return response
        form = await form_fields(request)
        token = ds.token.get_secret_value() if ds.token else ""
        next_path = auth.safe_next(base_of(request), form.get("next"))
        if not auth.token_matches(form.get("token"), token):
            limiter.failed(client)
            log.warning("dashboard_sign_in_refused", client=client)
            await asyncio.sleep(0.2)  # blunt guessing a little; the token is long anyway
            return page(
                request,
                "login.html",
                {"next": next_path, "error": "That is not the operator token."},
                status=401,
            )
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            auth.COOKIE_NAME,
            auth.new_session_cookie(token),
            max_age=int(max_age_s),
            path=base_of(request) + "/",
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request),
        )
        log.info("dashboard_signed_in", client=client)
        return response

    async def logout(request: Request, session: auth.Session) -> Response:
        if not session.via_bearer:  # the cookie's session ends everywhere, not only in this browser
            expires_at = max(session.issued_at + max_age_s, time.time()) + 60

            async def revoke(conn: psycopg.AsyncConnection) -> None:
                await conn.execute(q.REVOKE_SESSION, {"nonce": session.nonce, "expires_at": expires_at})

            await read(revoke)
            log.info("dashboard_signed_out", client=request.client.host if request.client else None)
        response = RedirectResponse(base_of(request) + "/login", status_code=303)
        response.delete_cookie(auth.COOKIE_NAME, path=base_of(request) + "/")
        return response

    app = Starlette(
        routes=[
            Route("/", guard(overview), methods=["GET"], name="overview"),
            Route("/queue", guard(queue), methods=["GET"], name="queue"),
            Route("/products", guard(products), methods=["GET"], name="products"),
            Route("/products/{merchant}/{product:row_id}", guard(product), methods=["GET"], name="product"),
            Route("/jobs/{job_id:row_id}", guard(job_detail), methods=["GET"], name="job"),
            Route(
                "/jobs/{job_id:row_id}/replay",
                guard(job_action("replay", "replayed", "not-replayed")),
                methods=["POST"],
                name="job_replay",
            ),
            Route(
                "/jobs/{job_id:row_id}/cancel",
                guard(job_action("cancel", "cancelled", "not-cancelled")),
                methods=["POST"],
                name="job_cancel",
            ),
            Route("/failures", guard(failures), methods=["GET"], name="failures"),
            Route(
                "/deliveries/{delivery_id:row_id}", guard(delivery_detail), methods=["GET"], name="delivery"
            ),
            Route(
                "/deliveries/webhook/{webhook_id}",
                guard(delivery_detail),
                methods=["GET"],
                name="delivery_by_webhook",
            ),
            Route("/audit", guard(audit), methods=["GET"], name="audit"),
            Route("/login", login_form, methods=["GET"], name="login_form"),
            Route("/login", login, methods=["POST"], name="login"),
            Route("/logout", guard(logout), methods=["POST"], name="logout"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
    )
    app.state.dashboard_settings = ds
    app.state.live = live
    return app
