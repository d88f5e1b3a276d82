"""The standalone worker: `storesync worker --concurrency N`. It runs the handlers of the registry
it is given (the CLI composes the sync engine's, `storesync.sync.jobs.registry`; `--handlers
module:attr` names another, for tests and benchmarks).

One asyncio process runs these tasks:

- claimer: batched fair claims (see `storesync.queue.claim`) whenever slots are free; when a
  claim finds nothing it waits for a NOTIFY or the poll interval, whichever comes first.
- listener: LISTEN on the direct path (LISTEN cannot go through PgBouncer in transaction mode).
  If it fails or the connection drops, polling keeps delivering and the listener reconnects.
- acker: completions are flushed in batches (one UPDATE for all runs finished since the last one).
- heartbeat: renews the leases of this worker's runs every lease/3, abandons runs whose lease was
  lost (so a job never runs twice at once), self-fences if it cannot renew in time, writes the
  worker's heartbeat row (and `--health-file`, for health checks) and reaps expired leases of
  dead workers.
- scheduler: the worker that holds the scheduler's session advisory lock (direct path) enqueues
  due periodic jobs and prunes old jobs; every other worker retries the lock now and then.

SIGTERM/SIGINT: stop claiming, let in-flight jobs finish up to `drain_timeout`, release the rest
back to the queue (their attempt is not counted), flush, mark the worker stopped, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from storesync.config import Settings
from storesync.db.pools import async_connect_direct, async_pooled_pool
from storesync.db.series import CounterDeltas, MinuteCounts, flush_counts
from storesync.healthcheck import remove_heartbeat_file, write_heartbeat_file
from storesync.logs import get_logger
from storesync.queue import metrics as m
from storesync.queue import queries as q
from storesync.queue.claim import claim_batch
from storesync.queue.config import QueueSettings, backoff_delay
from storesync.queue.enqueue import JobSpec, Lane, enqueue_many_async
from storesync.queue.handlers import Deferred, HandlerRegistry, JobContext, PermanentError, RetryableError
from storesync.queue.payloads import PARKED_SINCE, QUEUE_KEYS, InvalidPayloadError, decode

log = get_logger("storesync.queue.worker")

# How long the acker waits for more runs to finish before recording completions (one UPDATE).
ACK_GATHER_SECONDS = 0.002
# The longest a deferred run is put off (a store's bucket refills within seconds).
MAX_DEFER_S = 600.0
# Session advisory lock whose holder is the one active scheduler (direct path).
SCHEDULER_LOCK_KEY = 0x5707E5_0002


class HandlersLoadError(Exception):
    pass


def load_registry(spec: str) -> HandlerRegistry:
    """`module:attr` -> the HandlerRegistry it names, with a clear error otherwise."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise HandlersLoadError(f"--handlers must look like 'package.module:registry', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise HandlersLoadError(f"cannot import handlers module {module_name!r}: {err}") from None
    registry = getattr(module, attr, None)
    if not isinstance(registry, HandlerRegistry):
        raise HandlersLoadError(f"{spec} is {type(registry).__name__}, not a HandlerRegistry")
    return registry


def database_went_away(err: BaseException) -> bool:
    """Whether a run failed because its database connection broke (a restart, a failover, the
    pooler dropping it): not the job's fault, so its attempt is given back
    (`queries.RETRY_AFTER_OUTAGE`). A query cancelled by a statement timeout is the job's own."""
    if isinstance(err, psycopg.errors.QueryCanceled):
        return False
    return (
        isinstance(
            err,
            (
                psycopg.InterfaceError,
                psycopg.errors.AdminShutdown,
                psycopg.errors.CannotConnectNow,
                psycopg.errors.ProtocolViolation,  # PgBouncer: "server login has been failing"
            ),
        )
        or type(err) is psycopg.OperationalError
    )


@dataclass(eq=False)
class Run:
    """One claimed run of a job in this process."""

    id: int
    attempt: int
    max_attempts: int
    kind: str
    lane: int
    group: str
    lock_key: str | None
    payload: dict[str, Any]
    task: asyncio.Task[None] | None = None
    # Why the task was cancelled by us: "lost" (lease gone) or "released" (shutdown).
    abandoned: str | None = None
    # Resolves True once the claim that started this run is committed (False: it was not). The
    # run starts before that; its outcome and lease renewals wait for it, since other sessions
    # still see the job as queued until then.
    claimed: asyncio.Future[bool] | None = None
    ended: bool = False  # its slot was given back (once, whether or not the task ever ran)

    @property
    def claim_committed(self) -> bool:
        return self.claimed is None or (
            self.claimed.done() and not self.claimed.cancelled() and self.claimed.result() is True
        )


class Worker:
    def __init__(
        self,
        settings: Settings,
        registry: HandlerRegistry,
        qs: QueueSettings,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.qs = qs
        self.hostname = socket.gethostname()
        self.worker_id = worker_id or f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._runs: dict[tuple[int, int], Run] = {}  # (id, attempt) -> run, until acked/failed
        self._acks: list[Run] = []
        self._executing = 0
        self._reserved = 0  # slots a claim in flight may fill
        self._jobs_done = 0
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._ack_wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._drain_now = asyncio.Event()
        self._backlog = asyncio.Event()  # the last claim found a backlog: the helper loops claim too
        self._rng = random.Random()
        self.listening = False
        self.is_scheduler = False
        self._last_renewal = time.monotonic()
        self._counters: dict[tuple[Any, ...], Any] = {}
        self._timers: dict[tuple[Any, ...], Any] = {}
        # The increments of `m.MINUTE_SERIES` waiting to be added to the charts' series.
        self._minute_counts = MinuteCounts()
        self._counter_deltas = CounterDeltas(REGISTRY, m.MINUTE_SERIES)
        self.pool: AsyncConnectionPool | None = None  # handlers' pooled path
        self.qpool: AsyncConnectionPool | None = None  # the queue's own statements

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """First call: drain. Second call: stop waiting for in-flight jobs."""
        if self._stop.is_set():
            self._drain_now.set()
        self._stop.set()
        self._wake.set()
        self._backlog.set()
        self._slot_freed.set()

    async def run(self) -> int:
        self.pool = async_pooled_pool(self.settings, name="storesync-jobs")
        self.qpool = async_pooled_pool(
            self.settings, name="storesync-queue", min_size=1, max_size=self.qs.claimers + 4
        )
        await self.pool.open(wait=False)
        await self.qpool.open(wait=True, timeout=self.settings.connect_timeout * 2)
        if self.qs.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.qs.metrics_port, addr="127.0.0.1")
        await self._write_heartbeat("running")
        log.info(
            "worker started",
            worker_id=self.worker_id,
            concurrency=self.qs.concurrency,
            kinds=self.registry.kinds(),
        )
        background = [
            asyncio.create_task(self._listen_loop(), name="listener"),
            asyncio.create_task(self._ack_loop(), name="acker"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._scheduler_loop(), name="scheduler"),
        ]
        try:
            # Several claim loops keep claims in flight while one waits for its commit.
            await asyncio.gather(*(self._claim_loop(primary=i == 0) for i in range(self.qs.claimers)))
            await self._drain()
        finally:
            await cancel_until_done(background)
            with contextlib.suppress(Exception):
                await self._write_heartbeat("stopped")
            with contextlib.suppress(Exception):
                await self._flush_series()
            if self.qs.health_file:
                remove_heartbeat_file(self.qs.health_file)
            await self.qpool.close()
            await self.pool.close()
        log.info("worker stopped", worker_id=self.worker_id, jobs_done=self._jobs_done)
        return 0

    async def _drain(self) -> None:
        """Let in-flight runs finish up to the deadline; release the rest; flush completions."""
        with contextlib.suppress(Exception):
            await self._write_heartbeat("draining")
        tasks = [r.task for r in self._runs.values() if r.task and not r.task.done()]
        log.info("draining", in_flight=len(tasks), deadline_s=self.qs.drain_timeout)
        if tasks:
            drain_now = asyncio.create_task(self._drain_now.wait())
            await self._wait_tasks(tasks, drain_now)
            drain_now.cancel()
        leftover = [r for r in self._runs.values() if r.task and not r.task.done()]
        leftover_tasks = [r.task for r in leftover if r.task is not None]
        for run in leftover:
            run.abandoned = "released"
        for task in leftover_tasks:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover_tasks, return_exceptions=True)
            await self._release(leftover)
        await self._flush_acks(final=True)

    async def _wait_tasks(self, tasks: list[asyncio.Task[None]], drain_now: asyncio.Task[Any]) -> None:
        deadline = time.monotonic() + self.qs.drain_timeout
        pending: set[asyncio.Task[Any]] = set(tasks)
        while pending and not drain_now.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            _done, pending = await asyncio.wait(
                pending | {drain_now}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(drain_now)

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self, primary: bool = True) -> None:
        """Claim whenever slots are free. The primary loop also answers wake-ups and polls; the
        others only help while claims keep finding a backlog, so a trickle of jobs costs one
        claim per wake-up, not one per loop."""
        assert self.qpool is not None
        idle_wait = 0.002
        while not self._stop.is_set():
            if not primary and not self._backlog.is_set():
                await self._backlog.wait()
                continue
            free = self.qs.concurrency - self._executing - self._reserved
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            want = min(free, self.qs.batch_size)
            self._reserved += want  # another claim loop must not claim the same slots
            self._wake.clear()
            t0 = time.perf_counter()
            started: list[Run] = []
            claimed = asyncio.get_running_loop().create_future()
            try:
                async with self.qpool.connection() as conn:
                    rows = await claim_batch(conn, self.qs, self.worker_id, want)
                    # The runs start before the claim's commit returns (see claim_batch): they
                    # need not wait for its WAL flush; a failed commit cancels them at once.
                    started = [self._start(row, claimed) for row in rows or ()]
                    if rows is not None:
                        await conn.commit()
                claimed.set_result(True)
            except (psycopg.Error, psycopg_pool_errors()) as err:
                if not claimed.done():
                    claimed.set_result(False)
                if started:
                    self._abandon(started, "claim not committed")
                log.warning("claim failed; retrying", error=str(err), error_type=type(err).__name__)
                await self._sleep_or_stop(min(self.qs.poll_interval, 1.0))
                continue
            finally:
                self._reserved -= want
                self._slot_freed.set()  # a loop waiting for slots re-counts (this claim may have found nothing)
            m.WORKER_CLAIM_SECONDS.observe(time.perf_counter() - t0)
            m.WORKER_IN_FLIGHT.set(self._executing)
            if rows is None:  # lost a lock-key race with another worker: try again at once
                continue
            if len(rows) >= max(2, want // 4):  # a backlog, not a trickle: helper loops claim too
                self._backlog.set()
            else:
                self._backlog.clear()
            if rows:
                idle_wait = 0.002
                await asyncio.sleep(0)  # let finished no-op runs free their slots first
                continue
            # Nothing claimable: a NOTIFY, the poll interval, or a short backoff while other
            # workers hold the groups with work (their claims take a millisecond or two).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(idle_wait, self.qs.poll_interval))
            idle_wait = min(idle_wait * 2, self.qs.poll_interval)

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def _start(self, row: tuple[Any, ...], claimed: asyncio.Future[bool] | None = None) -> Run:
        job_id, kind, payload, group, lane, attempt, max_attempts, lock_key = row
        run = Run(job_id, attempt, max_attempts, kind, lane, group, lock_key, payload, claimed=claimed)
        self._runs[(job_id, attempt)] = run
        self._executing += 1
        run.task = asyncio.create_task(self._execute(run), name=f"job-{job_id}")
        run.task.add_done_callback(lambda _task: self._never_ran(run))
        return run

    def _end(self, run: Run) -> None:
        """Give the run's slot back, once."""
        if not run.ended:
            run.ended = True
            self._executing -= 1
            self._slot_freed.set()

    def _never_ran(self, run: Run) -> None:
        """A task cancelled before its first step (abandoned right after the claim) never enters
        `_execute`: its slot and outcome are settled here instead."""
        if run.ended:
            return
        self._end(run)
        self._outcome(run, run.abandoned or "lost")
        if run.abandoned != "released":
            self._runs.pop((run.id, run.attempt), None)

    def _outcome(self, run: Run, outcome: str) -> None:
        key = (run.kind, run.lane, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = m.WORKER_JOBS.labels(
                run.kind, m.LANE_NAMES.get(run.lane, str(run.lane)), outcome
            )
        counter.inc()

    def _timer(self, run: Run) -> Any:
        key = (run.kind, run.lane)
        hist = self._timers.get(key)
        if hist is None:
            hist = self._timers[key] = m.WORKER_JOB_SECONDS.labels(
                run.kind, m.LANE_NAMES.get(run.lane, str(run.lane))
            )
        return hist

    async def _execute(self, run: Run) -> None:
        assert self.pool is not None
        handler = self.registry.get(run.kind)
        started = time.perf_counter()
        outcome: BaseException | None = None
        try:
            if handler is None:
                raise PermanentError(f"no handler registered for job kind {run.kind!r}")
            stored = {k: v for k, v in run.payload.items() if k not in QUEUE_KEYS}
            try:
                payload = decode(self.registry.payload_type(run.kind), stored)
            except InvalidPayloadError as err:
                raise PermanentError(str(err)) from None
            ctx = JobContext(
                job_id=run.id,
                kind=run.kind,
                payload=payload,
                group=run.group,
                lane=Lane(run.lane),
                attempt=run.attempt,
                lock_key=run.lock_key,
                pool=self.pool,
                settings=self.settings,
                stored_payload=stored,
                max_attempts=run.max_attempts,
                parked_since=run.payload.get(PARKED_SINCE),
            )
            await handler(ctx)
        except asyncio.CancelledError:
            if run.abandoned is None:  # not cancelled by us: record it like any failure
                outcome = RetryableError("the run was cancelled")
            else:
                self._outcome(run, run.abandoned)
                if run.abandoned == "lost":
                    self._runs.pop((run.id, run.attempt), None)
                return
        except Exception as err:
            outcome = err
        finally:
            self._end(run)
            self._timer(run).observe(time.perf_counter() - started)
        if not await self._claim_recorded(run):
            return
        if outcome is None:
            self._acks.append(run)
            self._ack_wake.set()
        elif isinstance(outcome, Deferred):
            await self._defer(run, outcome)
        else:
            await self._fail(run, outcome)

    async def _claim_recorded(self, run: Run) -> bool:
        """Wait until the run's claim is committed (an outcome recorded before that would find
        the job still queued); False, with the run counted lost, if it never was."""
        if run.claimed is not None:
            # abandoned (cancelled) when the claim's commit failed
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run.claimed)
        if run.claim_committed:
            return True
        self._outcome(run, "lost")
        self._runs.pop((run.id, run.attempt), None)
        return False

    # ------------------------------------------------------------------ outcomes

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wake.wait()
            if len(self._acks) < self.qs.batch_size:
                await asyncio.sleep(ACK_GATHER_SECONDS)  # let more runs finish: one UPDATE for all
            self._ack_wake.clear()
            await self._flush_acks()

    async def _flush_acks(self, final: bool = False) -> None:
        assert self.qpool is not None
        attempts = 0
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                async with self.qpool.connection() as conn, conn.pipeline():
                    # A completion lost in a server crash only makes the job run again after its
                    # lease (at-least-once, never concurrently), so it need not wait for fsync.
                    await conn.execute(q.ASYNC_COMMIT)
                    cur = await conn.execute(
                        q.COMPLETE_JOBS,
                        {
                            "ids": [r.id for r in batch],
                            "attempts": [r.attempt for r in batch],
                            "worker": self.worker_id,
                        },
                    )
                    ours = {row[0] for row in await cur.fetchall()}
            except Exception as err:
                self._acks = batch + self._acks
                attempts += 1
                log.warning("could not record completions; retrying", n=len(batch), error=str(err))
                if final and attempts >= 5:
                    return
                await asyncio.sleep(min(0.1 * 2**attempts, 2.0))
                continue
            for r in batch:
                self._runs.pop((r.id, r.attempt), None)
                if r.id in ours:
                    self._outcome(r, "succeeded")
                else:  # reaped meanwhile (lease expired): it runs again elsewhere; say so
                    self._outcome(r, "lost")
                    log.warning(
                        "completion not recorded: the run's lease was lost",
                        job_id=r.id,
                        kind=r.kind,
                        attempt=r.attempt,
                    )
            self._jobs_done += len(batch)
            if not final:
                return  # the ack loop gathers what finished meanwhile into the next UPDATE

    async def _fail(self, run: Run, err: BaseException) -> None:
        assert self.qpool is not None
        outage = database_went_away(err)
        permanent = not outage and (isinstance(err, PermanentError) or run.attempt >= run.max_attempts)
        retry_after = err.retry_after if isinstance(err, RetryableError) else None
        if retry_after is not None:
            delay = min(retry_after, self.qs.backoff_cap)
        else:
            delay = backoff_delay(run.attempt, self.qs.backoff_base, self.qs.backoff_cap, self._rng.random())
        error: dict[str, Any] = {
            "attempt": run.attempt,
            "error": type(err).__name__,
            "message": str(err)[:2000],
            "retryable": not isinstance(err, PermanentError),
        }
        if not permanent:
            error["retry_in_s"] = round(delay, 6)
        params = {
            "id": run.id,
            "attempt": run.attempt,
            "worker": self.worker_id,
            "delay": delay,
            "error": Jsonb(error),
        }
        statement = q.RETRY_AFTER_OUTAGE if outage else q.BURY_JOB if permanent else q.RETRY_JOB
        state = await self._write_outcome(statement, params, run, "record a failure")
        self._runs.pop((run.id, run.attempt), None)
        # After an outage the statement decides: past the attempts it gives back, the last one
        # is dead.
        outcome = "dead" if permanent or state == "dead" else "retried"
        self._outcome(run, outcome)
        log.info(
            "job failed",
            job_id=run.id,
            kind=run.kind,
            attempt=run.attempt,
            outcome=outcome,
            error=error["error"],
            message=error["message"][:200],
        )

    async def _write_outcome(self, statement: str, params: dict[str, Any], run: Run, what: str) -> str | None:
        """Write a run's outcome, retried a few times with backoff (the database may be briefly
        away); a singleton-key clash re-evaluates the statement at once. Returns the state the
        statement gave the job (None: the run was no longer ours, or nothing could be written)."""
        assert self.qpool is not None
        for i in range(8):
            try:
                async with self.qpool.connection() as conn:
                    row = await (await conn.execute(statement, params)).fetchone()
                return str(row[0]) if row else None
            except psycopg.errors.UniqueViolation:
                continue  # a job with its singleton key was queued meanwhile: re-evaluate
            except Exception as db_err:
                log.warning(f"could not {what}; retrying", job_id=run.id, error=str(db_err))
                await asyncio.sleep(min(0.1 * 2**i, 2.0))
        return None

    async def _defer(self, run: Run, deferred: Deferred) -> None:
        """Back to the queue, due after the delay, the attempt not counted (`handlers.Deferred`)."""
        assert self.qpool is not None
        delay = min(deferred.delay, MAX_DEFER_S)
        params = {"id": run.id, "attempt": run.attempt, "worker": self.worker_id, "delay": delay}
        await self._write_outcome(q.DEFER_JOB, params, run, "defer a run")
        self._runs.pop((run.id, run.attempt), None)
        self._outcome(run, "deferred")
        log.info(
            "job deferred", job_id=run.id, kind=run.kind, delay_s=round(delay, 3), why=str(deferred)[:200]
        )

    async def _release(self, runs: list[Run]) -> None:
        assert self.qpool is not None
        try:
            async with self.qpool.connection() as conn:
                await conn.execute(
                    q.RELEASE_JOBS,
                    {
                        "ids": [r.id for r in runs],
                        "attempts": [r.attempt for r in runs],
                        "worker": self.worker_id,
                    },
                )
                await conn.execute(q.NOTIFY_JOBS)
        except Exception as err:
            log.warning("could not release runs; their leases will expire", n=len(runs), error=str(err))
        for r in runs:
            self._runs.pop((r.id, r.attempt), None)
        log.info("released unfinished runs", job_ids=[r.id for r in runs])

    # ------------------------------------------------------------------ leases and heartbeat

    async def _heartbeat_loop(self) -> None:
        interval = min(self.qs.lease_seconds / 3, 5.0)
        while True:
            await asyncio.sleep(interval)
            await self._renew_leases()
            with contextlib.suppress(Exception):
                await self._write_heartbeat("draining" if self._stop.is_set() else "running")
            with contextlib.suppress(Exception):
                await self._flush_series()
            with contextlib.suppress(Exception):
                await self._reap()

    async def _renew_leases(self) -> None:
        assert self.qpool is not None
        # Runs whose claim is not committed yet are not the database's "running" rows yet.
        runs = [r for r in self._runs.values() if r.claim_committed]
        sent = time.monotonic()
        if not runs:
            self._last_renewal = sent
            return
        try:
            async with self.qpool.connection() as conn:
                cur = await conn.execute(
                    q.EXTEND_LEASES,
                    {
                        "ids": [r.id for r in runs],
                        "attempts": [r.attempt for r in runs],
                        "worker": self.worker_id,
                        "lease": self.qs.lease_seconds,
                    },
                )
                ours = {row[0] for row in await cur.fetchall()}
        except Exception as err:
            log.warning("lease renewal failed", error=str(err))
            if time.monotonic() - self._last_renewal > self.qs.lease_seconds * 0.8:
                # Self-fence: the leases may already be gone; another worker may take the jobs.
                self._abandon([r for r in runs if r.task and not r.task.done()], "lease renewal failing")
            return
        self._last_renewal = sent
        lost = [r for r in runs if r.id not in ours and r.task and not r.task.done()]
        if lost:
            self._abandon(lost, "lease lost")

    def _abandon(self, runs: list[Run], why: str) -> None:
        for run in runs:
            run.abandoned = "lost"
            if run.task:
                run.task.cancel()
        log.warning("abandoned runs", why=why, job_ids=[r.id for r in runs])

    async def _write_heartbeat(self, state: str) -> None:
        assert self.qpool is not None
        heartbeat = {
            "worker": self.worker_id,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "concurrency": self.qs.concurrency,
            "state": state,
            "in_flight": self._executing,
            "jobs_done": self._jobs_done,
            "is_scheduler": self.is_scheduler,
        }
        async with self.qpool.connection() as conn:
            await conn.execute(q.UPSERT_WORKER, {**heartbeat, "metrics": m.worker_snapshot()})
        # Only a heartbeat the database recorded refreshes the file: a stale file means this
        # worker cannot do its work, whatever the reason.
        if self.qs.health_file and state != "stopped":
            try:
                write_heartbeat_file(self.qs.health_file, heartbeat)
            except OSError as err:
                log.warning("cannot write the health file", path=str(self.qs.health_file), error=str(err))

    async def _flush_series(self) -> None:
        """Add this worker's job outcomes and Admin API calls since the last flush to the charts'
        per-minute series (kept for the next flush if the database does not take them)."""
        assert self.qpool is not None
        self._counter_deltas.collect_into(self._minute_counts)
        async with self.qpool.connection() as conn:
            await flush_counts(conn, self._minute_counts)

    async def _reap(self) -> None:
        assert self.qpool is not None
        while True:
            async with self.qpool.connection() as conn:
                rows = await (await conn.execute(q.REAP_EXPIRED_LEASES, {"limit": 100})).fetchall()
                if any(state == "queued" for _id, state in rows):
                    await conn.execute(q.NOTIFY_JOBS)
            if rows:
                log.warning("reaped expired leases", jobs=[(i, s) for i, s in rows])
            if len(rows) < 100:
                return

    # ------------------------------------------------------------------ LISTEN

    async def _listen_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                conn = await async_connect_direct(self.settings)
            except Exception as err:
                self.listening = False
                log.warning("LISTEN connection failed; polling only", error=str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                async with conn:
                    await conn.execute(q.LISTEN_JOBS)
                    self.listening = True
                    delay = 0.2
                    self._wake.set()  # anything enqueued while we were deaf
                    async for _n in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("LISTEN connection lost; polling until it is back", error=str(err))
            self.listening = False
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ scheduler and retention

    async def _scheduler_loop(self) -> None:
        while True:
            try:
                conn = await async_connect_direct(self.settings)
            except Exception:
                await asyncio.sleep(self.qs.scheduler_interval * 5)
                continue
            try:
                async with conn:
                    # One session per worker: standbys retry the lock on it now and then.
                    while True:
                        got = await (
                            await conn.execute(q.TRY_SCHEDULER_LOCK, {"key": SCHEDULER_LOCK_KEY})
                        ).fetchone()
                        if got and got[0]:
                            break
                        await asyncio.sleep(max(self.qs.scheduler_interval * 3, 1.0))
                    self.is_scheduler = True
                    log.info("this worker is the scheduler", worker_id=self.worker_id)
                    await self._declare_schedules()
                    last_prune = time.monotonic()
                    while True:
                        await self._enqueue_due()
                        if time.monotonic() - last_prune > self.qs.prune_interval:
                            await self._prune()
                            last_prune = time.monotonic()
                        await asyncio.sleep(self.qs.scheduler_interval)
                        await conn.execute(q.SESSION_ALIVE)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("scheduler stopped; will try to take over again", error=str(err))
            self.is_scheduler = False
            await asyncio.sleep(self.qs.scheduler_interval)

    async def _declare_schedules(self) -> None:
        assert self.qpool is not None
        schedules = self.registry.schedules()
        if not schedules:
            return
        async with self.qpool.connection() as conn:
            for s in schedules:
                await conn.execute(
                    q.UPSERT_SCHEDULE,
                    {
                        "name": s.name,
                        "kind": s.kind,
                        "payload": Jsonb(s.payload),
                        "group": s.group,
                        "lane": int(s.lane),
                        "every": s.every_seconds,
                    },
                )

    async def _enqueue_due(self) -> None:
        assert self.qpool is not None
        names = [s.name for s in self.registry.schedules()]
        if not names:
            return
        async with self.qpool.connection() as conn:
            due = await (await conn.execute(q.TAKE_DUE_SCHEDULES, {"names": names})).fetchall()
            if due:
                await enqueue_many_async(
                    conn,
                    [
                        JobSpec(kind, payload, group=group, lane=Lane(lane), singleton_key=f"schedule:{name}")
                        for name, kind, payload, group, lane in due
                    ],
                )

    async def _prune(self) -> None:
        assert self.qpool is not None
        for statement, age in (
            (q.PRUNE_FINISHED_JOBS, self.qs.retention_seconds),
            (q.PRUNE_DEAD_JOBS, self.qs.dead_retention_seconds),
        ):
            for _ in range(50):  # at most 50 small batches per round; the next round continues
                async with self.qpool.connection() as conn:
                    cur = await conn.execute(statement, {"age": age, "limit": self.qs.prune_batch})
                    n = cur.rowcount
                if n < self.qs.prune_batch:
                    break
                await asyncio.sleep(0.01)
        async with self.qpool.connection() as conn:
            await conn.execute(q.PRUNE_WORKERS)


async def cancel_until_done(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until every one has ended, cancelling again any that goes on.
    Under Python 3.11 a cancellation can be lost: `asyncio.wait_for` swallows it when what it
    waits for completes in the same loop turn (bpo-42130, fixed in 3.12), and psycopg_pool
    waits with it. A background loop that lost its cancellation (seen after the process was
    stopped and continued: every timer fires at once) would run on, and SIGTERM would never
    end the worker."""
    pending = set(tasks)
    rounds = 0
    while pending:
        for t in pending:
            t.cancel()
        _done, pending = await asyncio.wait(pending, timeout=1.0)
        rounds += 1
        if pending and rounds == 1:
            log.warning("background tasks still running after cancel", tasks=[t.get_name() for t in pending])
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieved: a loop's failure at shutdown is not worth a traceback


def psycopg_pool_errors() -> type[Exception]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout


def run_worker(settings: Settings, qs: QueueSettings, registry: HandlerRegistry) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code."""

    async def main() -> int:
        worker = Worker(settings, registry, qs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        return await worker.run()

    return asyncio.run(main())
