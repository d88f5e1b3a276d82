"""Retention: how long each table keeps its rows, and the prune that enforces it.

One use case for `storesync prune [--dry-run]` and the periodic `sync.prune` job. Every table is
pruned by batched DELETE of its oldest rows past a cutoff, by index, each batch one short
statement (no long locks, ingestion and claims go on meanwhile): docs/decisions/0101-retention-by-batched-delete.md.
The SQL stays with each table's part: deliveries in `web/deliveries_sql.py`, jobs in
`queue/queries.py`, the sync tables in `sync/store_pg.py`. What is kept and why:
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import psycopg
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings
from storesync.queue import queries as queue_sql
from storesync.queue.config import QueueSettings
from storesync.sync import store_pg as sync_sql
from storesync.web import deliveries_sql

DELIVERY_STATUSES = ("accepted", "unparseable", "ignored")


class RetentionSettings(EnvironmentSettings):
    """`STORESYNC_RETENTION_*`. Finished and dead jobs: `STORESYNC_QUEUE_RETENTION_SECONDS` and
    `STORESYNC_QUEUE_DEAD_RETENTION_SECONDS` (the queue's scheduler prunes them every minute)."""

    model_config = SettingsConfigDict(env_prefix="STORESYNC_RETENTION_", extra="ignore", frozen=True)

    # Webhook deliveries (their webhook id dedupes Shopify's retries, which stop within 48 hours).
    deliveries_days: Annotated[float, Field(ge=2)] = 14.0
    # The audit trail of every write the engine made.
    audit_days: Annotated[float, Field(ge=1)] = 90.0
    # Inventory ledger entries (applied; an order goes whole, and is remembered so that a late
    # webhook about it is not applied again). Longer than any return or refund window.
    ledger_days: Annotated[float, Field(ge=30)] = 400.0
    # Finished (completed or compensated) sagas and their step logs; stuck ones are kept.
    sagas_days: Annotated[float, Field(ge=1)] = 30.0
    # Echo-suppression write records (an echo comes within minutes).
    write_records_hours: Annotated[float, Field(ge=1)] = 24.0
    # Rows one DELETE removes (one short statement each).
    batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Milliseconds each batch may take before it is cancelled (and retried by the next run).
    statement_timeout_ms: Annotated[int, Field(ge=100)] = 10_000


@dataclass
class TablePrune:
    """What a prune did (or, dry, would do) to one table."""

    table: str
    kept_for: str
    old_rows: int  # rows past the cutoff when the prune started (an upper bound for the ledger)
    deleted: int = 0


Progress = Callable[[str, int], None]  # (table, rows deleted so far in it)


@dataclass(frozen=True)
class _Table:
    name: str
    kept_for: str
    count: Callable[[psycopg.AsyncConnection], Awaitable[int]]
    # Deletes one batch; returns (rows deleted, whether rows may be left).
    batch: Callable[[psycopg.AsyncConnection], Awaitable[tuple[int, bool]]]


async def _scalar(conn: psycopg.AsyncConnection, sql: str, params: dict) -> int:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _tables(
    settings: RetentionSettings, queue: QueueSettings, now: datetime, include_jobs: bool
) -> list[_Table]:
    limit = settings.batch
    timeout = str(settings.statement_timeout_ms)

    async def run(conn: psycopg.AsyncConnection, sql: str, params: dict) -> int:
        async with conn.transaction():
            await conn.execute(deliveries_sql.SET_LOCAL_STATEMENT_TIMEOUT, (timeout,))
            cur = await conn.execute(sql, {**params, "limit": limit})
            return cur.rowcount

    def by_age(sql: str, params: dict) -> Callable[[psycopg.AsyncConnection], Awaitable[tuple[int, bool]]]:
        async def batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
            n = await run(conn, sql, params)
            return n, n >= limit

        return batch

    deliveries_before = now - timedelta(days=settings.deliveries_days)

    async def deliveries_batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
        # A batch of each status (the (status, received_at) index serves one status at a time).
        deleted = 0
        for status in DELIVERY_STATUSES:
            params = {"status": status, "before": deliveries_before}
            deleted += await run(conn, deliveries_sql.PRUNE_DELIVERIES, params)
        return deleted, deleted > 0

    ledger_before = now - timedelta(days=settings.ledger_days)
    cursor: dict[str, object] = {"at": "-infinity", "id": 0}

    async def ledger_batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
        async with conn.transaction():
            await conn.execute(deliveries_sql.SET_LOCAL_STATEMENT_TIMEOUT, (timeout,))
            cur = await conn.execute(
                sync_sql.PRUNE_LEDGER,
                {"before": ledger_before, "after_at": cursor["at"], "after_id": cursor["id"], "limit": limit},
            )
            row = await cur.fetchone()
        deleted, scanned, last_at, last_id = row if row else (0, 0, None, None)
        if last_at is not None:
            cursor.update(at=last_at, id=last_id)
        return int(deleted), scanned >= limit

    audit_before = now - timedelta(days=settings.audit_days)
    sagas_before = now - timedelta(days=settings.sagas_days)
    writes_before = now - timedelta(hours=settings.write_records_hours)
    tables = [
        _Table(
            "webhook_deliveries",
            f"{settings.deliveries_days:g} days",
            lambda conn: _scalar(conn, deliveries_sql.COUNT_OLD_DELIVERIES, {"before": deliveries_before}),
            deliveries_batch,
        ),
        _Table(
            "sync_audit",
            f"{settings.audit_days:g} days",
            lambda conn: _scalar(conn, sync_sql.COUNT_OLD_AUDIT, {"before": audit_before}),
            by_age(sync_sql.PRUNE_AUDIT, {"before": audit_before}),
        ),
        _Table(
            "sync_sagas (finished)",
            f"{settings.sagas_days:g} days",
            lambda conn: _scalar(conn, sync_sql.COUNT_OLD_SAGAS, {"before": sagas_before}),
            by_age(sync_sql.PRUNE_SAGAS, {"before": sagas_before}),
        ),
        _Table(
            "sync_inventory_ledger",
            f"{settings.ledger_days:g} days",
            lambda conn: _scalar(conn, sync_sql.COUNT_OLD_LEDGER, {"before": ledger_before}),
            ledger_batch,
        ),
        _Table(
            "sync_write_records",
            f"{settings.write_records_hours:g} hours",
            lambda conn: _scalar(conn, sync_sql.COUNT_OLD_WRITES, {"before": writes_before}),
            by_age(sync_sql.PRUNE_WRITES, {"before": writes_before}),
        ),
    ]
    if include_jobs:
        ages = {"age": queue.retention_seconds, "dead_age": queue.dead_retention_seconds}

        async def count_jobs(conn: psycopg.AsyncConnection, which: int) -> int:
            cur = await conn.execute(queue_sql.COUNT_PRUNABLE_JOBS, ages)
            row = await cur.fetchone()
            return int(row[which]) if row else 0

        tables[1:1] = [
            _Table(
                "jobs (finished)",
                f"{queue.retention_seconds / 86400:g} days",
                lambda conn: count_jobs(conn, 0),
                by_age(queue_sql.PRUNE_FINISHED_JOBS, {"age": queue.retention_seconds}),
            ),
            _Table(
                "jobs (dead)",
                f"{queue.dead_retention_seconds / 86400:g} days",
                lambda conn: count_jobs(conn, 1),
                by_age(queue_sql.PRUNE_DEAD_JOBS, {"age": queue.dead_retention_seconds}),
            ),
        ]
    return tables


async def prune(
    conn: psycopg.AsyncConnection,
    *,
    settings: RetentionSettings | None = None,
    queue: QueueSettings | None = None,
    include_jobs: bool = True,
    dry_run: bool = False,
    on_counted: Callable[[list[TablePrune]], None] | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> list[TablePrune]:
    """Count each table's rows past its retention, then (unless `dry_run`) delete them batch by
    batch. `conn`: an autocommit connection (pooled path is fine: SET LOCAL only). Batches run
    until each table's comes back short; an error stops the prune (the next run continues)."""
    settings = settings or RetentionSettings.load()
    queue = queue or QueueSettings.load()
    tables = _tables(settings, queue, now or datetime.now(UTC), include_jobs)
    report = [TablePrune(t.name, t.kept_for, await t.count(conn)) for t in tables]
    if on_counted is not None:
        on_counted(report)
    if dry_run:
        return report
    for table, done in zip(tables, report, strict=True):
        if not done.old_rows:
            continue
        more = True
        while more:
            deleted, more = await table.batch(conn)
            done.deleted += deleted
            if progress is not None:
                progress(table.name, done.deleted)
            await asyncio.sleep(0)  # let the rest of the process (a worker's other jobs) run
    return report
