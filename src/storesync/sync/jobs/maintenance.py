"""Periodic jobs (the queue's scheduler, group `storesync`): reconcile every merchant, settle the
source changes whose work is done. (Retention's `sync.prune` is `storesync.retention`'s, added to
the worker's registry by `storesync worker`.)"""

from __future__ import annotations

from prometheus_client import Histogram

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.domain.payloads import NoPayload, ReconcileJob
from storesync.sync.domain.routing import reconcile_job
from storesync.sync.jobs.context import Job
from storesync.sync.services.propagation import settle_changes
from storesync.sync.services.reconcile import reconcile_merchant

log = get_logger("storesync.sync.jobs")

# In the worker's registry, published with its heartbeat (the ops listener serves it).
PROPAGATION_SECONDS = Histogram(
    "storesync_sync_propagation_seconds",
    "Seconds from a change in a source store (a webhook's X-Shopify-Triggered-At, else its "
    "receipt) to the last store written for it, observed once no work for it is left, by merchant.",
    ["merchant"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)


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
            result = await reconcile_merchant(rt, st, net, f"reconcile:job:{job.ctx.job_id}")
            for line in result.lines():
                log.info("reconcile", merchant=net.merchant_id, line=line)

        await job.guarded(st, [net.parent.shop], work)


async def settle(job: Job, p: NoPayload) -> None:
    """Settle the changes with no work left; observe how long each took to propagate."""
    async with job.storage() as st:
        settled = await settle_changes(st, quiet_s=job.settings.settle_quiet_s)
    for merchant, seconds in settled:
        if seconds is not None:
            PROPAGATION_SECONDS.labels(merchant).observe(max(0.0, seconds))
