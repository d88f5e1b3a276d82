"""What a job handler is, how it signals retry or failure, and the registry a worker is given.

A handler is `async def handle(ctx: JobContext) -> None`. Returning means success. Raising
`PermanentError` dead-letters the job now; `RetryableError` (or any other exception) retries it
with capped exponential backoff and full jitter until `max_attempts`, then dead-letters it;
`Deferred` puts it back in the queue, due after its delay, without counting the attempt.

A kind may be registered with its payload type: the worker then hands the handler an instance
(`ctx.payload`), decoded from the stored JSON when the job is claimed (`payloads.decode`); a
payload that does not fit dead-letters the job with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg_pool

from storesync.config import Settings
from storesync.queue.enqueue import JobSpec, Lane

_KIND_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


class RetryableError(Exception):
    """Retry the job with backoff, or after `retry_after` seconds when given (e.g. a 429's Retry-After)."""

    retry_after: float | None = None

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after}")
        self.retry_after = retry_after


class Deferred(Exception):
    """Not now, and not the job's fault (e.g. its store's rate-limit bucket is empty): the run
    goes back to the queue, due in `delay` seconds, its attempt not counted, so the worker's
    slot goes to jobs that can make progress. The handler must be safe to run again (every
    handler is: jobs are at-least-once)."""

    def __init__(self, message: str = "", *, delay: float) -> None:
        super().__init__(message)
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.delay = delay


class PermanentError(Exception):
    """Do not retry: the job goes to the dead letter now (bad payload, store gone, ...)."""


@dataclass
class JobContext:
    job_id: int
    kind: str
    payload: Any  # an instance of the kind's payload type, or the JSON object for untyped kinds
    group: str
    lane: Lane
    attempt: int  # 1 on the first run
    lock_key: str | None
    pool: psycopg_pool.AsyncConnectionPool  # the pooled path (PgBouncer-safe statements only)
    settings: Settings
    stored_payload: dict[str, Any] = field(default_factory=dict)  # the JSON stored, without the queue's keys
    max_attempts: int = 10
    parked_since: str | None = None  # when this job was first parked (ISO time), if it was

    def again(self) -> JobSpec:
        """This job as a new spec (same kind, payload, group, lane and lock key): to park it."""
        return JobSpec(
            self.kind,
            self.stored_payload,
            group=self.group,
            lane=self.lane,
            lock_key=self.lock_key,
            max_attempts=self.max_attempts,
        )


Handler = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class Schedule:
    """A periodic job: `kind` enqueued every `every_seconds` by the one active scheduler."""

    name: str
    kind: str
    every_seconds: float
    group: str
    payload: dict[str, Any] = field(default_factory=dict)
    lane: Lane = Lane.BACKFILL


def _check_kind(kind: str) -> None:
    if not _KIND_RE.match(kind):
        raise ValueError(f"job kind {kind!r} must be dotted lowercase words like 'webhook.orders_create'")


class HandlerRegistry:
    """Job kind -> handler, plus the periodic schedules a worker's scheduler keeps."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._payloads: dict[str, type | None] = {}
        self._schedules: dict[str, Schedule] = {}

    def register(self, kind: str, *, payload: type | None = None) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("sync.product_to_child", payload=ProductJob)`."""
        _check_kind(kind)

        def decorate(handler: Handler) -> Handler:
            self.add(kind, handler, payload=payload)
            return handler

        return decorate

    def add(self, kind: str, handler: Handler, *, payload: type | None = None) -> None:
        """Register `handler` for `kind`, its payloads decoded as `payload` (None: a dict)."""
        _check_kind(kind)
        if kind in self._handlers and self._handlers[kind] is not handler:
            raise ValueError(f"job kind {kind!r} already has a handler")
        self._handlers[kind] = handler
        self._payloads[kind] = payload

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def payload_type(self, kind: str) -> type | None:
        """The payload type `kind` was registered with (None: untyped, or unknown kind)."""
        return self._payloads.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def schedule(
        self,
        name: str,
        kind: str,
        *,
        every_seconds: float,
        group: str,
        payload: dict[str, Any] | None = None,
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
        out._payloads = {**self._payloads, **other._payloads}
        out._schedules = {**self._schedules, **other._schedules}
        return out
