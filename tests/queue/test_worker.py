"""The worker as a real subprocess (`python -m storesync worker`) against real Postgres."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time

import psycopg

from storesync.queue import JobSpec, enqueue, enqueue_many
from tests.queue.conftest import ROOT, scalar, wait_for


def _enqueue(dsn: str, specs: list[JobSpec]) -> list[int]:
    with psycopg.connect(dsn) as conn:
        ids = [e.job_id for e in enqueue_many(conn, specs)]
        conn.commit()
    return ids


def _count(dsn: str, where: str = "true") -> int:
    return int(scalar(dsn, f"SELECT count(*) FROM jobs WHERE {where}"))


def test_worker_runs_jobs_heartbeats_and_stops_cleanly_on_sigterm(qdb, spawn_worker):
    _enqueue(
        qdb.dsn,
        [JobSpec("test.run", {}, group=f"m{i % 3}") for i in range(30)]
        + [JobSpec("queue.noop", {}, group="m0")],
    )
    w = spawn_worker("--concurrency", "4")
    wait_for(lambda: _count(qdb.dsn, "state = 'succeeded'") == 30, 20, "30 jobs to succeed")
    # queue.noop is not in the test registry: a clear permanent failure, not a crash.
    wait_for(lambda: _count(qdb.dsn, "state = 'dead'") == 1, 10, "the unknown kind to be dead-lettered")
    assert "no handler registered" in scalar(
        qdb.dsn, "SELECT errors->0->>'message' FROM jobs WHERE state = 'dead'"
    )
    live = wait_for(
        lambda: scalar(qdb.dsn, "SELECT count(*) FROM queue_workers WHERE state = 'running'"),
        5,
        "heartbeat row",
    )
    assert live == 1
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=10) == 0, w.output()
    assert scalar(qdb.dsn, "SELECT state FROM queue_workers") == "stopped"
    assert scalar(qdb.dsn, "SELECT count(*) FROM test_job_runs") == 30


def test_notify_wakes_an_idle_worker_long_before_the_poll_interval(qdb, spawn_worker):
    w = spawn_worker(env={"STORESYNC_QUEUE_POLL_INTERVAL": "30"})
    wait_for(
        lambda: scalar(qdb.dsn, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"),
        15,
        "the worker to LISTEN",
    )
    time.sleep(0.3)  # the worker is now idle, waiting on NOTIFY or its 30 s poll
    (job_id,) = _enqueue(qdb.dsn, [JobSpec("test.run", {}, group="m1")])
    wait_for(lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'succeeded'"), 5, "the notified job")
    assert w.proc.poll() is None


def test_polling_still_delivers_when_listen_is_impossible(qdb, spawn_worker):
    # The direct path (LISTEN) points nowhere; the pooled path works.
    w = spawn_worker(env={"DATABASE_DIRECT_URL": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"})
    wait_for(lambda: "polling only" in w.output(), 15, "the worker to report LISTEN down")
    ids = _enqueue(qdb.dsn, [JobSpec("test.run", {}, group="m1") for _ in range(5)])
    wait_for(
        lambda: _count(qdb.dsn, f"id = ANY(ARRAY{ids}) AND state = 'succeeded'") == 5, 10, "jobs by polling"
    )


def test_polling_delivers_while_the_listen_connection_is_killed_and_comes_back(qdb, spawn_worker):
    spawn_worker(env={"STORESYNC_QUEUE_POLL_INTERVAL": "0.3"})
    listeners = (
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
    )
    first = wait_for(lambda: scalar(qdb.dsn, listeners), 15, "the worker to LISTEN")
    scalar(qdb.dsn, "SELECT pg_terminate_backend(%s)", (first,))
    ids = _enqueue(qdb.dsn, [JobSpec("test.run", {}, group="m1") for _ in range(3)])
    wait_for(
        lambda: _count(qdb.dsn, f"id = ANY(ARRAY{ids}) AND state = 'succeeded'") == 3, 10, "jobs delivered"
    )
    again = wait_for(lambda: scalar(qdb.dsn, listeners), 10, "the worker to LISTEN again")
    assert again != first


def test_sigkilled_workers_job_reruns_once_after_its_lease_expires(qdb, spawn_worker):
    (job_id,) = _enqueue(qdb.dsn, [JobSpec("test.run", {"sleep": 0.5}, group="m1")])
    doomed = spawn_worker(env={"STORESYNC_QUEUE_LEASE_SECONDS": "1.5"})
    wait_for(lambda: scalar(qdb.dsn, "SELECT count(*) FROM test_job_runs"), 15, "the first run to start")
    doomed.signal(signal.SIGKILL)
    doomed.wait(timeout=5)
    killed_at = scalar(qdb.dsn, "SELECT clock_timestamp()")
    lease_end = scalar(qdb.dsn, "SELECT lease_expires_at FROM jobs WHERE id = %s", (job_id,))
    assert scalar(qdb.dsn, "SELECT state FROM jobs WHERE id = %s", (job_id,)) == "running"
    spawn_worker()
    spawn_worker()
    wait_for(
        lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'succeeded'"), 20, "the job to rerun and succeed"
    )
    runs = (
        psycopg.connect(qdb.dsn)
        .execute(
            "SELECT attempt, started_at FROM test_job_runs WHERE job_id = %s ORDER BY attempt", (job_id,)
        )
        .fetchall()
    )
    # A worker's death is not the job's failure: the rerun has the same attempt number.
    assert [a for a, _ in runs] == [1, 1]
    # The lease was still valid when the worker died, and the rerun waited for it to run out.
    assert lease_end > killed_at
    assert runs[1][1] >= lease_end
    errors = scalar(qdb.dsn, "SELECT errors FROM jobs WHERE id = %s", (job_id,))
    assert [(e["error"], e["infrastructure"]) for e in errors] == [("LeaseExpired", True)]


def test_four_workers_never_run_one_job_twice(qdb, spawn_worker):
    ids = _enqueue(
        qdb.dsn, [JobSpec("test.run", {"sleep": 0.002 * (i % 5)}, group=f"m{i % 6}") for i in range(400)]
    )
    for _ in range(4):
        spawn_worker("--concurrency", "8", "--batch-size", "10")
    wait_for(lambda: _count(qdb.dsn, "state = 'succeeded'") == 400, 40, "400 jobs to succeed", interval=0.1)
    with psycopg.connect(qdb.dsn) as conn:
        per_job = conn.execute(
            "SELECT job_id, count(*) FROM test_job_runs GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
        pids = conn.execute("SELECT count(DISTINCT pid) FROM test_job_runs").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM test_job_runs").fetchone()[0]
    if per_job:
        errors = scalar(
            qdb.dsn, "SELECT json_agg(errors) FROM jobs WHERE id = ANY(%s)", ([j for j, _ in per_job],)
        )
        raise AssertionError(f"jobs ran more than once: {per_job}; their errors: {errors}")
    assert total == len(ids) == 400
    assert pids >= 2  # the work really was spread over several processes


def test_jobs_sharing_a_lock_key_never_overlap_across_workers(qdb, spawn_worker):
    _enqueue(
        qdb.dsn,
        [JobSpec("test.run", {"sleep": 0.03}, group=f"m{i % 4}", lock_key=f"item:{i % 2}") for i in range(24)]
        + [JobSpec("test.run", {"sleep": 0.03}, group="m9") for _ in range(8)],
    )
    spawn_worker("--concurrency", "6")
    spawn_worker("--concurrency", "6")
    wait_for(lambda: _count(qdb.dsn, "state = 'succeeded'") == 32, 30, "all jobs", interval=0.05)
    with psycopg.connect(qdb.dsn) as conn:
        overlaps = conn.execute("""
            SELECT a.job_id, b.job_id FROM test_job_runs a JOIN test_job_runs b
              ON a.lock_key = b.lock_key AND a.job_id < b.job_id
             AND a.started_at < b.finished_at AND b.started_at < a.finished_at
        """).fetchall()
        keyless_overlap = conn.execute("""
            SELECT count(*) FROM test_job_runs a JOIN test_job_runs b
              ON a.lock_key IS NULL AND b.lock_key IS NULL AND a.job_id < b.job_id
             AND a.started_at < b.finished_at AND b.started_at < a.finished_at
        """).fetchone()[0]
    assert overlaps == []
    assert keyless_overlap > 0  # jobs without a key do run concurrently: the test can tell


def test_small_merchants_are_not_stuck_behind_a_big_backlog(qdb, spawn_worker):
    _enqueue(qdb.dsn, [JobSpec("test.run", {"sleep": 0.02}, group="big") for _ in range(1500)])
    spawn_worker("--concurrency", "10")
    wait_for(lambda: _count(qdb.dsn, "state = 'succeeded'") >= 20, 15, "the backlog to start draining")
    small = _enqueue(qdb.dsn, [JobSpec("test.run", {"sleep": 0.01}, group=f"small{i}") for i in range(20)])
    wait_for(
        lambda: _count(qdb.dsn, f"id = ANY(ARRAY{small}) AND state = 'succeeded'") == 20, 15, "small jobs"
    )
    # While the small merchants were served, most of the big backlog was still waiting (FIFO
    # would have run all 1,500 first: the worker runs at most ~500 of them per second).
    big_left = _count(qdb.dsn, "group_key = 'big' AND state = 'queued'")
    assert big_left > 750, big_left


def test_retries_follow_capped_exponential_backoff_then_dead_letter_and_replay(qdb, spawn_worker):
    (job_id,) = _enqueue(qdb.dsn, [JobSpec("test.run", {"fail_until": 99}, group="m1", max_attempts=5)])
    spawn_worker(env={"STORESYNC_QUEUE_BACKOFF_BASE": "0.05", "STORESYNC_QUEUE_BACKOFF_CAP": "0.15"})
    wait_for(lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'dead'"), 20, "the job to be dead-lettered")
    errors = scalar(qdb.dsn, "SELECT errors FROM jobs WHERE id = %s", (job_id,))
    assert [e["attempt"] for e in errors] == [1, 2, 3, 4, 5]
    assert all(e["error"] == "RetryableError" and e["retryable"] for e in errors)
    delays = [e["retry_in_s"] for e in errors[:-1]]
    ceilings = [min(0.15, 0.05 * 2 ** (a - 1)) for a in (1, 2, 3, 4)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True)), (delays, ceilings)
    assert "retry_in_s" not in errors[-1]  # the last attempt does not schedule another
    with psycopg.connect(qdb.dsn) as conn:
        starts = [
            r[0]
            for r in conn.execute(
                "SELECT started_at FROM test_job_runs WHERE job_id = %s ORDER BY attempt", (job_id,)
            )
        ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(g >= d for g, d in zip(gaps, delays, strict=True)), (gaps, delays)

    # Replay from the dead letter with the CLI, after "fixing" the job so it succeeds.
    scalar(qdb.dsn, "UPDATE jobs SET payload = '{}' WHERE id = %s RETURNING id", (job_id,))
    out = subprocess.run(
        [sys.executable, "-m", "storesync", "jobs", "retry", str(job_id)],
        cwd=ROOT,
        env={**_cli_env(qdb.dsn)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    wait_for(
        lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'succeeded'"), 10, "the replayed job to succeed"
    )
    errors = scalar(qdb.dsn, "SELECT errors FROM jobs WHERE id = %s", (job_id,))
    assert [e["error"] for e in errors][-1] == "Replayed" and len(errors) == 6


def test_permanent_error_dead_letters_at_once_and_replay_refuses_non_dead_jobs(qdb, spawn_worker):
    scalar(qdb.dsn, "INSERT INTO test_flags VALUES ('broken') RETURNING name")
    (job_id,) = _enqueue(qdb.dsn, [JobSpec("test.run", {"permanent_if_flag": "broken"}, group="m1")])
    spawn_worker()
    wait_for(lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'dead'"), 15, "the dead letter")
    errors = scalar(qdb.dsn, "SELECT errors FROM jobs WHERE id = %s", (job_id,))
    assert len(errors) == 1 and errors[0]["error"] == "PermanentError" and errors[0]["retryable"] is False
    out = subprocess.run(
        [sys.executable, "-m", "storesync", "jobs", "show", str(job_id)],
        cwd=ROOT,
        env=_cli_env(qdb.dsn),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "PermanentError" in out.stdout
    scalar(qdb.dsn, "DELETE FROM test_flags RETURNING name")
    ok = subprocess.run(
        [sys.executable, "-m", "storesync", "jobs", "retry", str(job_id), "999999"],
        cwd=ROOT,
        env=_cli_env(qdb.dsn),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 1 and "999999" in ok.stderr
    wait_for(lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'succeeded'"), 10, "the replayed job")


def test_sigterm_drains_in_flight_jobs_and_releases_what_does_not_finish(qdb, spawn_worker):
    quick, slow = _enqueue(
        qdb.dsn,
        [JobSpec("test.run", {"sleep": 0.4}, group="m1"), JobSpec("test.run", {"sleep": 60}, group="m2")],
    )
    w = spawn_worker("--concurrency", "4", "--drain-timeout", "1.2")
    wait_for(lambda: scalar(qdb.dsn, "SELECT count(*) FROM test_job_runs") == 2, 15, "both jobs to start")
    w.signal(signal.SIGTERM)
    t0 = time.monotonic()
    time.sleep(0.2)
    (late,) = _enqueue(qdb.dsn, [JobSpec("test.run", {}, group="m3")])
    assert w.wait(timeout=10) == 0, w.output()
    assert time.monotonic() - t0 < 5
    states = dict(psycopg.connect(qdb.dsn).execute("SELECT id, state FROM jobs").fetchall())
    assert states == {quick: "succeeded", slow: "queued", late: "queued"}
    slow_job = (
        psycopg.connect(qdb.dsn).execute("SELECT attempt, errors FROM jobs WHERE id = %s", (slow,)).fetchone()
    )
    assert slow_job[0] == 0 and slow_job[1][-1]["error"] == "Released"


def test_one_scheduler_enqueues_periodic_jobs_across_workers(qdb, spawn_worker):
    for _ in range(2):
        spawn_worker(handlers="tests.support.queue_handlers:scheduled")
    wait_for(lambda: _count(qdb.dsn, "kind = 'test.tick' AND state = 'succeeded'") >= 4, 20, "periodic ticks")
    t0 = time.monotonic()
    n0 = _count(qdb.dsn, "kind = 'test.tick'")
    time.sleep(1.5)
    n1 = _count(qdb.dsn, "kind = 'test.tick'")
    elapsed = time.monotonic() - t0
    # every 0.3 s by ONE scheduler: about elapsed/0.3 ticks, never twice that.
    assert 2 <= n1 - n0 <= elapsed / 0.3 + 2, (n0, n1, elapsed)
    assert scalar(qdb.dsn, "SELECT count(*) FROM queue_workers WHERE is_scheduler") == 1


def test_retention_prunes_old_finished_jobs_in_batches_and_keeps_the_rest(qdb, spawn_worker):
    with psycopg.connect(qdb.dsn) as conn:
        enqueue_many(conn, [JobSpec("test.run", {}, group="m1") for _ in range(1200)])
        conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '2 hours'")
        enqueue(conn, JobSpec("test.run", {"keep": 1}, group="m1"))
        dead = enqueue(conn, JobSpec("test.run", {}, group="m1", run_at=None))
        conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = now() - interval '2 hours' WHERE id = %s",
            (dead.job_id,),
        )
        conn.commit()
    spawn_worker(
        env={
            "STORESYNC_QUEUE_RETENTION_SECONDS": "3600",
            "STORESYNC_QUEUE_PRUNE_BATCH": "100",
            "STORESYNC_QUEUE_PRUNE_INTERVAL": "0.2",
        }
    )
    wait_for(lambda: _count(qdb.dsn) == 2, 20, "old finished jobs to be pruned")
    assert _count(qdb.dsn, "state = 'dead'") == 1 and _count(qdb.dsn, "payload ? 'keep'") == 1


def _cli_env(dsn: str) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if "DIRECT_URL" not in k}
    return {**env, "DATABASE_URL": dsn, "PYTHONPATH": str(ROOT)}


def test_small_bursts_keep_flowing_while_claims_race_for_slots(qdb, spawn_worker):
    """Bursts of a few no-op jobs make the two claim loops race for the worker's slots (a burst
    of >= 2 sets the helper loop claiming). Each burst must run well before the 30 s poll: a
    loop waiting for slots that only another loop's empty claim had reserved once stalled the
    worker with jobs queued (found in the demo, one run in two)."""
    w = spawn_worker("--concurrency", "4", "--batch-size", "4", env={"STORESYNC_QUEUE_POLL_INTERVAL": "30"})
    wait_for(
        lambda: scalar(qdb.dsn, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"),
        15,
        "the worker to LISTEN",
    )
    for burst in range(40):
        ids = _enqueue(qdb.dsn, [JobSpec("test.noop", {}, group=f"m{burst % 3}") for _ in range(3)])
        wait_for(
            lambda ids=ids: _count(qdb.dsn, f"id = ANY(ARRAY{ids}) AND state = 'succeeded'") == 3,
            5,
            f"burst {burst} to run",
        )
    assert w.proc.poll() is None


def _healthcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storesync.healthcheck", *args], capture_output=True, text=True, timeout=10
    )


def test_health_file_follows_recorded_heartbeats_and_goes_away_on_stop(qdb, spawn_worker, tmp_path):
    health = tmp_path / "worker.health"
    assert _healthcheck("worker", "--file", str(health)).returncode == 1  # nothing running yet
    # Heartbeats every lease/3 = 1 s here, so a 3 s max age sees several of them.
    w = spawn_worker("--health-file", str(health), env={"STORESYNC_QUEUE_LEASE_SECONDS": "3"})
    wait_for(health.exists, 15, "the health file")
    beat = json.loads(health.read_text())
    assert beat["pid"] == w.proc.pid and beat["state"] == "running"
    first = health.stat().st_mtime
    wait_for(lambda: health.stat().st_mtime > first, 5, "the next heartbeat to refresh the file")
    ok = _healthcheck("worker", "--file", str(health), "--max-age", "3")
    assert ok.returncode == 0, ok.stderr
    # A worker that stops recording heartbeats (frozen here) turns unhealthy once the file ages.
    w.signal(signal.SIGSTOP)
    try:
        wait_for(
            lambda: _healthcheck("worker", "--file", str(health), "--max-age", "3").returncode == 1,
            10,
            "the frozen worker's check to fail",
            interval=0.5,
        )
    finally:
        w.signal(signal.SIGCONT)
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=15) == 0, w.output()
    assert not health.exists()
    gone = _healthcheck("worker", "--file", str(health))
    assert gone.returncode == 1 and "no heartbeat file" in gone.stderr


def test_a_deferred_run_goes_back_to_the_queue_due_later_without_spending_an_attempt(qdb, spawn_worker):
    """`Deferred` (e.g. the store's bucket is empty): the job runs again after the delay, as
    the same attempt, with no error recorded, even when it has a single attempt."""
    (job_id,) = _enqueue(
        qdb.dsn, [JobSpec("test.run", {"defer_runs": 2, "defer_s": 0.4}, group="m1", max_attempts=1)]
    )
    spawn_worker()
    wait_for(lambda: _count(qdb.dsn, f"id = {job_id} AND state = 'succeeded'"), 15, "the deferred job")
    with psycopg.connect(qdb.dsn) as conn:
        runs = conn.execute(
            "SELECT attempt, started_at FROM test_job_runs WHERE job_id = %s ORDER BY started_at", (job_id,)
        ).fetchall()
        attempt, errors = conn.execute("SELECT attempt, errors FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert [a for a, _ in runs] == [1, 1, 1] and attempt == 1 and errors == []
    gaps = [(b - a).total_seconds() for (_, a), (_, b) in itertools.pairwise(runs)]
    assert all(g >= 0.4 for g in gaps), gaps


def test_a_broken_database_connection_is_an_outage_and_a_statement_timeout_is_the_jobs_own():
    from storesync.queue.worker import database_went_away

    assert database_went_away(
        psycopg.OperationalError("consuming input failed: server closed the connection")
    )
    assert database_went_away(
        psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    )
    assert database_went_away(psycopg.errors.ProtocolViolation("server login has been failing"))
    assert not database_went_away(
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    )
    assert not database_went_away(psycopg.errors.UniqueViolation("duplicate key"))
    assert not database_went_away(RuntimeError("the job's own bug"))
