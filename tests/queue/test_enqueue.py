"""Enqueue: transactional with the caller, singleton collapse, batch and async forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storesync.queue import (
    Enqueued,
    InvalidJobError,
    JobSpec,
    Lane,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)


def _jobs(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT id, kind, payload, group_key, lane, state, singleton_key, collapsed FROM jobs ORDER BY id"
    ).fetchall()


def test_rollback_of_callers_transaction_leaves_no_job(db):
    with db.connect() as conn:
        with conn.transaction(force_rollback=True):
            got = enqueue(conn, JobSpec("queue.noop", {"a": 1}, group="m1"))
            assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
            assert got.collapsed is False
        assert _jobs(conn) == []
        enqueue(conn, JobSpec("queue.noop", {"a": 2}, group="m1"))
        conn.commit()
    with db.connect() as other:
        rows = _jobs(other)
    assert [r[2] for r in rows] == [{"a": 2}]


def test_singleton_enqueues_collapse_into_the_queued_job_with_newest_payload(db):
    with db.connect() as conn:
        first = enqueue(conn, JobSpec("sync.product", {"v": 1}, group="m1", singleton_key="p:1"))
        second = enqueue(
            conn, JobSpec("sync.product", {"v": 2}, group="m1", singleton_key="p:1", lane=Lane.INVENTORY)
        )
        other = enqueue(conn, JobSpec("sync.product", {"v": 9}, group="m1", singleton_key="p:2"))
        conn.commit()
        assert first == Enqueued(first.job_id, False)
        assert second == Enqueued(first.job_id, True)
        assert other.job_id != first.job_id and not other.collapsed
        rows = _jobs(conn)
    assert [(r[0], r[2], r[4], r[7]) for r in rows] == [
        (first.job_id, {"v": 2}, 0, 1),
        (other.job_id, {"v": 9}, 1, 0),
    ]


def test_running_job_with_same_singleton_key_does_not_block_a_new_queued_one(db):
    with db.connect() as conn:
        first = enqueue(conn, JobSpec("sync.product", {"v": 1}, group="m1", singleton_key="p:1"))
        # What a claim does to it: it leaves the queued state.
        conn.execute(
            "UPDATE jobs SET state = 'running', lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (first.job_id,),
        )
        second = enqueue(conn, JobSpec("sync.product", {"v": 2}, group="m1", singleton_key="p:1"))
        third = enqueue(conn, JobSpec("sync.product", {"v": 3}, group="m1", singleton_key="p:1"))
        conn.commit()
    assert second.job_id != first.job_id and not second.collapsed
    assert third == Enqueued(second.job_id, True)


def test_enqueue_many_returns_results_in_input_order_and_collapses_within_the_batch(db):
    specs = [
        JobSpec("a.one", {"i": 0}, group="m1"),
        JobSpec("a.single", {"i": 1}, group="m2", singleton_key="k"),
        JobSpec("a.one", {"i": 2}, group="m1", lane=Lane.BACKFILL),
        JobSpec("a.single", {"i": 3}, group="m2", singleton_key="k"),
        JobSpec("a.one", {"i": 4}, group="m3", lock_key="item:1"),
    ]
    with db.connect() as conn:
        pre = enqueue(conn, JobSpec("a.single", {"i": -1}, group="m2", singleton_key="k2"))
        got = enqueue_many(conn, [*specs, JobSpec("a.single", {"i": 5}, group="m2", singleton_key="k2")])
        conn.commit()
        assert enqueue_many(conn, []) == []
        payload_by_id = {r[0]: r[2] for r in _jobs(conn)}
        groups = [r[0] for r in conn.execute("SELECT group_key FROM job_groups ORDER BY 1")]
    assert [payload_by_id[e.job_id]["i"] for e in got] == [0, 3, 2, 3, 4, 5]
    assert [e.collapsed for e in got] == [False, False, False, True, False, True]
    assert got[1].job_id == got[3].job_id and got[5].job_id == pre.job_id
    assert groups == ["m1", "m2", "m3"]


async def test_async_enqueue_is_transactional_too(db):
    async with await psycopg.AsyncConnection.connect(db.dsn) as conn:
        async with conn.transaction(force_rollback=True):
            await enqueue_async(conn, JobSpec("queue.noop", {}, group="m1"))
        one = await enqueue_async(conn, JobSpec("queue.noop", {}, group="m1", singleton_key="s"))
        many = await enqueue_many_async(
            conn,
            [JobSpec("queue.noop", {"n": n}, group="m2") for n in range(3)]
            + [JobSpec("queue.noop", {}, group="m1", singleton_key="s")],
        )
        await conn.commit()
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 4
    assert many[-1] == Enqueued(one.job_id, True)
    assert [e.job_id for e in many[:3]] == sorted(e.job_id for e in many[:3])


def test_delayed_job_keeps_its_run_at(db):
    at = datetime.now(UTC) + timedelta(hours=1)
    with db.connect() as conn:
        e = enqueue(conn, JobSpec("queue.noop", {}, group="m1", run_at=at))
        conn.commit()
        (run_at,) = conn.execute("SELECT run_at FROM jobs WHERE id = %s", (e.job_id,)).fetchone()
    assert abs((run_at - at).total_seconds()) < 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": ""}, "kind"),
        ({"group": ""}, "group"),
        ({"payload": [1]}, "payload"),
        ({"lane": 7}, "lane"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"run_at": datetime(2030, 1, 1)}, "timezone"),
        ({"lock_key": ""}, "lock_key"),
    ],
)
def test_invalid_job_spec_is_refused_with_the_field_named(kwargs, message):
    base = {"kind": "queue.noop", "payload": {}, "group": "m1"}
    with pytest.raises(InvalidJobError, match=message):
        JobSpec(**{**base, **kwargs})


def test_unserialisable_payload_fails_and_enqueues_nothing(db):
    with db.connect() as conn:
        with pytest.raises(TypeError):
            enqueue(conn, JobSpec("queue.noop", {"when": object()}, group="m1"))
        conn.rollback()
        assert _jobs(conn) == []
