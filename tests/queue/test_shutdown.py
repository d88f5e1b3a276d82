"""The worker's shutdown waits for its background loops even when one loses its cancellation
(Python 3.11's asyncio.wait_for can swallow one, bpo-42130: seen as a worker that never exited
on SIGTERM after being stopped and continued; tests/queue/test_worker.py runs that case)."""

from __future__ import annotations

import asyncio

from storesync.queue.worker import cancel_until_done


async def test_a_loop_that_swallows_its_first_cancellation_is_cancelled_again():
    swallowed = 0

    async def stubborn_loop():
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what a lost cancellation looks like from outside: the loop goes on

    async def failing_loop():
        raise RuntimeError("boom")

    tasks = [asyncio.create_task(stubborn_loop()), asyncio.create_task(failing_loop())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done(tasks), timeout=10)
    assert swallowed == 1 and tasks[0].cancelled() and tasks[1].done()
