"""The fair batched claim, driven directly on real Postgres (no worker process)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from storesync.queue import JobSpec, Lane, enqueue_many
from storesync.queue import queries as q
from storesync.queue.claim import _claim_params, claim_batch_sync
from storesync.queue.config import QueueSettings


def _claim(conn, limit=100, worker="w1", **kw):
    qs = QueueSettings.load(**kw)
    rows = claim_batch_sync(conn, qs, worker, limit)
    conn.commit()
    return rows


def test_claim_takes_lanes_in_priority_order(db):
    with db.connect() as conn:
        enqueue_many(
            conn,
            [JobSpec("k.a", {"n": i}, group="m1", lane=Lane.BACKFILL) for i in range(3)]
            + [JobSpec("k.a", {"n": 10 + i}, group="m2", lane=Lane.CATALOG) for i in range(3)]
            + [JobSpec("k.a", {"n": 20 + i}, group="m3", lane=Lane.INVENTORY) for i in range(3)],
        )
        conn.commit()
        rows = _claim(conn, limit=4)
    assert sorted(r[4] for r in rows) == [0, 0, 0, 1]


def test_small_groups_get_their_first_job_before_a_big_groups_backlog(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group="big") for _ in range(2000)])
        enqueue_many(conn, [JobSpec("k.a", {}, group=f"small{i:02d}") for i in range(40)])
        conn.commit()
        first = _claim(conn, limit=50, groups_per_claim=16, claim_spread=1)
        second = _claim(conn, limit=50, groups_per_claim=16, claim_spread=1)
        third = _claim(conn, limit=50, groups_per_claim=16, claim_spread=1)

    def smalls(rows):
        return sum(1 for r in rows if r[3].startswith("small"))

    # 16 groups per claim: every claim serves up to 15-16 small groups before more of "big".
    assert smalls(first) >= 15 and smalls(second) >= 15
    assert smalls(first) + smalls(second) + smalls(third) == 40


def test_concurrent_claims_take_a_share_of_the_busy_groups_and_each_fill_their_batch(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group=f"m{i:02d}") for i in range(20) for _ in range(50)])
        conn.commit()
    qs = QueueSettings.load(groups_per_claim=16, claim_spread=4)
    # Four claims in flight at once (none committed): each locks 5 of the 20 busy groups.
    conns = [db.connect() for _ in range(4)]
    try:
        batches = [
            c.execute(q.CLAIM_JOBS, _claim_params(qs, f"w{i}", 100)).fetchall() for i, c in enumerate(conns)
        ]
        groups = [{r[3] for r in rows} for rows in batches]
        assert [len(rows) for rows in batches] == [100, 100, 100, 100]
        assert [len(g) for g in groups] == [5, 5, 5, 5]
        assert len(set().union(*groups)) == 20  # disjoint
        # Least-recently-served first: the first claim took the first five groups.
        assert groups[0] == {f"m{i:02d}" for i in range(5)}
    finally:
        for c in conns:
            c.rollback()
            c.close()


def test_jobs_sharing_a_lock_key_are_not_claimed_together_or_while_one_runs(db):
    with db.connect() as conn:
        enqueue_many(
            conn,
            [JobSpec("k.a", {"n": i}, group=f"m{i % 3}", lock_key="item:1") for i in range(6)]
            + [JobSpec("k.a", {"n": 99}, group="m0", lock_key="item:2")],
        )
        conn.commit()
        first = _claim(conn)
        assert sorted(r[7] for r in first) == ["item:1", "item:2"]
        assert _claim(conn) == []  # item:1 is running; item:2's only job is running
        conn.execute(
            "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL "
            "WHERE lock_key = 'item:1' AND state = 'running'"
        )
        conn.commit()
        again = _claim(conn)
    assert [r[7] for r in again] == ["item:1"]


def test_group_concurrency_limit_bounds_running_jobs(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group="limited") for _ in range(10)])
        conn.execute("UPDATE job_groups SET concurrency_limit = 2 WHERE group_key = 'limited'")
        conn.commit()
        assert len(_claim(conn)) == 2
        assert _claim(conn) == []
        conn.execute(
            "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL "
            "WHERE id = (SELECT min(id) FROM jobs WHERE state = 'running')"
        )
        conn.commit()
        assert len(_claim(conn)) == 1


def test_delayed_jobs_are_not_claimed_before_run_at(db):
    from datetime import UTC, datetime, timedelta

    with db.connect() as conn:
        enqueue_many(
            conn,
            [
                JobSpec("k.a", {}, group="m1", run_at=datetime.now(UTC) + timedelta(hours=1)),
                JobSpec("k.a", {"now": True}, group="m1"),
            ],
        )
        conn.commit()
        rows = _claim(conn)
    assert [r[2] for r in rows] == [{"now": True}]


def test_concurrent_claimers_never_claim_a_job_twice_or_break_lock_keys(db):
    with db.connect() as conn:
        enqueue_many(
            conn,
            [
                JobSpec("k.a", {"n": i}, group=f"m{i % 7}", lock_key=f"key{i % 5}" if i % 2 else None)
                for i in range(600)
            ],
        )
        conn.commit()
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        try:
            with psycopg.connect(db.dsn) as conn:
                for _ in range(400):
                    rows = _claim(conn, limit=20, worker=name, groups_per_claim=3)
                    if rows is None:
                        continue
                    with lock:
                        claimed.extend(r[0] for r in rows)
                    running_keys = conn.execute(
                        "SELECT lock_key, count(*) FROM jobs WHERE state = 'running' AND lock_key IS NOT NULL "
                        "GROUP BY 1 HAVING count(*) > 1"
                    ).fetchall()
                    assert running_keys == []
                    # finish my running keyed jobs so keys free up
                    conn.execute(
                        "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL "
                        "WHERE state = 'running' AND worker_id = %s",
                        (name,),
                    )
                    conn.commit()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(claimed) == len(set(claimed)) == 600


@pytest.mark.parametrize(
    "attempt, base, cap, ceiling", [(1, 1.0, 300, 1.0), (4, 1.0, 300, 8.0), (20, 1.0, 300, 300.0)]
)
def test_backoff_delay_is_full_jitter_under_a_capped_exponential(attempt, base, cap, ceiling):
    from storesync.queue.config import backoff_delay

    assert backoff_delay(attempt, base, cap, 0.0) == 0.0
    assert backoff_delay(attempt, base, cap, 0.5) == pytest.approx(ceiling / 2)
    assert backoff_delay(attempt, base, cap, 0.999999) <= ceiling


def test_group_concurrency_limit_holds_under_concurrent_claimers(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group=f"g{i % 3}") for i in range(300)])
        conn.execute("UPDATE job_groups SET concurrency_limit = 2")
        conn.commit()
    errors: list[BaseException] = []
    over: list[tuple] = []

    def claimer(name: str) -> None:
        try:
            with psycopg.connect(db.dsn) as conn:
                for i in range(300):
                    _claim(conn, limit=5, worker=name)
                    over.extend(
                        conn.execute(
                            "SELECT group_key, count(*) FROM jobs WHERE state = 'running' GROUP BY 1 HAVING count(*) > 2"
                        ).fetchall()
                    )
                    conn.commit()
                    if i % 2:  # hold the runs over one more claim, then finish them
                        conn.execute(
                            "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL "
                            "WHERE state = 'running' AND worker_id = %s",
                            (name,),
                        )
                        conn.commit()
                conn.execute(
                    "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL "
                    "WHERE state = 'running' AND worker_id = %s",
                    (name,),
                )
                conn.commit()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert over == []
    with db.connect() as conn:
        done = conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
    assert done > 50  # the claimers did make progress


def test_groups_at_their_concurrency_limit_do_not_hog_the_claim(db):
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group=f"busy{i:02d}") for i in range(20) for _ in range(3)])
        conn.execute("UPDATE job_groups SET concurrency_limit = 1")
        conn.commit()
        for _ in range(10):  # one running job per busy group: all at their limit
            _claim(conn, groups_per_claim=4)
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0] == 20
        # zz-free was served most recently of all, so every busy group comes before it.
        enqueue_many(conn, [JobSpec("k.a", {}, group="zz-free")])
        conn.commit()
        first = [r for _ in range(7) for r in _claim(conn, groups_per_claim=4)]
        assert [r[3] for r in first] == ["zz-free"]
        enqueue_many(conn, [JobSpec("k.a", {"free": True}, group="zz-free")])
        conn.commit()
        got = []
        for _ in range(7):  # ceil(21 groups / 4 per claim) + 1
            got += _claim(conn, groups_per_claim=4)
    assert [r[3] for r in got] == ["zz-free"]


@pytest.mark.parametrize("statement", ["complete", "release", "extend"])
def test_a_runs_outcome_is_not_lost_when_a_lease_renewal_rewrote_its_row_meanwhile(db, statement):
    """The heartbeat renews leases on its own connection while runs complete on another; an
    outcome that waited for a renewal's row lock must still find the (rewritten) row. Found as
    a job left 'running' until its lease expired, which held its lock key and kept the next
    job with that key queued (a due job waiting > 15 s in the e2e tests)."""
    with db.connect() as conn:
        enqueue_many(conn, [JobSpec("k.a", {}, group="m1", lock_key="item-1")])
        conn.commit()
        (row,) = _claim(conn, limit=1)
    job_id, attempt = row[0], row[5]
    params = {"ids": [job_id], "attempts": [attempt], "worker": "w1", "lease": 30}
    sql = {"complete": q.COMPLETE_JOBS, "release": q.RELEASE_JOBS, "extend": q.EXTEND_LEASES}[statement]
    result: dict = {}
    with db.connect() as renewer, db.connect() as outcome:
        renewer.execute(q.EXTEND_LEASES, params)  # holds the row lock, row rewritten, not committed

        def run_outcome():
            result["ids"] = [r[0] for r in outcome.execute(sql, params).fetchall()]
            outcome.commit()

        t = threading.Thread(target=run_outcome)
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the outcome should wait for the renewal's row lock"
        renewer.commit()
        t.join(10)
        assert not t.is_alive()
        assert result["ids"] == [job_id]
        state = outcome.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]
    assert state == {"complete": "succeeded", "release": "queued", "extend": "running"}[statement]


def _running_job(conn, *, max_attempts: int, attempt: int, infrastructure_errors: int) -> int:
    """A job claimed by worker w1 on its `attempt`-th run, after that many infrastructure
    failures (attempts given back), its lease already expired; the only queued or running job."""
    conn.execute("UPDATE jobs SET state = 'succeeded' WHERE state IN ('queued', 'running')")
    enqueue_many(conn, [JobSpec("k.a", {}, group="m1", max_attempts=max_attempts)])
    conn.commit()
    (row,) = _claim(conn, limit=1)
    errors = [{"error": "LeaseExpired", "infrastructure": True}] * infrastructure_errors
    conn.execute(
        "UPDATE jobs SET attempt = %s, errors = %s, lease_expires_at = now() - interval '1 second' "
        "WHERE id = %s",
        (attempt, psycopg.types.json.Jsonb(errors), row[0]),
    )
    conn.commit()
    return row[0]


@pytest.mark.parametrize("outage", ["worker died", "database went away"])
def test_an_infrastructure_failure_gives_the_attempt_back_at_most_max_attempts_times(db, outage):
    """A worker killed under a job (its lease expires) or the database restarting under it is not
    the job's failure: the attempt is given back, even on the last one. After `max_attempts` such
    failures they count like any other, so a job that kills every worker it runs on still ends
    in the dead letter."""
    from psycopg.types.json import Jsonb

    def fail(conn, job_id: int, attempt: int) -> str:
        if outage == "worker died":
            states = dict(conn.execute(q.REAP_EXPIRED_LEASES, {"limit": 10}).fetchall())
        else:
            params = {
                "id": job_id,
                "attempt": attempt,
                "worker": "w1",
                "delay": 0,
                "error": Jsonb({"error": "OperationalError"}),
            }
            states = {job_id: conn.execute(q.RETRY_AFTER_OUTAGE, params).fetchone()[0]}
        conn.commit()
        return states[job_id]

    with db.connect() as conn:
        last = _running_job(conn, max_attempts=3, attempt=3, infrastructure_errors=0)
        assert fail(conn, last, 3) == "queued"
        assert conn.execute("SELECT attempt FROM jobs WHERE id = %s", (last,)).fetchone()[0] == 2
        spent = _running_job(conn, max_attempts=3, attempt=3, infrastructure_errors=3)
        assert fail(conn, spent, 3) == "dead"
        earlier = _running_job(conn, max_attempts=3, attempt=2, infrastructure_errors=3)
        assert fail(conn, earlier, 2) == "queued"
        assert conn.execute("SELECT attempt FROM jobs WHERE id = %s", (earlier,)).fetchone()[0] == 2
