"""Worker processes for the queue benchmark, one per system, started by run.py.

    python bench/queue/bench_workers.py pgqueuer DSN BATCH CONCURRENCY
    python bench/queue/bench_workers.py procrastinate DSN BATCH CONCURRENCY
    python bench/queue/bench_workers.py bare DSN BATCH CONCURRENCY

Every system's `stamp` job prints "STAMP <n> <unix time>" on stdout when its handler starts
(wake-up latency); `noop`/`small` jobs do nothing. SIGTERM stops the process.
ours runs as `python -m storesync worker --handlers bench_handlers:registry`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time


async def run_pgqueuer(dsn: str, batch: int, concurrency: int) -> None:
    from datetime import timedelta

    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job) -> None:
        return None

    @qm.entrypoint("small")
    async def small(job) -> None:
        return None

    @qm.entrypoint("stamp")
    async def stamp(job) -> None:
        print("STAMP", job.payload.decode(), time.time(), flush=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    await qm.run(
        batch_size=batch,
        dequeue_timeout=timedelta(seconds=1),
        max_concurrent_tasks=max(concurrency, 2 * batch),
    )


async def run_procrastinate(dsn: str, batch: int, concurrency: int) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="small")
    async def small() -> None:
        return None

    @app.task(name="stamp")
    async def stamp(n: int) -> None:
        print("STAMP", n, time.time(), flush=True)

    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency, wait=True, install_signal_handlers=True, fetch_job_polling_interval=1.0
        )


def run_bare(dsn: str, batch: int, _concurrency: int) -> None:
    """The ceiling: claim a batch with SKIP LOCKED, mark it done, repeat. No handlers, no fairness."""
    import psycopg

    from storesync.queue import queries as q

    stop = False

    def _stop(*_a) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    with psycopg.connect(dsn, autocommit=False, prepare_threshold=None) as conn:
        while not stop:
            rows = conn.execute(q.CLAIM_JOBS_FIFO, {"batch": batch, "worker": "bare", "lease": 30}).fetchall()
            conn.commit()
            if not rows:
                time.sleep(0.005)
                continue
            conn.execute(
                q.COMPLETE_JOBS,
                {"ids": [r[0] for r in rows], "attempts": [r[5] for r in rows], "worker": "bare"},
            )
            conn.commit()


if __name__ == "__main__":
    system, dsn, batch, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if system == "pgqueuer":
        asyncio.run(run_pgqueuer(dsn, batch, concurrency))
    elif system == "procrastinate":
        asyncio.run(run_procrastinate(dsn, batch, concurrency))
    elif system == "bare":
        run_bare(dsn, batch, concurrency)
    else:
        raise SystemExit(f"unknown system {system!r}; {json.dumps(['pgqueuer', 'procrastinate', 'bare'])}")
