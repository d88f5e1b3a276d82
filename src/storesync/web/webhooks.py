"""`POST /webhooks/shopify`: Shopify's front door.

Checks, in order, each answered without writing anything:
  more webhook requests in flight than `max_concurrent` -> 503 + Retry-After, at once;
  the headers, before a byte of the body is read: X-Shopify-Shop-Domain a store we serve,
  X-Shopify-Hmac-Sha256 a well-formed signature, X-Shopify-Topic and X-Shopify-Webhook-Id present
  and well-formed; else 401 (one body for every authentication failure: shops cannot be
  enumerated); body over the size limit -> 413 (Content-Length checked first, then counted while
  streaming, so the rest of an oversized body is never read); the body not in within
  `body_timeout_s` -> 408; HMAC matching none of the store's secrets -> 401 (the same body).
Then one transaction records the delivery and enqueues its job (first delivery only) -> 200.
An `inventory_levels/update` that only reports the engine's own write (an echo) is judged in that
transaction and recorded without a job (`echo`; `STORESYNC_WEB_ECHOES_AT_INGEST`, docs/decisions/0055).
A duplicate -> 200. A signed body that is not a JSON object Postgres can store, or a topic
storesync does not handle, is kept (`unparseable` / `ignored`) -> 200: no signed body, whatever
it holds, gets a 5xx while the database is up. Order bodies are cut to what sync needs before
they are stored (`personal_data.py`). The database down, slow or out of connections -> 503 within
the request budget (Shopify retries; the webhook id dedupes).

X-Shopify-Triggered-At is not signed: a malformed one is dropped (counted), never a reason to
refuse a signed delivery; sync orders levels by the body's `updated_at` and uses the header only
within a window around it (`sync.conflicts.version_of_delivery`).
"""

from __future__ import annotations

import json
import time

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from storesync.api_version import ADMIN_API_VERSION
from storesync.db.series import SERIES_WEBHOOKS
from storesync.logs import get_logger
from storesync.queue.enqueue import JobSpec
from storesync.sync.services.sales import LevelDelivery, level_delivery
from storesync.web.deadline import within
from storesync.web.ingest import (
    ACCEPTED,
    IGNORED,
    JUDGED_AT_INGEST,
    UNPARSEABLE,
    Delivery,
    api_version_of,
    identifier,
    parse_body,
    parse_triggered_at,
    topic_of,
    verify_hmac,
    well_formed_signature,
)
from storesync.web.personal_data import minimised, spec_of
from storesync.web.topics import handled, job_spec, reports_a_level

log = get_logger("storesync.web.webhooks")

# The one answer to every authentication failure: which check failed is for our metrics only.
UNAUTHORIZED = {"status": 401, "message": "unauthorized"}


class _TooLarge(Exception):
    pass


class WebhookSlots:
    """Webhook requests in flight in this process (one event loop: a plain counter)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use -= 1


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_too_large(request: Request, limit: int) -> bool:
    declared = (request.headers.get("content-length") or "").strip()
    return declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit)


def _answer(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status)


def _level_to_judge(shop: str, role: str, job: JobSpec | None) -> LevelDelivery | None:
    """What judging a level delivery at ingest needs, from its job's payload (the worker reads
    the same); None when its body cannot be judged (its job fails as it would have)."""
    if job is None:
        return None
    try:
        return level_delivery(shop, role, job.payload)  # the stored payload: what its job reads
    except (ValueError, TypeError):
        return None


def _unauthorized(metrics, reason: str) -> JSONResponse:
    metrics.rejections.labels(reason).inc()
    return JSONResponse(UNAUTHORIZED, status_code=401)


async def shopify_webhook(request: Request) -> Response:
    started = time.perf_counter()
    state = request.app.state
    slots: WebhookSlots = state.webhook_slots
    if not slots.take():
        state.metrics.rejections.labels("overloaded").inc()
        response: Response = _answer(503, "too many webhook requests in flight; retry", reason="overloaded")
        response.headers["Retry-After"] = "1"
    else:
        try:
            response = await _handle(request)
        finally:
            slots.give_back()
    state.metrics.latency.labels(str(response.status_code)).observe(time.perf_counter() - started)
    return response


async def _handle(request: Request) -> Response:
    state = request.app.state
    metrics = state.metrics
    web = state.web_settings
    headers = request.headers  # case-insensitive

    # Headers first: nothing of the body is read for a request that cannot be Shopify's.
    shop = (headers.get("x-shopify-shop-domain") or "").strip().lower()
    found = state.network.store(shop) if shop else None
    if found is None:
        return _unauthorized(metrics, "unknown_shop")
    merchant, store = found
    signature = headers.get("x-shopify-hmac-sha256")
    if not well_formed_signature(signature):
        return _unauthorized(metrics, "bad_hmac")
    topic = topic_of(headers.get("x-shopify-topic"))
    webhook_id = identifier(headers.get("x-shopify-webhook-id"))
    if topic is None or webhook_id is None:
        return _unauthorized(metrics, "missing_header")

    if _declared_too_large(request, web.max_body_bytes):
        metrics.rejections.labels("too_large").inc()
        return _answer(413, f"body exceeds {web.max_body_bytes} bytes")
    try:
        body = await within(_read_limited(request, web.max_body_bytes), web.body_timeout_s)
    except _TooLarge:
        metrics.rejections.labels("too_large").inc()
        return _answer(413, f"body exceeds {web.max_body_bytes} bytes")
    except TimeoutError:
        metrics.rejections.labels("slow_body").inc()
        return _answer(408, f"the body did not arrive within {web.body_timeout_s:g} s")
    except ClientDisconnect:
        metrics.rejections.labels("disconnected").inc()
        return _answer(400, "the client went away before sending the body")

    if not verify_hmac(body, signature, store.webhook_secrets):
        return _unauthorized(metrics, "bad_hmac")

    try:
        triggered_at = parse_triggered_at(headers.get("x-shopify-triggered-at"))
    except ValueError:
        metrics.ignored_headers.labels("x-shopify-triggered-at").inc()
        triggered_at = None
    event_id = identifier(headers.get("x-shopify-event-id"))
    api_version = api_version_of(headers.get("x-shopify-api-version"))
    if api_version is not None and api_version != ADMIN_API_VERSION:
        # The payload follows the app's webhook API version (Dev Dashboard), not ours: counted and
        # logged so the operator aligns them; the delivery is still recorded.
        metrics.api_version_mismatch.labels(api_version).inc()
        log.warning(
            "webhook_api_version_mismatch",
            shop=shop,
            topic=topic,
            sent=api_version,
            expected=ADMIN_API_VERSION,
        )

    parsed = parse_body(body)
    job = None
    level = None
    payload = body
    if parsed is None:
        status = UNPARSEABLE  # kept as sent, byte for byte (bytea): an operator can read it
    elif not handled(topic):
        status = IGNORED
        payload = b""  # a topic we do not use may carry anything (customers/*): headers only
    else:
        status = ACCEPTED
        spec = spec_of(topic)
        if spec is not None:
            parsed = minimised(parsed, spec)
            payload = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
        job = job_spec(
            topic=topic,
            shop=shop,
            merchant_id=merchant.id,
            webhook_id=webhook_id,
            event_id=event_id,
            triggered_at=triggered_at.isoformat() if triggered_at else None,
            api_version=api_version,
            body=parsed,
        )
        if web.echoes_at_ingest and reports_a_level(topic):
            level = _level_to_judge(shop, "parent" if merchant.parent.shop == shop else "child", job)
    delivery = Delivery(
        webhook_id=webhook_id,
        shop=shop,
        merchant_id=merchant.id,
        topic=topic,
        event_id=event_id,
        triggered_at=triggered_at,
        api_version=api_version,
        payload=payload,
        status=status,
        job=job,
        level=level,
    )

    reason = None
    try:
        # Nothing is committed by an abandoned attempt unless its COMMIT was already sent, and
        # then Shopify's retry finds the delivery recorded.
        recorded = await within(state.batcher.record(delivery), web.request_budget_s)
    except PoolTimeout:
        reason = "pool_exhausted"
    except TimeoutError:
        reason = "timeout"
    except psycopg.errors.QueryCanceled:
        reason = "statement_timeout"
    except psycopg.OperationalError:
        reason = "database_unavailable"
    except psycopg.Error as err:
        # Anything else from the database (schema dropped under us, ...): Shopify retries a 503,
        # and the webhook id makes the retry safe; log it so it is not silent.
        reason = "database_error"
        log.error("webhook_database_error", error=str(err), sqlstate=err.sqlstate, topic=topic, shop=shop)
    except Exception:
        # A bug of ours: still an answer Shopify retries, and loud in the log.
        reason = "internal_error"
        log.exception("webhook_internal_error", topic=topic, shop=shop, webhook_id=webhook_id)
    if reason is not None:
        metrics.unavailable.labels(reason).inc()
        log.warning("webhook_unavailable", reason=reason, topic=topic, shop=shop, webhook_id=webhook_id)
        return _answer(503, f"cannot record the delivery now ({reason}); retry", reason=reason)

    topic_label = topic if handled(topic) else "other"
    metrics.deliveries_by_shop.labels(shop, "duplicate" if not recorded.first else recorded.status).inc()
    metrics.minute_counts.add(SERIES_WEBHOOKS, shop)
    if not recorded.first:
        metrics.duplicates.labels(topic_label).inc()
        metrics.deliveries.labels(topic_label, "duplicate").inc()
        return _answer(200, "duplicate delivery: already recorded", outcome="duplicate")
    metrics.deliveries.labels(topic_label, recorded.status).inc()
    if recorded.status in JUDGED_AT_INGEST:
        metrics.judged_at_ingest.labels(recorded.status).inc()
    if recorded.not_judged:
        metrics.levels_not_judged.inc()
    extra: dict[str, object] = {"outcome": recorded.status}
    if recorded.enqueued is not None:
        extra["job_id"] = recorded.enqueued.job_id
        extra["collapsed"] = recorded.enqueued.collapsed
    return _answer(200, "recorded", **extra)
