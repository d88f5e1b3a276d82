"""Group commit for webhook deliveries.

Each delivery must be committed before its 200, and a commit (with its WAL flush and its round
trips) costs far more than the rows. So deliveries arriving while earlier transactions are in
flight wait for the next one and share it: at low load a delivery gets a transaction of its own
at once; under load each transaction carries whatever arrived meanwhile (up to `max_batch`).
Every delivery's row and job are still committed together, and no answer is given before the
commit. A failed batch fails each of its deliveries (503; Shopify retries, the webhook id
dedupes). A request that stops waiting (its budget ran out) is skipped if its batch had not
started, else its batch simply completes without anyone listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from psycopg_pool import AsyncConnectionPool

from storesync.web.ingest import Delivery, Recorded, record_deliveries


class DeliveryBatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        statement_timeout_ms: int,
        max_batch: int = 64,
        max_in_flight: int = 4,
    ) -> None:
        self.pool = pool
        self.statement_timeout_ms = statement_timeout_ms
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: deque[tuple[Delivery, asyncio.Future[Recorded]]] = deque()
        self._tasks: set[asyncio.Task] = set()

    async def record(self, delivery: Delivery) -> Recorded:
        """Recorded (and its job enqueued) once this returns; raises what the batch raised."""
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._waiting and len(self._tasks) < self.max_in_flight:
            batch: list[tuple[Delivery, asyncio.Future[Recorded]]] = []
            while self._waiting and len(batch) < self.max_batch:
                entry = self._waiting.popleft()
                if not entry[1].done():  # its request gave up already
                    batch.append(entry)
            if not batch:
                return
            task = asyncio.ensure_future(self._commit(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._start_batches()

    async def _commit(self, batch: list[tuple[Delivery, asyncio.Future[Recorded]]]) -> None:
        try:
            async with self.pool.connection() as conn:
                results = await record_deliveries(
                    conn, [d for d, _ in batch], statement_timeout_ms=self.statement_timeout_ms
                )
        except Exception as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self, timeout: float = 10.0) -> None:
        """Let batches in flight finish (bounded), then cancel what is left."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        while self._waiting:
            self._waiting.popleft()[1].cancel()
