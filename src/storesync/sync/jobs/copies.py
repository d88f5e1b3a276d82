"""Copy jobs: a copy-product saga run (or resumed), and the linking of copies whose create
webhook never came."""

from __future__ import annotations

from datetime import datetime

from storesync.queue.handlers import PermanentError
from storesync.sync.domain.payloads import CopyJob, LinkPendingJob
from storesync.sync.domain.saga import SagaState, SagaStuck, handle_conflicted
from storesync.sync.jobs.context import Job
from storesync.sync.services.copies import link_overdue_copies, run_copy_saga


async def copy_product(job: Job, p: CopyJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    final = job.ctx.attempt >= p.max_attempts
    async with job.storage() as st:

        async def work() -> None:
            try:
                rec = await run_copy_saga(
                    rt,
                    st,
                    net,
                    p.saga_id,
                    p.parent_product_id,
                    p.child_shop,
                    job.cause(p.cause),
                    final_attempt=final,
                )
            except SagaStuck as err:
                raise PermanentError(f"saga {p.saga_id} is stuck: {err}") from err
            if rec.state is SagaState.COMPENSATED and not handle_conflicted(rec):
                raise PermanentError(f"saga {p.saga_id} failed and was compensated: {rec.error}")

        await job.guarded(st, [net.parent.shop, p.child_shop], work)


async def link_pending_copies(job: Job, p: LinkPendingJob) -> None:
    """The copies of one child whose variants are still not linked a while after the copy (their
    products/create webhook was lost): read them and link them, fanning out the parent levels
    that moved since (`storesync backfill` enqueues it at its end)."""
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    async with job.storage() as st:

        async def work() -> None:
            await link_overdue_copies(
                rt,
                st,
                net,
                p.child_shop,
                job.cause(p.cause),
                written_before=datetime.fromisoformat(p.written_before),
            )

        await job.guarded(st, [p.child_shop], work)
