"""Periodic jobs (the queue's scheduler, group `storesync`): reconcile every merchant. (Retention's
`sync.prune` is `storesync.retention`'s, added to the worker's registry by `storesync worker`.)"""

from __future__ import annotations

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.domain.payloads import NoPayload, ReconcileJob
from storesync.sync.domain.routing import reconcile_job
from storesync.sync.jobs.context import Job
from storesync.sync.services.reconcile import reconcile_pass

log = get_logger("storesync.sync.jobs")


async def reconcile_all(job: Job, p: NoPayload) -> None:
    """One `sync.reconcile` per merchant."""
    rt = await job.runtime()
    async with job.storage() as st:
        for m in rt.network.merchants:
            await enqueue_jobs(st.conn, [reconcile_job(m.merchant_id)], m.merchant_id)


async def reconcile(job: Job, p: ReconcileJob) -> None:
    rt = await job.runtime()
    net = rt.merchant(p.merchant_id)
    async with job.storage() as st:

        async def work() -> None:
            result = await reconcile_pass(rt, st, net, f"reconcile:job:{job.ctx.job_id}")
            for line in result.lines():
                log.info("reconcile", merchant=net.merchant_id, line=line)

        await job.guarded(st, [net.parent.shop], work)
