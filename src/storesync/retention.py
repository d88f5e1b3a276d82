"""Retention: how long each table keeps its rows, and the prune that enforces it.

One use case for `storesync prune [--dry-run]` and the periodic `sync.prune` job (its handler and
schedule: `job_registry`, which `storesync worker` adds to the sync engine's registry; the job
keeps the name it had when it lived in sync). Every table is pruned by batched DELETE of its
oldest rows past a cutoff, by index, each batch one short statement (no long locks, ingestion and
claims go on meanwhile): docs/decisions/0011-retention-by-batched-delete.md. Each table is pruned
through its own part's API: deliveries `web/ingest.py`, jobs `queue/ops.py`, the sync tables
`sync/adapters/postgres.PgRetention`. It sits above the parts it prunes (import contracts:
pyproject.toml). What is kept and why: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated

import psycopg
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings
from storesync.db import series
from storesync.db.pools import SET_LOCAL_STATEMENT_TIMEOUT
from storesync.logs import get_logger
from storesync.queue import ops as queue_ops
from storesync.queue.config import QueueSettings
from storesync.queue.handlers import HandlerRegistry, JobContext
from storesync.sync.adapters.postgres import PgRetention
from storesync.sync.settings import SyncSettings
from storesync.web import ingest as deliveries

log = get_logger("storesync.retention")

JOB_PRUNE = "sync.prune"
JOB_PRUNE_WRITES = "sync.prune_write_records"  # its name before: queued ones still run
SYSTEM_GROUP = "storesync"  # fairness group of network-wide periodic jobs


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
    # Source changes and how long each took to reach its last store (the dashboard's latency
    # chart shows a day).
    changes_days: Annotated[float, Field(ge=1)] = 7.0
    # Reconcile runs (what each found and repaired, per store).
    reconcile_runs_days: Annotated[float, Field(ge=1)] = 30.0
    # The charts' per-minute counts (they show a day at most).
    minute_counts_hours: Annotated[float, Field(ge=25)] = 48.0
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


def _tables(
    settings: RetentionSettings, queue: QueueSettings, now: datetime, include_jobs: bool
) -> list[_Table]:
    limit = settings.batch
    timeout = str(settings.statement_timeout_ms)

    async def bounded(conn: psycopg.AsyncConnection, work: Callable[[], Awaitable[int]]) -> int:
        """`work` in a transaction of its own whose statements are bounded by the timeout."""
        async with conn.transaction():
            await conn.execute(SET_LOCAL_STATEMENT_TIMEOUT, (timeout,))
            return await work()

    def by_age(
        prune_one: Callable[[psycopg.AsyncConnection], Awaitable[int]],
    ) -> Callable[[psycopg.AsyncConnection], Awaitable[tuple[int, bool]]]:
        async def batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
            n = await bounded(conn, lambda: prune_one(conn))
            return n, n >= limit

        return batch

    deliveries_before = now - timedelta(days=settings.deliveries_days)

    async def deliveries_batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
        # A batch of each status (the (status, received_at) index serves one status at a time).
        deleted = 0
        for status in deliveries.DELIVERY_STATUSES:
            deleted += await bounded(
                conn, partial(deliveries.prune_deliveries, conn, status, deliveries_before, limit)
            )
        return deleted, deleted > 0

    ledger_before = now - timedelta(days=settings.ledger_days)
    cursor: list[tuple[object, int]] = [("-infinity", 0)]

    async def ledger_batch(conn: psycopg.AsyncConnection) -> tuple[int, bool]:
        result: list[tuple[int, int, tuple[object, int] | None]] = []

        async def one() -> int:
            result.append(await PgRetention(conn).prune_ledger(ledger_before, cursor[0], limit))
            return result[0][0]

        deleted = await bounded(conn, one)
        _deleted, scanned, last = result[0]
        if last is not None:
            cursor[0] = last
        return deleted, scanned >= limit

    audit_before = now - timedelta(days=settings.audit_days)
    sagas_before = now - timedelta(days=settings.sagas_days)
    writes_before = now - timedelta(hours=settings.write_records_hours)
    changes_before = now - timedelta(days=settings.changes_days)
    runs_before = now - timedelta(days=settings.reconcile_runs_days)
    counts_before = now - timedelta(hours=settings.minute_counts_hours)
    tables = [
        _Table(
            "webhook_deliveries",
            f"{settings.deliveries_days:g} days",
            lambda conn: deliveries.count_old_deliveries(conn, deliveries_before),
            deliveries_batch,
        ),
        _Table(
            "sync_audit",
            f"{settings.audit_days:g} days",
            lambda conn: PgRetention(conn).count_old_audit(audit_before),
            by_age(lambda conn: PgRetention(conn).prune_audit(audit_before, limit)),
        ),
        _Table(
            "sync_sagas (finished)",
            f"{settings.sagas_days:g} days",
            lambda conn: PgRetention(conn).count_old_sagas(sagas_before),
            by_age(lambda conn: PgRetention(conn).prune_sagas(sagas_before, limit)),
        ),
        _Table(
            "sync_inventory_ledger",
            f"{settings.ledger_days:g} days",
            lambda conn: PgRetention(conn).count_old_ledger(ledger_before),
            ledger_batch,
        ),
        _Table(
            "sync_write_records",
            f"{settings.write_records_hours:g} hours",
            lambda conn: PgRetention(conn).count_old_writes(writes_before),
            by_age(lambda conn: PgRetention(conn).prune_writes(writes_before, limit)),
        ),
        _Table(
            "sync_changes",
            f"{settings.changes_days:g} days",
            lambda conn: PgRetention(conn).count_old_changes(changes_before),
            by_age(lambda conn: PgRetention(conn).prune_changes(changes_before, limit)),
        ),
        _Table(
            "sync_reconcile_runs",
            f"{settings.reconcile_runs_days:g} days",
            lambda conn: PgRetention(conn).count_old_reconcile_runs(runs_before),
            by_age(lambda conn: PgRetention(conn).prune_reconcile_runs(runs_before, limit)),
        ),
        _Table(
            "ops_minute_counts",
            f"{settings.minute_counts_hours:g} hours",
            lambda conn: series.count_old_counts(conn, counts_before),
            by_age(lambda conn: series.prune_counts(conn, counts_before, limit)),
        ),
    ]
    if include_jobs:
        ages = {"age": queue.retention_seconds, "dead_age": queue.dead_retention_seconds}

        async def count_jobs(conn: psycopg.AsyncConnection, which: int) -> int:
            return (await queue_ops.count_prunable_jobs(conn, **ages))[which]

        tables[1:1] = [
            _Table(
                "jobs (finished)",
                f"{queue.retention_seconds / 86400:g} days",
                lambda conn: count_jobs(conn, 0),
                by_age(
                    lambda conn: queue_ops.prune_jobs(
                        conn, dead=False, age=queue.retention_seconds, limit=limit
                    )
                ),
            ),
            _Table(
                "jobs (dead)",
                f"{queue.dead_retention_seconds / 86400:g} days",
                lambda conn: count_jobs(conn, 1),
                by_age(
                    lambda conn: queue_ops.prune_jobs(
                        conn, dead=True, age=queue.dead_retention_seconds, limit=limit
                    )
                ),
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


# --------------------------------------------------------------------------- the periodic job


async def prune_job(ctx: JobContext) -> None:
    """Everything past its retention, in short batches (jobs: the queue's scheduler prunes them)."""
    async with ctx.pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            report = await prune(conn, include_jobs=False)
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)
    for table in report:
        if table.deleted:
            log.info("pruned", table=table.table, rows=table.deleted, kept_for=table.kept_for)


def job_registry(settings: SyncSettings | None = None) -> HandlerRegistry:
    """The periodic prune, every `STORESYNC_SYNC_PRUNE_EVERY_S` (group `storesync`)."""
    settings = settings or SyncSettings.load()
    registry = HandlerRegistry()
    registry.add(JOB_PRUNE, prune_job)
    registry.add(JOB_PRUNE_WRITES, prune_job)
    registry.schedule(JOB_PRUNE, JOB_PRUNE, every_seconds=settings.prune_every_s, group=SYSTEM_GROUP)
    return registry
