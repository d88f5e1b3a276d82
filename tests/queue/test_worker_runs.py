"""The worker's bookkeeping of runs inside one process (no database needed for this part)."""

from __future__ import annotations

import asyncio

from storesync.config import Settings
from storesync.queue.config import QueueSettings
from storesync.queue.handlers import HandlerRegistry
from storesync.queue.worker import Worker


async def test_runs_abandoned_before_they_ever_ran_give_their_slots_back():
    """A claim whose commit fails cancels the runs it just started; tasks cancelled before their
    first step never enter their body, so their slots must be given back all the same (else the
    worker believes its slots busy and stops claiming)."""
    worker = Worker(Settings.load(), HandlerRegistry(), QueueSettings.load(concurrency=4))
    claimed = asyncio.get_running_loop().create_future()
    runs = [worker._start((i, "k.a", {}, "g", 1, 1, 3, None), claimed) for i in range(3)]
    assert worker._executing == 3
    claimed.set_result(False)
    worker._abandon(runs, "claim not committed")
    await asyncio.gather(*(r.task for r in runs), return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks
    assert worker._executing == 0
    assert worker._runs == {}
    assert all(r.task.cancelled() for r in runs)
