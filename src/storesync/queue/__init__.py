"""storesync's durable Postgres job queue: enqueue in the caller's transaction, fair batched
claims with FOR UPDATE SKIP LOCKED, leases, retries, dead letters, a standalone worker."""

from storesync.queue.enqueue import (
    Enqueued,
    InvalidJobError,
    JobSpec,
    Lane,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)
from storesync.queue.handlers import Deferred, HandlerRegistry, JobContext, PermanentError, RetryableError

__all__ = [
    "Deferred",
    "Enqueued",
    "HandlerRegistry",
    "InvalidJobError",
    "JobContext",
    "JobSpec",
    "Lane",
    "PermanentError",
    "RetryableError",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
]
