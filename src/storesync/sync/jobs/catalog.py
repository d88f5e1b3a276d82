"""Catalog jobs: a parent product's copy, or a parent collection's counterpart, in one child."""

from __future__ import annotations

from storesync.queue.handlers import PermanentError
from storesync.sync.domain.catalog import CatalogBlocked
from storesync.sync.domain.payloads import CollectionJob, ProductJob
from storesync.sync.jobs.context import Job
from storesync.sync.services import catalog, collections


async def product_to_child(job: Job, p: ProductJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            try:
                await catalog.product_to_child(
                    rt,
                    st,
                    net,
                    p.child_shop,
                    p.parent_product_id,
                    cause,
                    only_if_linked=p.only_if_linked,
                    final_attempt=job.ctx.attempt >= job.ctx.max_attempts,
                )
            except CatalogBlocked as err:
                raise PermanentError(f"{p.child_shop}: {err}") from err

        await job.guarded(st, [net.parent.shop, p.child_shop], work)


async def collection_to_child(job: Job, p: CollectionJob) -> None:
    rt = await job.runtime()
    net, _ = rt.of_shop(p.child_shop)
    cause = job.cause(p.cause)
    async with job.storage() as st:

        async def work() -> None:
            await collections.collection_to_child(rt, st, net, p.child_shop, p.parent_collection_id, cause)

        await job.guarded(st, [net.parent.shop, p.child_shop], work)
