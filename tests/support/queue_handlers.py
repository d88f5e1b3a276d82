"""Job handlers for the queue's tests: they record every run in `test_job_runs` so tests can
prove what ran, how often, when and where. Behaviour comes from the payload:

  sleep: seconds to run          fail_until: raise RetryableError while attempt < this
  permanent_if_flag: raise PermanentError while `test_flags` holds this name
  defer_runs: raise Deferred (delay `defer_s`, default 0.3) on the job's first N runs
"""

from __future__ import annotations

import asyncio
import os

from storesync.queue import Deferred, HandlerRegistry, JobContext, PermanentError, RetryableError

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS test_job_runs (
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    pid         integer NOT NULL,
    group_key   text NOT NULL,
    lock_key    text,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS test_flags (name text PRIMARY KEY);
"""

registry = HandlerRegistry()


@registry.register("test.run")
async def run(ctx: JobContext) -> None:
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO test_job_runs (job_id, attempt, pid, group_key, lock_key) VALUES (%s, %s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, os.getpid(), ctx.group, ctx.lock_key),
        )
    try:
        if ctx.payload.get("defer_runs"):
            async with ctx.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM test_job_runs WHERE job_id = %s", (ctx.job_id,)
                )
                runs = (await cur.fetchone())[0]
            if runs <= int(ctx.payload["defer_runs"]):
                raise Deferred("the store is busy", delay=float(ctx.payload.get("defer_s", 0.3)))
        if ctx.payload.get("sleep"):
            await asyncio.sleep(float(ctx.payload["sleep"]))
        if ctx.attempt < int(ctx.payload.get("fail_until", 0)):
            raise RetryableError(f"attempt {ctx.attempt} fails on purpose")
        flag = ctx.payload.get("permanent_if_flag")
        if flag:
            async with ctx.pool.connection() as conn:
                cur = await conn.execute("SELECT 1 FROM test_flags WHERE name = %s", (flag,))
                if await cur.fetchone():
                    raise PermanentError(f"flag {flag} is set")
    finally:
        async with ctx.pool.connection() as conn:
            await conn.execute(
                "UPDATE test_job_runs SET finished_at = clock_timestamp() WHERE job_id = %s AND attempt = %s",
                (ctx.job_id, ctx.attempt),
            )


@registry.register("test.tick")
async def tick(ctx: JobContext) -> None:
    await run(ctx)


# The same handlers plus a periodic job, for the scheduler test.
scheduled = HandlerRegistry().merged(registry)
scheduled.schedule("tick", "test.tick", every_seconds=0.3, group="ops")


@registry.register("test.noop")
async def noop(ctx: JobContext) -> None:
    """Returns at once: runs that end before their claim loop has moved on (slot races)."""
