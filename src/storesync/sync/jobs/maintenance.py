"""Periodic jobs (the queue's scheduler, group `storesync`): reconcile every merchant, settle the
source changes whose work is done. (Retention's `sync.prune` is `storesync.retention`'s, added to
the worker's registry by `storesync worker`.)

A merchant's reconciliation is two jobs: `sync.reconcile` compares its children's orders with
the ledger and enqueues the sale jobs for what the ledger lacks; `sync.reconcile_levels` waits
(re-enqueued a moment later while they run) and then compares catalog and levels.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Histogram

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.domain.payloads import NoPayload, ReconcileJob, ReconcileLevelsJob
from storesync.sync.domain.routing import reconcile_job, reconcile_levels_job
from storesync.sync.jobs.context import Job
from storesync.sync.services.propagation import settle_changes
from storesync.sync.services.reconcile import (
    SalesPass,
    finish_sales,
    reconcile_pass,
    reconcile_sales,
    sales_jobs_pending,
)

log = get_logger("storesync.sync.jobs")

# How long (checks 1 s apart) the second half waits for the first half's sale jobs.
MAX_WAITS = 600

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
    """The sales half: the sale jobs for what the ledger lacks, then the second half."""
    rt = await job.runtime()
    net = rt.merchant(p.merchant_id)
    async with job.storage() as st:

        async def work() -> None:
            sales = await reconcile_sales(rt, st, net, f"reconcile:job:{job.ctx.job_id}")
            for line in sales.unapplied:
                log.info("reconcile: orders the ledger lacked", merchant=net.merchant_id, line=line)
            # The second half moves each child's checkpoint once its sale jobs succeeded.
            follow = ReconcileLevelsJob(
                net.merchant_id,
                dict(sales.sale_jobs),
                {shop: at.isoformat() for shop, at in sales.checkpoints.items()},
            )
            delay = 0.5 if sales.job_ids else 0.0
            await enqueue_jobs(st.conn, [reconcile_levels_job(follow, delay_s=delay)], net.merchant_id)

        await job.guarded(st, [net.parent.shop], work)


async def reconcile_levels(job: Job, p: ReconcileLevelsJob) -> None:
    rt = await job.runtime()
    net = rt.merchant(p.merchant_id)
    async with job.storage() as st:
        sales = SalesPass(
            p.merchant_id,
            sale_jobs=dict(p.sale_jobs or {}),
            checkpoints={shop: datetime.fromisoformat(at) for shop, at in (p.checkpoints or {}).items()},
        )
        if await sales_jobs_pending(st, sales) and p.waited < MAX_WAITS:
            again = ReconcileLevelsJob(p.merchant_id, p.sale_jobs, p.checkpoints, p.waited + 1)
            await enqueue_jobs(st.conn, [reconcile_levels_job(again, delay_s=1.0)], net.merchant_id)
            return

        async def work() -> None:
            behind = await finish_sales(st, sales)
            for shop, why in behind.items():
                log.warning("reconcile: orders checkpoint kept", child=shop, why=why)
            result = await reconcile_pass(rt, st, net, f"reconcile:job:{job.ctx.job_id}", sales=sales)
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
