"""Verifying a webhook and recording it: the parts of ingestion that are not HTTP.

`verify_hmac` is Shopify's scheme: base64(HMAC-SHA256(secret, raw body)), compared in constant
time against each of the store's secrets (newest first; the previous one stays valid during a
rotation). `record_deliveries` is the one transaction: insert the deliveries under the webhook id's
unique constraint and, for each insert that was the first, enqueue its job. Level deliveries
carrying a `LevelDelivery` are judged first, in that transaction (`sync.services.sales.
judge_level_deliveries_at_ingest`, docs/decisions/0055): an echo of the engine's own write (or
such an echo found stale, or a child level of an item linked to nothing) is recorded with that
status and gets no job. If judging fails, the batch is recorded again without it: every
delivery gets its job, as with the setting off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
from pydantic import SecretStr

from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT
from storesync.logs import get_logger
from storesync.queue.enqueue import Enqueued, JobSpec, enqueue_many_async
from storesync.sync.adapters.postgres import PgAppliedVersions, PgLinks, PgWriteRecords
from storesync.sync.services.sales import IngestVerdict, LevelDelivery, judge_level_deliveries_at_ingest
from storesync.web import deliveries_sql as sql

log = get_logger("storesync.web.ingest")

ACCEPTED, UNPARSEABLE, IGNORED = "accepted", "unparseable", "ignored"
# Level deliveries finished at ingest, without a job (`IngestVerdict`).
ECHO, STALE, UNLINKED = (str(v) for v in (IngestVerdict.ECHO, IngestVerdict.STALE, IngestVerdict.UNLINKED))
JUDGED_AT_INGEST = (ECHO, STALE, UNLINKED)

# Shopify sends nanoseconds ("2026-11-25T12:00:00.123456789Z"); Python keeps microseconds.
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Shopify-Hmac-Sha256 value for `body` (used by tests, the bench and the emulator)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def well_formed_signature(header_value: str | None) -> bool:
    """Whether a header can be an HMAC-SHA256 in base64 at all (checked before reading the body)."""
    if not header_value or len(header_value) > 64:
        return False
    try:
        return len(base64.b64decode(header_value.strip(), validate=True)) == hashlib.sha256().digest_size
    except ValueError:
        return False


# Identifiers we store (webhook id, event id): printable ASCII without spaces (Shopify sends UUIDs).
_IDENTIFIER_RE = re.compile(r"[\x21-\x7e]{1,255}")
# Topics: lowercase words joined by slashes ("orders/create", "inventory_levels/update").
_TOPIC_RE = re.compile(r"[a-z0-9_]{1,64}(?:/[a-z0-9_]{1,64}){1,3}")
_API_VERSION_RE = re.compile(r"\d{4}-\d{2}|unstable")


def identifier(value: str | None) -> str | None:
    """A webhook or event id header, or None when absent or not a plausible identifier."""
    text = (value or "").strip()
    return text if _IDENTIFIER_RE.fullmatch(text) else None


def topic_of(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text if _TOPIC_RE.fullmatch(text) else None


def api_version_of(value: str | None) -> str | None:
    text = (value or "").strip()
    return text if _API_VERSION_RE.fullmatch(text) else None


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
    if len(value) > 64:
        raise ValueError("too long")
    text = _FRACTION_RE.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e999: Python's json makes it inf, jsonb has no such number
        raise ValueError(f"{text} is out of range")
    return value


# Nesting deeper than this is not a Shopify payload (theirs stay under ten levels); refusing it
# also keeps every later walk and json.dumps of the body far from Python's recursion limit.
MAX_DEPTH = 64
# A \u escape of a UTF-16 surrogate (D800-DFFF): Python accepts a lone one, jsonb refuses it.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def parse_body(body: bytes) -> dict | None:
    """The JSON object in `body`, or None when it is not one that Postgres can store as jsonb
    (kept as `unparseable`, its bytes untouched): not UTF-8 or not JSON, NaN/Infinity or a number
    beyond float range, a \\u0000 escape, a lone UTF-16 surrogate, nesting deeper than MAX_DEPTH.
    Any of these in a job payload would fail its whole batch on every retry."""
    try:
        parsed = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    if not isinstance(parsed, dict):
        return None
    check_strings = b"\\u0000" in body or _SURROGATE_ESCAPE.search(body) is not None
    # Cheap tests first: a body with few brackets cannot be deep, and without those escapes no
    # string can hold a NUL or a lone surrogate (raw UTF-8 cannot encode either).
    if (check_strings or body.count(b"[") + body.count(b"{") > MAX_DEPTH) and not _storable(
        parsed, check_strings
    ):
        return None
    return parsed


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return True
    return False


def _storable(value: object, check_strings: bool) -> bool:
    """Walk without recursion: nesting within MAX_DEPTH and, if asked, no string jsonb refuses."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                return False
            for key, child in item.items():
                if check_strings and _bad_text(key):
                    return False
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                return False
            stack.extend((child, depth + 1) for child in item)
        elif check_strings and isinstance(item, str) and _bad_text(item):
            return False
    return True


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
    status: str  # accepted | unparseable | ignored (echo | stale | unlinked: judged at ingest)
    job: JobSpec | None  # set only when status is accepted
    # An inventory_levels/update to judge at ingest (STORESYNC_WEB_ECHOES_AT_INGEST), else None.
    level: LevelDelivery | None = None

    def kept_unparseable(self) -> Delivery:
        """This delivery recorded without a job (what the database refused to store as a job)."""
        return replace(self, status=UNPARSEABLE, job=None, level=None)


@dataclass(frozen=True)
class Recorded:
    first: bool  # False: a duplicate of a recorded delivery, nothing written
    enqueued: Enqueued | None
    status: str = ACCEPTED  # what the delivery was recorded as
    # Its level could not be judged at ingest (the judging failed): it got its job instead.
    not_judged: bool = False


class _LevelsNotJudged(Exception):
    """Judging a batch's level deliveries failed (its transaction is rolled back)."""


async def record_deliveries(
    conn: psycopg.AsyncConnection, deliveries: Sequence[Delivery], *, statement_timeout_ms: int
) -> list[Recorded]:
    """Insert the deliveries and enqueue the job of each one that is the first with its webhook id;
    one transaction, committed on return; results in input order. A copy of a recorded delivery
    (or a second copy within `deliveries`) writes nothing. Works on the pooled path (PgBouncer
    transaction mode): no prepared statements, SET LOCAL only. Level deliveries are judged first
    (see the module's docstring); if that fails, the batch is recorded without judging them."""
    if not any(d.level is not None for d in deliveries):
        return await _record(conn, deliveries, statement_timeout_ms)
    try:
        return await _record(conn, deliveries, statement_timeout_ms)
    except _LevelsNotJudged as err:
        cause = err.__cause__
        log.warning(
            "levels_not_judged_at_ingest",
            deliveries=sum(d.level is not None for d in deliveries),
            error=f"{type(cause).__name__}: {cause}"[:300],
        )
    results = await _record(conn, [replace(d, level=None) for d in deliveries], statement_timeout_ms)
    return [
        replace(r, not_judged=True) if d.level is not None else r
        for d, r in zip(deliveries, results, strict=True)
    ]


async def _judged(conn: psycopg.AsyncConnection, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """The deliveries, those judged at ingest with their status and no job (in the caller's
    transaction: an echo's version is advanced)."""
    levels = [(i, d.level) for i, d in enumerate(deliveries) if d.level is not None and d.job is not None]
    if not levels:
        return list(deliveries)
    try:
        verdicts = await judge_level_deliveries_at_ingest(
            [level for _, level in levels],
            links=PgLinks(conn),
            versions=PgAppliedVersions(conn),
            writes=PgWriteRecords(conn),
        )
    except Exception as err:
        raise _LevelsNotJudged from err
    judged = list(deliveries)
    for (i, _), verdict in zip(levels, verdicts, strict=True):
        if verdict is not IngestVerdict.WORKER:
            judged[i] = replace(judged[i], status=str(verdict), job=None)
    return judged


async def _record(
    conn: psycopg.AsyncConnection, deliveries: Sequence[Delivery], statement_timeout_ms: int
) -> list[Recorded]:
    judging = any(d.level is not None for d in deliveries)
    # Autocommit while the transaction below is open: the sync adapters' statements then join it
    # instead of each opening a savepoint (two more round trips per statement).
    restore = judging and not conn.autocommit
    if restore:
        await conn.set_autocommit(True)
    try:
        return await _record_in_transaction(conn, deliveries, statement_timeout_ms)
    finally:
        if restore and not conn.closed:
            await conn.set_autocommit(False)


async def _record_in_transaction(
    conn: psycopg.AsyncConnection, deliveries: Sequence[Delivery], statement_timeout_ms: int
) -> list[Recorded]:
    async with conn.transaction():
        if statement_timeout_ms:
            await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (str(statement_timeout_ms),))
        # Judged before the insert: a copy of a recorded delivery is judged too, harmlessly (its
        # version equals the one its first copy brought, and an equal version goes through).
        deliveries = await _judged(conn, deliveries)
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
        Recorded(
            first=first, enqueued=next(enqueued) if first and d.job is not None else None, status=d.status
        )
        for d, first in zip(deliveries, firsts, strict=True)
    ]


async def record_delivery(
    conn: psycopg.AsyncConnection, delivery: Delivery, *, statement_timeout_ms: int
) -> Recorded:
    """`record_deliveries` for one delivery."""
    return (await record_deliveries(conn, [delivery], statement_timeout_ms=statement_timeout_ms))[0]


# --------------------------------------------------------------------------- retention
# On the caller's connection and transaction (which bounds them with its statement timeout).

DELIVERY_STATUSES = (ACCEPTED, UNPARSEABLE, IGNORED, *JUDGED_AT_INGEST)


async def count_old_deliveries(conn: psycopg.AsyncConnection, before: datetime) -> int:
    cur = await conn.execute(sql.COUNT_OLD_DELIVERIES, {"before": before})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def prune_deliveries(conn: psycopg.AsyncConnection, status: str, before: datetime, limit: int) -> int:
    """Delete one batch of the oldest deliveries of `status` received before `before`; how many."""
    cur = await conn.execute(sql.PRUNE_DELIVERIES, {"status": status, "before": before, "limit": limit})
    return cur.rowcount
