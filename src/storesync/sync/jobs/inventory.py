"""Inventory jobs: a sale applied to the parent, a parent level set in the children, a child's
own stock move handled by its policy."""

from __future__ import annotations

from storesync.queue.handlers import PermanentError
from storesync.sync.adapters.jobqueue import park
from storesync.sync.domain.locations import location_park_key
from storesync.sync.domain.payloads import AdjustJob, ChildStockJob, FanOutJob, PushJob, SaleJob
from storesync.sync.domain.saga import SagaStuck
from storesync.sync.jobs.context import Job
from storesync.sync.services import adjusts, pushes, sales, stock


async def sale(job: Job, p: SaleJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            waiting = await sales.apply_sale(rt, st, net, p.child_shop, p.event, cause)
            if waiting:
                # A parent location deactivated (or no longer stocking the item): the movements
                # drawn from it wait, parked for it, and run again when it is back.
                await park(
                    st.conn,
                    job.ctx.again(),
                    shop=location_park_key(net.parent.shop, waiting[0]),
                    delay_s=job.settings.pause_recheck_s,
                )

        await job.guarded(st, [net.parent.shop], work)


async def fan_out(job: Job, p: FanOutJob) -> None:
    rt = await job.runtime()
    net = rt.merchant(job.ctx.group)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            await sales.fan_out(
                rt,
                st,
                net,
                p.parent_item,
                p.parent_location,
                cause,
                p.only,
                parent_unchanged=p.parent_unchanged,
            )

        await job.guarded(st, [net.parent.shop], work)


async def push_levels(job: Job, p: PushJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.shop)
    async with job.storage() as st:

        async def work() -> None:
            await pushes.flush(rt, st, net, p.shop)

        await job.guarded(st, [p.shop], work)


async def adjust_parent(job: Job, p: AdjustJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.parent_shop)
    async with job.storage() as st:

        async def work() -> None:
            await adjusts.flush(rt, st, net)

        await job.guarded(st, [p.parent_shop], work)


async def child_stock(job: Job, p: ChildStockJob) -> None:
    """A child level moved and no write of ours explains it (`services/stock.py`)."""
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    cause = job.cause(p.cause)
    final = job.ctx.attempt >= job.ctx.max_attempts
    async with job.storage() as st:

        async def work() -> None:
            try:
                if p.saga_id:
                    await stock.resume_report(rt, st, net, p.saga_id, cause, final_attempt=final)
                else:
                    await stock.check_child_level(
                        rt, st, net, p.child_shop, p.child_item, p.child_location, cause, final_attempt=final
                    )
            except SagaStuck as err:
                raise PermanentError(f"stock report of {p.child_shop} is stuck: {err}") from err

        await job.guarded(st, [net.parent.shop, p.child_shop], work)
