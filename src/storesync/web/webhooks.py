"""`POST /webhooks/shopify`: Shopify's front door.

Checks, in order, each answered without writing anything:
  body over the size limit -> 413 (Content-Length checked first, then counted while streaming,
  so the rest of an oversized body is never read); unknown X-Shopify-Shop-Domain -> 401;
  HMAC matching none of the store's secrets -> 401; missing X-Shopify-Topic or
  X-Shopify-Webhook-Id (or a malformed X-Shopify-Triggered-At) -> 400.
Then one transaction records the delivery and enqueues its job (first delivery only) -> 200.
A duplicate -> 200. A signed body that is not a JSON object, or a topic storesync does not
handle, is kept (`unparseable` / `ignored`) -> 200. The database down, slow or out of
connections -> 503 within the request budget (Shopify retries; the webhook id dedupes).
"""

from __future__ import annotations

import time

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from storesync.logs import get_logger
from storesync.web.deadline import within
from storesync.web.ingest import (
    ACCEPTED,
    IGNORED,
    UNPARSEABLE,
    Delivery,
    parse_body,
    parse_triggered_at,
    verify_hmac,
)
from storesync.web.topics import handled, job_spec

log = get_logger("storesync.web.webhooks")


class _TooLarge(Exception):
    pass


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status)


async def shopify_webhook(request: Request) -> Response:
    started = time.perf_counter()
    response = await _handle(request)
    request.app.state.metrics.latency.labels(str(response.status_code)).observe(time.perf_counter() - started)
    return response


async def _handle(request: Request) -> Response:
    state = request.app.state
    metrics = state.metrics
    web = state.web_settings
    headers = request.headers  # case-insensitive

    try:
        body = await _read_limited(request, web.max_body_bytes)
    except _TooLarge:
        metrics.rejections.labels("too_large").inc()
        return _answer(413, f"body exceeds {web.max_body_bytes} bytes")

    shop = (headers.get("x-shopify-shop-domain") or "").strip().lower()
    found = state.network.store(shop) if shop else None
    if found is None:
        metrics.rejections.labels("unknown_shop").inc()
        return _answer(401, "unknown shop" if shop else "missing X-Shopify-Shop-Domain")
    merchant, store = found

    if not verify_hmac(body, headers.get("x-shopify-hmac-sha256"), store.webhook_secrets):
        metrics.rejections.labels("bad_hmac").inc()
        return _answer(401, "HMAC signature does not match")

    topic = (headers.get("x-shopify-topic") or "").strip().lower()
    webhook_id = (headers.get("x-shopify-webhook-id") or "").strip()
    missing = [
        name
        for name, value in (("X-Shopify-Topic", topic), ("X-Shopify-Webhook-Id", webhook_id))
        if not value
    ]
    if missing:
        metrics.rejections.labels("missing_header").inc()
        return _answer(400, "missing required headers: " + ", ".join(missing), missing=missing)
    raw_triggered_at = headers.get("x-shopify-triggered-at")
    try:
        triggered_at = parse_triggered_at(raw_triggered_at)
    except ValueError:
        metrics.rejections.labels("bad_header").inc()
        return _answer(400, "X-Shopify-Triggered-At is not an ISO 8601 timestamp with a time zone")
    event_id = (headers.get("x-shopify-event-id") or "").strip() or None
    api_version = (headers.get("x-shopify-api-version") or "").strip() or None

    parsed = parse_body(body)
    job = None
    if parsed is None:
        status = UNPARSEABLE
    elif not handled(topic):
        status = IGNORED
    else:
        status = ACCEPTED
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
    delivery = Delivery(
        webhook_id=webhook_id,
        shop=shop,
        merchant_id=merchant.id,
        topic=topic,
        event_id=event_id,
        triggered_at=triggered_at,
        api_version=api_version,
        payload=body,
        status=status,
        job=job,
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
    if reason is not None:
        metrics.unavailable.labels(reason).inc()
        log.warning("webhook_unavailable", reason=reason, topic=topic, shop=shop, webhook_id=webhook_id)
        return _answer(503, f"cannot record the delivery now ({reason}); retry", reason=reason)

    topic_label = topic if handled(topic) else "other"
    if not recorded.first:
        metrics.duplicates.labels(topic_label).inc()
        metrics.deliveries.labels(topic_label, "duplicate").inc()
        return _answer(200, "duplicate delivery: already recorded", outcome="duplicate")
    metrics.deliveries.labels(topic_label, status).inc()
    extra: dict[str, object] = {"outcome": status}
    if recorded.enqueued is not None:
        extra["job_id"] = recorded.enqueued.job_id
        extra["collapsed"] = recorded.enqueued.collapsed
    return _answer(200, "recorded", **extra)
