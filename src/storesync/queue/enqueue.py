"""Enqueue jobs on a connection the caller passes, inside the caller's transaction.

A job exists only if the caller's transaction commits: the webhook that records a delivery and
enqueues its job does both or neither. Listening workers are woken by a NOTIFY that Postgres
delivers at commit (trigger `jobs_notify_inserted`), so this works on the pooled path too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storesync.queue import queries as q
from storesync.queue.payloads import InvalidPayloadError, encode


class Lane(enum.IntEnum):
    """Priority lanes: lower runs first."""

    INVENTORY = 0
    CATALOG = 1
    BACKFILL = 2


class InvalidJobError(ValueError):
    """A JobSpec that cannot be enqueued; the message says which field and why."""


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue. `payload`: a typed payload (a dataclass or pydantic model instance,
    checked against its type and stored as JSON, see `payloads.encode`) or a JSON object."""

    kind: str  # e.g. "webhook.products_update", "sync.product_to_child"
    payload: Any  # after construction: the JSON object stored
    group: str  # fairness group = merchant id
    lane: Lane = Lane.CATALOG
    singleton_key: str | None = None  # at most one QUEUED job per key; later enqueues collapse into it
    lock_key: str | None = None  # jobs with the same lock key never run at the same time
    run_at: datetime | None = None
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidJobError(f"kind must be a non-empty string, got {self.kind!r}")
        if not isinstance(self.group, str) or not self.group:
            raise InvalidJobError(f"group must be a non-empty string (the merchant id), got {self.group!r}")
        if isinstance(self.payload, (list, tuple, str, bytes, int, float, bool)) or self.payload is None:
            raise InvalidJobError(f"payload must be an object, got {type(self.payload).__name__}")
        try:
            object.__setattr__(self, "payload", encode(self.payload))
        except InvalidPayloadError as err:
            raise InvalidJobError(f"payload: {err}") from None
        try:
            object.__setattr__(self, "lane", Lane(self.lane))
        except ValueError:
            raise InvalidJobError(
                f"lane must be one of {[lane.value for lane in Lane]}, got {self.lane!r}"
            ) from None
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidJobError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise InvalidJobError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
        for name in ("singleton_key", "lock_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidJobError(f"{name} must be None or a non-empty string, got {value!r}")


@dataclass(frozen=True)
class Enqueued:
    job_id: int
    collapsed: bool  # True: merged into the job already waiting with the same singleton key


def _params(spec: JobSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "payload": Jsonb(spec.payload),
        "group": spec.group,
        "lane": int(spec.lane),
        "singleton_key": spec.singleton_key,
        "lock_key": spec.lock_key,
        "run_at": spec.run_at,
        "max_attempts": spec.max_attempts,
    }


@dataclass
class _Batch:
    """Specs prepared for ENQUEUE_BATCH: singleton duplicates within the batch merged first."""

    unique: list[JobSpec] = field(default_factory=list)
    # For each input spec: index into `unique`, and whether it merged into an earlier one.
    slots: list[tuple[int, bool]] = field(default_factory=list)

    @classmethod
    def of(cls, specs: Sequence[JobSpec]) -> _Batch:
        batch = cls()
        by_key: dict[str, int] = {}
        for spec in specs:
            if not isinstance(spec, JobSpec):
                raise InvalidJobError(f"expected JobSpec, got {type(spec).__name__}")
            key = spec.singleton_key
            if key is not None and key in by_key:
                i = by_key[key]
                first = batch.unique[i]
                # The earliest due time wins, as in the database's collapse; None is "now".
                run_at = (
                    None if first.run_at is None or spec.run_at is None else min(first.run_at, spec.run_at)
                )
                batch.unique[i] = replace(
                    first, payload=spec.payload, lane=min(first.lane, spec.lane), run_at=run_at
                )
                batch.slots.append((i, True))
                continue
            if key is not None:
                by_key[key] = len(batch.unique)
            batch.slots.append((len(batch.unique), False))
            batch.unique.append(spec)
        return batch

    def params(self) -> dict[str, Any]:
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "kind",
                "payload",
                "group",
                "lane",
                "singleton_key",
                "lock_key",
                "run_at",
                "max_attempts",
            )
        }
        for spec in self.unique:
            for k, v in _params(spec).items():
                cols[k].append(v)
        return cols

    def results(self, rows: list[tuple[int, str | None, bool]]) -> list[Enqueued]:
        if len(rows) != len(self.unique):
            raise RuntimeError(f"enqueue returned {len(rows)} rows for {len(self.unique)} jobs")
        by_key = {key: (job_id, collapsed) for job_id, key, collapsed in rows if key is not None}
        # Identity values are drawn in insertion order, which is input order for keyless jobs.
        plain_ids = iter(sorted(job_id for job_id, key, _ in rows if key is None))
        unique_results: list[Enqueued] = []
        for spec in self.unique:
            if spec.singleton_key is None:
                unique_results.append(Enqueued(next(plain_ids), False))
            else:
                job_id, collapsed = by_key[spec.singleton_key]
                unique_results.append(Enqueued(job_id, collapsed))
        return [
            Enqueued(unique_results[i].job_id, True) if merged else unique_results[i]
            for i, merged in self.slots
        ]


def enqueue(conn: psycopg.Connection, spec: JobSpec) -> Enqueued:
    """Enqueue one job in the caller's transaction (nothing is committed here)."""
    if not isinstance(spec, JobSpec):
        raise InvalidJobError(f"expected JobSpec, got {type(spec).__name__}")
    row = conn.execute(q.ENQUEUE_ONE, _params(spec)).fetchone()
    assert row is not None
    return Enqueued(row[0], row[1])


def enqueue_many(conn: psycopg.Connection, specs: Sequence[JobSpec]) -> list[Enqueued]:
    """Enqueue a batch in one statement, in the caller's transaction; results in input order."""
    batch = _Batch.of(specs)
    if not batch.unique:
        return []
    rows = conn.execute(q.ENQUEUE_BATCH, batch.params()).fetchall()
    return batch.results(rows)


async def enqueue_async(conn: psycopg.AsyncConnection, spec: JobSpec) -> Enqueued:
    """`enqueue` for asyncio connections."""
    if not isinstance(spec, JobSpec):
        raise InvalidJobError(f"expected JobSpec, got {type(spec).__name__}")
    cur = await conn.execute(q.ENQUEUE_ONE, _params(spec))
    row = await cur.fetchone()
    assert row is not None
    return Enqueued(row[0], row[1])


async def enqueue_many_async(conn: psycopg.AsyncConnection, specs: Sequence[JobSpec]) -> list[Enqueued]:
    """`enqueue_many` for asyncio connections."""
    batch = _Batch.of(specs)
    if not batch.unique:
        return []
    cur = await conn.execute(q.ENQUEUE_BATCH, batch.params())
    return batch.results(await cur.fetchall())
