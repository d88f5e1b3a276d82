"""What a job handler is, how it signals retry or failure, and the registry workers load.

A handler is `async def handle(ctx: JobContext) -> None`. Returning means success. Raising
`PermanentError` dead-letters the job now; `RetryableError` (or any other exception) retries it
with capped exponential backoff and full jitter until `max_attempts`, then dead-letters it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg_pool

from storesync.config import Settings
from storesync.queue.enqueue import Lane

_KIND_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


class RetryableError(Exception):
    """Retry the job with backoff, or after `retry_after` seconds when given (e.g. a 429's Retry-After)."""

    retry_after: float | None = None

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after}")
        self.retry_after = retry_after


class PermanentError(Exception):
    """Do not retry: the job goes to the dead letter now (bad payload, store gone, ...)."""


@dataclass
class JobContext:
    job_id: int
    kind: str
    payload: dict
    group: str
    lane: Lane
    attempt: int  # 1 on the first run
    lock_key: str | None
    pool: psycopg_pool.AsyncConnectionPool  # the pooled path (PgBouncer-safe statements only)
    settings: Settings


Handler = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class Schedule:
    """A periodic job: `kind` enqueued every `every_seconds` by the one active scheduler."""

    name: str
    kind: str
    every_seconds: float
    group: str
    payload: dict = field(default_factory=dict)
    lane: Lane = Lane.BACKFILL


class HandlerRegistry:
    """Job kind -> handler, plus the periodic schedules a worker's scheduler keeps."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._schedules: dict[str, Schedule] = {}

    def register(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("sync.product_to_child")`."""
        if not _KIND_RE.match(kind):
            raise ValueError(f"job kind {kind!r} must be dotted lowercase words like 'webhook.orders_create'")

        def decorate(handler: Handler) -> Handler:
            if kind in self._handlers and self._handlers[kind] is not handler:
                raise ValueError(f"job kind {kind!r} already has a handler")
            self._handlers[kind] = handler
            return handler

        return decorate

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def schedule(
        self,
        name: str,
        kind: str,
        *,
        every_seconds: float,
        group: str,
        payload: dict | None = None,
        lane: Lane = Lane.BACKFILL,
    ) -> Schedule:
        """Declare a periodic job; the scheduler enqueues it (at most one queued at a time)."""
        if every_seconds <= 0:
            raise ValueError(f"schedule {name!r}: every_seconds must be > 0")
        sched = Schedule(name, kind, float(every_seconds), group, dict(payload or {}), Lane(lane))
        self._schedules[name] = sched
        return sched

    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())

    def merged(self, other: HandlerRegistry) -> HandlerRegistry:
        """A registry with both sets of handlers (the other's win on clashes)."""
        out = HandlerRegistry()
        out._handlers = {**self._handlers, **other._handlers}
        out._schedules = {**self._schedules, **other._schedules}
        return out
