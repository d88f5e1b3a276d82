"""Operator views: `storesync jobs list|cancel`, database gauges for /metrics, live workers."""

from __future__ import annotations

import subprocess
import sys

import psycopg
from prometheus_client import CollectorRegistry, generate_latest

from storesync.queue import JobSpec, Lane, enqueue_many
from storesync.queue.metrics import QueueGauges
from storesync.queue.ops import cancel_job, live_workers, replay_job, work_by_payload
from tests.queue.conftest import ROOT


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if "DIRECT_URL" not in k}
    return subprocess.run(
        [sys.executable, "-m", "storesync", "jobs", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "DATABASE_URL": dsn, "COLUMNS": "200"},
    )


def test_jobs_list_filters_by_state_and_cancel_only_touches_queued_jobs(db):
    with db.connect() as conn:
        a, b = enqueue_many(conn, [JobSpec("k.listed", {}, group="m1"), JobSpec("k.other", {}, group="m2")])
        conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = now(), "
            'errors = \'[{"message": "it broke"}]\' WHERE id = %s',
            (b.job_id,),
        )
        conn.commit()
    listed = _cli(db.dsn, "list", "--state", "dead")
    assert listed.returncode == 0, listed.stderr
    assert "k.other" in listed.stdout and "it broke" in listed.stdout and "k.listed" not in listed.stdout
    bad = _cli(db.dsn, "list", "--state", "nope")
    assert bad.returncode == 2 and "--state" in bad.stderr
    refused = _cli(db.dsn, "cancel", str(b.job_id))
    assert refused.returncode == 1 and str(b.job_id) in refused.stderr
    done = _cli(db.dsn, "cancel", str(a.job_id))
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        states = dict(conn.execute("SELECT id, state FROM jobs").fetchall())
        assert states == {a.job_id: "cancelled", b.job_id: "dead"}
        assert cancel_job(conn, a.job_id) is False
        assert replay_job(conn, a.job_id) is True  # cancelled jobs can be replayed too
        conn.commit()


def test_replay_refuses_when_a_job_with_the_same_singleton_key_is_queued(db):
    with db.connect() as conn:
        (dead,) = enqueue_many(conn, [JobSpec("k.s", {}, group="m1", singleton_key="p:1")])
        conn.execute("UPDATE jobs SET state = 'dead', finished_at = now() WHERE id = %s", (dead.job_id,))
        enqueue_many(conn, [JobSpec("k.s", {}, group="m1", singleton_key="p:1")])
        conn.commit()
        assert replay_job(conn, dead.job_id) is False


def test_queue_gauges_report_jobs_by_state_and_lane_and_age_per_group(db):
    with db.connect() as conn:
        enqueue_many(
            conn,
            [JobSpec("k.a", {}, group="m1", lane=Lane.INVENTORY) for _ in range(3)]
            + [JobSpec("k.a", {}, group="m2", lane=Lane.BACKFILL)],
        )
        conn.execute("UPDATE jobs SET run_at = now() - interval '90 seconds' WHERE group_key = 'm1'")
        conn.commit()
        registry = CollectorRegistry()
        gauges = QueueGauges(registry)
        gauges.refresh(conn)
    text = generate_latest(registry).decode()
    assert 'storesync_queue_jobs{lane="inventory",state="queued"} 3.0' in text
    assert 'storesync_queue_jobs{lane="backfill",state="queued"} 1.0' in text
    assert 'storesync_queue_jobs{lane="catalog",state="dead"} 0.0' in text
    assert 'storesync_queue_due_jobs{group="m1"} 3.0' in text
    age_line = next(
        line
        for line in text.splitlines()
        if line.startswith('storesync_queue_oldest_due_age_seconds{group="m1"}')
    )
    assert 89 < float(age_line.split()[-1]) < 120


async def test_queue_gauges_refresh_async_matches(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group="m1")])
        conn.commit()
    registry = CollectorRegistry()
    async with await psycopg.AsyncConnection.connect(db.dsn) as aconn:
        await QueueGauges(registry).refresh_async(aconn)
    assert 'storesync_queue_jobs{lane="catalog",state="queued"} 1.0' in generate_latest(registry).decode()


def test_live_workers_lists_recent_heartbeats_only(db):
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO queue_workers (worker_id, hostname, pid, concurrency) VALUES ('w1', 'h', 1, 4)"
        )
        conn.execute(
            "INSERT INTO queue_workers (worker_id, hostname, pid, concurrency, heartbeat_at) "
            "VALUES ('old', 'h', 2, 4, now() - interval '1 hour')"
        )
        conn.execute(
            "INSERT INTO queue_workers (worker_id, hostname, pid, concurrency, state) "
            "VALUES ('gone', 'h', 3, 4, 'stopped')"
        )
        conn.commit()
        workers = live_workers(conn, within_seconds=30)
    assert [w.worker_id for w in workers] == ["w1"]
    assert workers[0].heartbeat_age_s < 5


async def test_work_by_payload_counts_a_retry_waiting_out_its_backoff_as_unapplied_work(db):
    """A store's pending work (the dashboard's behind / in step, storesync_store_pending_jobs):
    a job that failed and waits for its retry is still work for its store; a job never run that
    waits for a later time (debounced, periodic) is not; a parked one is parked."""
    with db.connect() as conn:
        shops = ("due", "backoff", "later", "parked")
        queued = enqueue_many(conn, [JobSpec("k.w", {"shop": s}, group="m1") for s in shops])
        ids = {s: r.job_id for s, r in zip(shops, queued, strict=True)}
        conn.execute(
            "UPDATE jobs SET attempt = 1, run_at = now() + interval '30 seconds', "
            'errors = \'[{"error": "RetryableError", "retry_in_s": 30}]\' WHERE id = %s',
            (ids["backoff"],),
        )
        conn.execute("UPDATE jobs SET run_at = now() + interval '30 seconds' WHERE id = %s", (ids["later"],))
        conn.execute(
            "UPDATE jobs SET run_at = now() + interval '30 seconds', "
            'payload = payload || \'{"parked_for": "parked"}\' WHERE id = %s',
            (ids["parked"],),
        )
        conn.commit()
    async with await psycopg.AsyncConnection.connect(db.dsn) as aconn:
        work = {w.keyed["shop"]: w for w in await work_by_payload(aconn, ["shop"], dead_within_s=60)}
    assert {s: (w.active, w.parked) for s, w in work.items()} == {
        "due": (1, 0),
        "backoff": (1, 0),
        "later": (0, 0),
        "parked": (0, 1),
    }
    assert work["backoff"].oldest_active is not None and work["later"].oldest_active is None
