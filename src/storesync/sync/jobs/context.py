"""What a sync job handler is given besides its payload: the queue's context, the sync settings,
the process's runtime (built on first use) and its storage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from storesync.queue.handlers import JobContext
from storesync.sync.adapters.postgres import Storage, job_storage
from storesync.sync.domain.audit import job_cause
from storesync.sync.jobs.errors import guarded
from storesync.sync.services.context import Runtime
from storesync.sync.settings import SyncSettings

RuntimeFor = Callable[[JobContext], Awaitable[Runtime]]


@dataclass
class Job:
    ctx: JobContext
    settings: SyncSettings
    runtime_for: RuntimeFor

    async def runtime(self) -> Runtime:
        return await self.runtime_for(self.ctx)

    def storage(self) -> AbstractAsyncContextManager[Storage]:
        """Storage adapters on an autocommit connection of the pooled path."""
        return job_storage(self.ctx.pool)

    def cause(self, given: str | None = None) -> str:
        """What the job's writes are audited under: the cause it carries, else the job itself."""
        return given or job_cause(self.ctx.job_id)

    async def guarded(self, st: Storage, shops: Iterable[str], work: Callable[[], Awaitable[None]]) -> None:
        """`work`, parked instead when one of `shops` is paused (`errors.guarded`)."""
        await guarded(self.ctx, st, shops, work, pause_recheck_s=self.settings.pause_recheck_s)
