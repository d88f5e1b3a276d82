"""Group commit for webhook deliveries.

Each delivery must be committed before its 200, and a commit (with its WAL flush and its round
trips) costs far more than the rows. So deliveries arriving while earlier transactions are in
flight wait for the next one and share it: at low load a delivery gets a transaction of its own
at once; under load each transaction carries whatever arrived meanwhile (up to `max_batch`).
Every delivery's row and job are still committed together, and no answer is given before the
commit. A batch the database cannot take (down, slow, out of connections) fails each of its
deliveries (503; Shopify retries, the webhook id dedupes). A batch refused for what one delivery
holds (a value Postgres cannot store: `ingest.parse_body` keeps such bodies out of jobs, this is
the backstop) is recorded again one delivery per transaction, so the others go through, and the
refused delivery is kept as `unparseable` without a job: one bad delivery never fails its batch
mates, and is never lost. A request that stops waiting (its budget ran out) is skipped if its
batch had not started, else its batch simply completes without anyone listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import psycopg
from psycopg_pool import AsyncConnectionPool

from storesync.logs import get_logger
from storesync.web.ingest import Delivery, Recorded, record_deliveries

log = get_logger("storesync.web.batcher")

# Errors caused by what a delivery holds, not by the database's state: retrying the same rows
# fails the same way. (Connection, timeout and pool errors are not among them: those are 503.)
POISON = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.ProgrammingError,
    psycopg.errors.ProgramLimitExceeded,
    ValueError,
    TypeError,
    RecursionError,
)


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

    async def _record(self, deliveries: list[Delivery]) -> list[Recorded]:
        async with self.pool.connection() as conn:
            return await record_deliveries(conn, deliveries, statement_timeout_ms=self.statement_timeout_ms)

    async def _record_alone(self, delivery: Delivery) -> Recorded | BaseException:
        """One delivery in its own transaction; refused for its content, it is kept without a job."""
        try:
            return (await self._record([delivery]))[0]
        except POISON as err:
            log.error(
                "delivery_kept_unparseable",
                webhook_id=delivery.webhook_id,
                topic=delivery.topic,
                shop=delivery.shop,
                error=f"{type(err).__name__}: {err}"[:300],
            )
            try:
                return (await self._record([delivery.kept_unparseable()]))[0]
            except Exception as again:
                return again
        except Exception as err:
            return err

    async def _commit(self, batch: list[tuple[Delivery, asyncio.Future[Recorded]]]) -> None:
        try:
            try:
                results: list[Recorded | BaseException] = list(await self._record([d for d, _ in batch]))
            except POISON:
                results = [await self._record_alone(d) for d, _ in batch]
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
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
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
