"""Handlers every worker has by default: `queue.noop` (benchmarks, smoke tests, readiness)."""

from __future__ import annotations

from storesync.queue.handlers import HandlerRegistry, JobContext

registry = HandlerRegistry()


@registry.register("queue.noop")
async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the queue itself."""
