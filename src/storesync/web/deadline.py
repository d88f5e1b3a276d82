"""Answer on time even when the database does not answer at all."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def _discard_outcome(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the caller already answered for this abandoned attempt


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """Await for at most `seconds`, then raise TimeoutError at once.

    Unlike `asyncio.timeout`, the caller does not wait for the cancelled work to wind down:
    cancelling a query makes psycopg send a cancel request to the server, which itself hangs when
    the server is frozen or partitioned. That clean-up goes on in the background (the connection
    then returns to the pool, which discards it if broken)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_discard_outcome)
    raise TimeoutError
