"""Inventory jobs: a sale applied to the parent, a parent level set in the children."""

from __future__ import annotations

from storesync.sync.domain.payloads import FanOutJob, PushJob, SaleJob
from storesync.sync.jobs.context import Job
from storesync.sync.services import pushes, sales


async def sale(job: Job, p: SaleJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            await sales.apply_sale(rt, st, net, p.child_shop, p.event, cause)

        await job.guarded(st, [net.parent.shop], work)


async def fan_out(job: Job, p: FanOutJob) -> None:
    rt = await job.runtime()
    net = rt.merchant(job.ctx.group)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            await sales.fan_out(rt, st, net, p.parent_item, p.parent_location, cause, p.only)

        await job.guarded(st, [net.parent.shop], work)


async def push_levels(job: Job, p: PushJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.shop)
    async with job.storage() as st:

        async def work() -> None:
            await pushes.flush(rt, st, net, p.shop)

        await job.guarded(st, [p.shop], work)
