"""Handlers for `storesync worker` in the queue benchmark."""

from __future__ import annotations

import time

from storesync.queue import HandlerRegistry, JobContext

registry = HandlerRegistry()


@registry.register("bench.noop")
async def noop(ctx: JobContext) -> None:
    return None


@registry.register("bench.stamp")
async def stamp(ctx: JobContext) -> None:
    print("STAMP", ctx.payload["n"], time.time(), flush=True)
