"""Verifying a webhook and recording it: the parts of ingestion that are not HTTP.

`verify_hmac` is Shopify's scheme: base64(HMAC-SHA256(secret, raw body)), compared in constant
time against each of the store's secrets (newest first; the previous one stays valid during a
rotation). `record_deliveries` is the one transaction: insert the deliveries under the webhook id's
unique constraint and, for each insert that was the first, enqueue its job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from pydantic import SecretStr

from storesync.queue.enqueue import Enqueued, JobSpec, enqueue_many_async
from storesync.web import deliveries_sql as sql

ACCEPTED, UNPARSEABLE, IGNORED = "accepted", "unparseable", "ignored"

# Shopify sends nanoseconds ("2026-11-25T12:00:00.123456789Z"); Python keeps microseconds.
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Shopify-Hmac-Sha256 value for `body` (used by tests, the bench and the emulator)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def verify_hmac(body: bytes, header_value: str | None, secrets: Iterable[SecretStr]) -> bool:
    """True when the header is the signature of `body` under any of `secrets`."""
    if not header_value:
        return False
    given = header_value.strip().encode()
    matched = False
    for secret in secrets:
        expected = sign(secret.get_secret_value(), body).encode()
        # Every secret is compared (no early exit), each in constant time.
        matched |= hmac.compare_digest(expected, given)
    return matched


def parse_triggered_at(value: str | None) -> datetime | None:
    """X-Shopify-Triggered-At as an aware datetime; raises ValueError when malformed."""
    if value is None or not value.strip():
        return None
    text = _FRACTION_RE.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> dict | None:
    """The JSON object in `body`, or None when it is not one (kept as `unparseable`).

    Also None for what Python's json accepts but Postgres jsonb refuses (NaN, Infinity, the
    \\u0000 escape): enqueueing such a payload would fail on every retry."""
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    if not isinstance(parsed, dict):
        return None
    if b"\\u0000" in body and _has_nul(parsed):  # cheap test first: a NUL needs that escape
        return None
    return parsed


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@dataclass(frozen=True)
class Delivery:
    """One authenticated webhook, ready to record."""

    webhook_id: str
    shop: str
    merchant_id: str
    topic: str
    event_id: str | None
    triggered_at: datetime | None
    api_version: str | None
    payload: bytes
    status: str  # accepted | unparseable | ignored
    job: JobSpec | None  # set only when status is accepted


@dataclass(frozen=True)
class Recorded:
    first: bool  # False: a duplicate of a recorded delivery, nothing written
    enqueued: Enqueued | None


async def record_deliveries(
    conn: psycopg.AsyncConnection, deliveries: Sequence[Delivery], *, statement_timeout_ms: int
) -> list[Recorded]:
    """Insert the deliveries and enqueue the job of each one that is the first with its webhook id;
    one transaction, committed on return; results in input order. A copy of a recorded delivery
    (or a second copy within `deliveries`) writes nothing. Works on the pooled path (PgBouncer
    transaction mode): no prepared statements, SET LOCAL only."""
    async with conn.transaction():
        if statement_timeout_ms:
            await conn.execute(sql.SET_LOCAL_STATEMENT_TIMEOUT, (str(statement_timeout_ms),))
        cur = await conn.execute(
            sql.INSERT_DELIVERIES,
            {
                "webhook_id": [d.webhook_id for d in deliveries],
                "shop": [d.shop for d in deliveries],
                "merchant_id": [d.merchant_id for d in deliveries],
                "topic": [d.topic for d in deliveries],
                "event_id": [d.event_id for d in deliveries],
                "triggered_at": [d.triggered_at for d in deliveries],
                "api_version": [d.api_version for d in deliveries],
                "payload": [d.payload for d in deliveries],
                "status": [d.status for d in deliveries],
            },
        )
        inserted = {row[0] for row in await cur.fetchall()}
        firsts: list[bool] = []
        for d in deliveries:
            firsts.append(d.webhook_id in inserted)
            inserted.discard(d.webhook_id)  # a second copy in the same batch is a duplicate
        jobs = [d.job for d, first in zip(deliveries, firsts, strict=True) if first and d.job is not None]
        enqueued = iter(await enqueue_many_async(conn, jobs) if jobs else [])
    return [
        Recorded(first=first, enqueued=next(enqueued) if first and d.job is not None else None)
        for d, first in zip(deliveries, firsts, strict=True)
    ]


async def record_delivery(
    conn: psycopg.AsyncConnection, delivery: Delivery, *, statement_timeout_ms: int
) -> Recorded:
    """`record_deliveries` for one delivery."""
    return (await record_deliveries(conn, [delivery], statement_timeout_ms=statement_timeout_ms))[0]
